/**
 * Intel VMX with APICv (virtual-interrupt delivery + posted interrupts), behind the
 * {@link KvmX86Ops} seam.
 * @kvm arch/x86/kvm/vmx/main.c vt_x86_ops
 */
import { VCPU, type VcpuId } from '../../mem/layout.js';
import type { Access } from '../../mem/access.js';
import { apicFindHighestIrr, kvmApicAckInterrupt, kvmApicHasInterrupt } from '../../apic/index.js';
import { POSTED_INTR_VECTOR } from '../kick.js';
import { EV } from '../../trace/events.js';
import type { KvmCtx, KvmX86Ops } from '../x86-ops.js';
import { piInit } from '../../hw/vmx/pi-desc.js';
import { vmxDeliverInterrupt, vmxSyncPirToIrr } from '../../kvm/vmx/posted-intr.js';
import { vmxVcpuRun } from '../../hw/vmx/cpu.js';

/**
 * Per-vCPU VMX state at creation: APICv active, descriptor NV = POSTED_INTR_VECTOR,
 * NDST = the pCPU the vCPU will first run on.
 * @kvm arch/x86/kvm/vmx/vmx.c vmx_vcpu_create / vmx_vcpu_pi_load
 */
export function vmxVcpuCreate(acc: Access, v: VcpuId, firstCpu: number): void {
  acc.writeOnce(acc.layout.vcpu(v, VCPU.APICV_ACTIVE), 1, 'apicv:init');
  piInit(acc, v, POSTED_INTR_VECTOR, firstCpu);
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
  vcpuLoad(): void {
    // vmx_vcpu_pi_load: only matters with the PI wake-up vector (IPIv / VT-d), not modelled here.
  },
  vcpuPut(): void {
    // vmx_vcpu_pi_put: likewise.
  },
  vcpuRun: vmxVcpuRun,
  handleHostIrq(ctx: KvmCtx, vector: number): void {
    // Root mode: the POSTED_INTR_VECTOR handler does nothing (KVM syncs the PIR before entry);
    // a reschedule IPI has done its job by interrupting.
    if (vector === POSTED_INTR_VECTOR) ctx.stats.count('rootModeNotifications');
  },
};
