/**
 * Intel VMX with APICv (virtual-interrupt delivery + posted interrupts), behind the
 * {@link KvmX86Ops} seam.
 * @kvm arch/x86/kvm/vmx/main.c vt_x86_ops
 */
import { VCPU, type VcpuId } from '../../mem/layout.js';
import type { Access } from '../../mem/access.js';
import { apicFindHighestIrr, kvmApicAckInterrupt, kvmApicHasInterrupt } from '../../apic/index.js';
import { POSTED_INTR_VECTOR, POSTED_INTR_WAKEUP_VECTOR } from '../kick.js';
import { EV } from '../../trace/events.js';
import type { KvmCtx, KvmX86Ops } from '../x86-ops.js';
import { piInit } from '../../hw/vmx/pi-desc.js';
import { piInitCpu, piInitVcpu, piWakeupHandler, vmxDeliverInterrupt, vmxSyncPirToIrr, vmxVcpuPiLoad, vmxVcpuPiPut } from '../../kvm/vmx/posted-intr.js';
import { vmxVcpuRun } from '../../hw/vmx/cpu.js';

/**
 * KVM's enable_ipiv: the emulated CPU supports IPI virtualization, so KVM turns it on (its
 * default) for every VMX vCPU with APICv. Guests' fixed physical IPIs are then posted by the CPU
 * without a VM-exit, and blocked vCPUs need the PI wakeup vector (vmx_needs_pi_wakeup).
 * @kvm arch/x86/kvm/vmx/vmx.c enable_ipiv
 */
export const ENABLE_IPIV = true;

/**
 * Per-vCPU VMX state at creation: APICv active, descriptor NV = POSTED_INTR_VECTOR,
 * NDST = the pCPU the vCPU will first run on, an empty wakeup-list node, IPIv per `ipiv`.
 * @kvm arch/x86/kvm/vmx/vmx.c vmx_vcpu_create / vmx_vcpu_pi_load
 */
export function vmxVcpuCreate(acc: Access, v: VcpuId, firstCpu: number, ipiv = ENABLE_IPIV): void {
  acc.writeOnce(acc.layout.vcpu(v, VCPU.APICV_ACTIVE), 1, 'apicv:init');
  piInit(acc, v, POSTED_INTR_VECTOR, firstCpu);
  piInitVcpu(acc, v, ipiv);
}

/**
 * Module load: every pCPU's wakeup list and lock.
 * @kvm arch/x86/kvm/vmx/vmx.c vmx_init (for_each_possible_cpu: pi_init_cpu)
 */
export function vmxVmInit(acc: Access): void {
  for (let p = 0; p < acc.layout.config.pcpus; p++) piInitCpu(acc, p);
}

/** The VMX vendor operations. @kvm arch/x86/kvm/vmx/main.c vt_x86_ops */
export const vmxX86Ops: KvmX86Ops = {
  name: 'vmx',
  deliverInterrupt: (ctx, target, vector) => vmxDeliverInterrupt(ctx, target, vector),
  syncPirToIrr: vmxSyncPirToIrr,
  apicHasInterrupt(ctx: KvmCtx, v: VcpuId): boolean {
    // apic_has_interrupt_for_ppr(): sync the PIR first, whatever the APICv state.
    vmxSyncPirToIrr(ctx, v);
    return kvmApicHasInterrupt(ctx.acc, v) >= 0;
  },
  injectPending(ctx: KvmCtx, v: VcpuId): void {
    // Without APICv, KVM acks the highest deliverable IRR vector and injects it on VM-entry.
    if (ctx.acc.readOnce(ctx.L.vcpu(v, VCPU.APICV_ACTIVE), 'apicv:active-read') !== 0) return;
    // An event injected at a cancelled entry is still queued: it is re-injected, not replaced
    // (kvm_check_and_inject_events re-injects vcpu->arch.interrupt first).
    if (ctx.acc.readOnce(ctx.L.vcpu(v, VCPU.INJECTED), 'vmx:injected-read') >= 0) return;
    const vec = kvmApicHasInterrupt(ctx.acc, v);
    if (vec < 0 || vec !== apicFindHighestIrr(ctx.acc, v)) return;
    kvmApicAckInterrupt(ctx.acc, v, vec);
    ctx.acc.writeOnce(ctx.L.vcpu(v, VCPU.INJECTED), vec, 'vmx:inject');
    ctx.trace.emit(EV.ACK, v, vec);
  },
  // vmx_vcpu_load -> vmx_vcpu_pi_load; vmx_vcpu_put -> vmx_vcpu_pi_put.
  vcpuLoad: vmxVcpuPiLoad,
  vcpuPut: vmxVcpuPiPut,
  vcpuRun: vmxVcpuRun,
  handleHostIrq(ctx: KvmCtx, vector: number): void {
    // Root mode: the POSTED_INTR_VECTOR handler does nothing (KVM syncs the PIR before entry);
    // the wakeup vector wakes blocked vCPUs with ON set; a reschedule IPI has done its job by
    // interrupting.
    if (vector === POSTED_INTR_VECTOR) ctx.stats.count('rootModeNotifications');
    else if (vector === POSTED_INTR_WAKEUP_VECTOR) piWakeupHandler(ctx);
  },
};
