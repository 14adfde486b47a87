/**
 * Intel TDX with a protected local APIC, behind the {@link KvmX86Ops} seam (vmx/tdx.c, vt_x86_ops).
 *
 * - APICv is always active for a TD; an inhibit that would deactivate it is a KVM bug: the VM is
 *   marked bugged and every vCPU exits (vt_refresh_apicv_exec_ctrl -> KVM_BUG_ON).
 * - Posted interrupts are the only delivery path (tdx_deliver_interrupt); KVM never reads or
 *   writes the TD's vIRR (sync_pir_to_irr is a no-op). Right before TDH.VP.ENTER, if ON is set,
 *   KVM sends itself POSTED_INTR_VECTOR with IRQs off, so the TDX module processes the PIR inside
 *   the TD after entry.
 * - KVM_GET_LAPIC / KVM_SET_LAPIC fail with -EINVAL; the APIC base MSR is read-only.
 */
import { VCPU, type VcpuId } from '../../mem/layout.js';
import type { Access } from '../../mem/access.js';
import { kvmApicHasInterrupt } from '../../apic/index.js';
import { apicSendIpiHost, POSTED_INTR_VECTOR } from '../kick.js';
import { kvmVmBugged } from '../vm-bug.js';
import type { KvmCtx, KvmX86Ops } from '../x86-ops.js';
import { piInit, piIsPirEmpty, piTestOn, piTestSn } from '../../hw/vmx/pi-desc.js';
import { vmxDeliverPostedInterruptRaw } from './posted-intr.js';
import { vmxVcpuRun } from '../../hw/vmx/cpu.js';
import { vmxX86Ops } from './vmx.js';
import { tdxMachineVcpuLoad, tdxMachineVcpuPut, tdxMachineVcpuRun } from './tdx-machine-host.js';

/**
 * A TD vCPU at creation: APICv forced active, descriptor NV = POSTED_INTR_VECTOR.
 * @kvm arch/x86/kvm/vmx/tdx.c tdx_vcpu_create ("KVM: TDX: Force APICv active for TDX guest")
 */
export function tdxVcpuCreate(acc: Access, v: VcpuId, firstCpu: number): void {
  acc.writeOnce(acc.layout.vcpu(v, VCPU.APICV_ACTIVE), 1, 'apicv:init');
  piInit(acc, v, POSTED_INTR_VECTOR, firstCpu);
}

/**
 * Does the TD vCPU have an interrupt? ON, or SN with a PIR bit, or (HLT with IRQs enabled) the
 * TDX module's VCPU_STATE_DETAILS reporting a pending virtual interrupt — modelled here by the
 * module's view of the TD's virtual APIC.
 * @kvm arch/x86/kvm/vmx/tdx.c tdx_protected_apic_has_interrupt
 */
export function tdxProtectedApicHasInterrupt(ctx: KvmCtx, v: VcpuId): boolean {
  const { acc } = ctx;
  if (piTestOn(acc, v)) return true;
  if (piTestSn(acc, v) && !piIsPirEmpty(acc, v)) return true;
  return kvmApicHasInterrupt(acc, v) >= 0;
}

/** The TDX vendor operations. @kvm arch/x86/kvm/vmx/main.c vt_x86_ops (TD paths) */
export const tdxX86Ops: KvmX86Ops = {
  name: 'tdx',
  protectedApic: true,
  deliverInterrupt(ctx, target, vector) {
    // tdx_deliver_interrupt: "TDX supports only posted interrupt. No lapic emulation."
    vmxDeliverPostedInterruptRaw(ctx, target, vector);
  },
  syncPirToIrr: () => -1,
  apicHasInterrupt: tdxProtectedApicHasInterrupt,
  injectPending(): void {
    // No event injection into a TD.
  },
  vcpuLoad(ctx, v, cpu) {
    vmxX86Ops.vcpuLoad(ctx, v, cpu);
    tdxMachineVcpuLoad(ctx.acc, v, cpu);
  },
  vcpuPut(ctx, v) {
    tdxMachineVcpuPut(ctx.acc, v, ctx.cpu);
    vmxX86Ops.vcpuPut(ctx, v);
  },
  vcpuRun(ctx, v, guest, maxSteps) {
    // tdx_vcpu_run: with IRQs off, a set ON becomes a self-IPI that the TDX module processes
    // inside the TD after TDH.VP.ENTER; around the TD run, the host-state save and restores.
    if (piTestOn(ctx.acc, v) && ctx.cpu >= 0) apicSendIpiHost(ctx, ctx.cpu, POSTED_INTR_VECTOR);
    return tdxMachineVcpuRun(ctx.acc, v, ctx.cpu, () => vmxVcpuRun(ctx, v, guest, maxSteps));
  },
  handleHostIrq: vmxX86Ops.handleHostIrq,
  refreshApicvExecCtrl(ctx, v, active) {
    // vt_refresh_apicv_exec_ctrl: KVM_BUG_ON(!kvm_vcpu_apicv_active(vcpu), vcpu->kvm) for a TD.
    if (!active) kvmVmBugged(ctx, `APICv deactivated on TD vcpu${v}`);
  },
};
