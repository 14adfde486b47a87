/**
 * vcpu->requests (include/linux/kvm_host.h, arch/x86/include/asm/kvm_host.h,
 * Documentation/virt/kvm/vcpu-requests.rst).
 *
 * Bit numbers are hvemu's (the kernel's exceed 32 bits); names and semantics are the kernel's.
 */
import { VCPU, type VcpuId } from '../mem/layout.js';
import type { Access } from '../mem/access.js';

/** @kvm include/linux/kvm_host.h KVM_REQ_TLB_FLUSH */
export const KVM_REQ_TLB_FLUSH = 0;
/** @kvm include/linux/kvm_host.h KVM_REQ_VM_DEAD */
export const KVM_REQ_VM_DEAD = 1;
/** @kvm include/linux/kvm_host.h KVM_REQ_UNBLOCK */
export const KVM_REQ_UNBLOCK = 2;
/** @kvm arch/x86/include/asm/kvm_host.h KVM_REQ_EVENT */
export const KVM_REQ_EVENT = 8;
/** @kvm arch/x86/include/asm/kvm_host.h KVM_REQ_NMI */
export const KVM_REQ_NMI = 9;
/** @kvm arch/x86/include/asm/kvm_host.h KVM_REQ_APICV_UPDATE (WAIT | NO_WAKEUP) */
export const KVM_REQ_APICV_UPDATE = 10;
/** @kvm arch/x86/include/asm/kvm_host.h KVM_REQ_IOAPIC_EOI_EXIT */
export const KVM_REQ_IOAPIC_EOI_EXIT = 11;

/**
 * Set a request bit. smp_wmb() orders the request's payload before the bit (compiler-only on
 * x86); set_bit is a locked OR.
 * @kvm include/linux/kvm_host.h kvm_make_request
 */
export function kvmMakeRequest(acc: Access, v: VcpuId, req: number): void {
  acc.setBit(acc.layout.vcpu(v, VCPU.REQUESTS), req, 'kvm:request-make');
}

/**
 * Test and clear a request bit (kvm_test_request + kvm_clear_request + smp_mb__after_atomic).
 * @kvm include/linux/kvm_host.h kvm_check_request
 */
export function kvmCheckRequest(acc: Access, v: VcpuId, req: number): boolean {
  const a = acc.layout.vcpu(v, VCPU.REQUESTS);
  if ((acc.readOnce(a, 'kvm:request-test') & (1 << req)) === 0) return false;
  acc.clearBit(a, req, 'kvm:request-clear');
  return true;
}

/**
 * Is a request bit set (without clearing it)?
 * @kvm include/linux/kvm_host.h kvm_test_request
 */
export function kvmTestRequest(acc: Access, v: VcpuId, req: number): boolean {
  return (acc.readOnce(acc.layout.vcpu(v, VCPU.REQUESTS), 'kvm:request-test') & (1 << req)) !== 0;
}

/**
 * Any request pending?
 * @kvm include/linux/kvm_host.h kvm_request_pending
 */
export function kvmRequestPending(acc: Access, v: VcpuId): boolean {
  return acc.readOnce(acc.layout.vcpu(v, VCPU.REQUESTS), 'kvm:request-pending') !== 0;
}
