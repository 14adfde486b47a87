/**
 * AMD Secure AVIC (SEV-SNP) behind the {@link KvmX86Ops} seam (RFC v2 series on svm/sev.c;
 * domain notes 7):
 *
 * - The APIC is protected: the guest owns its backing page; KVM_GET_LAPIC / KVM_SET_LAPIC fail
 *   with -EINVAL (guest_apic_protected); KVM cannot see IRR/ISR/TPR/PPR.
 * - KVM-originated interrupts go through KVM's IRR into RequestedIRR on the target's own thread
 *   right before VMRUN (inject_irq); VMRUN merges them (sev.ts).
 * - Guest IPIs: #VC handler in the guest + MSR_PROT VMGEXIT → savic_handle_icr_write
 *   (has_pending_ipi, full fence, doorbell or kick); the idle-HLT intercept (hw.ts).
 * - NMIs are vNMI only (V_NMI_PENDING) and NMI_REQUEST in the backing page.
 * - Secure AVIC is fixed in SEV_FEATURES at launch: like TDX, KVM never runs the guest with it
 *   deactivated, so an APICv inhibit that would deactivate it marks the VM bugged (the RFC does
 *   not define an inhibit path; this follows vt_refresh_apicv_exec_ctrl's rule for protected
 *   APICs).
 */
import { SAVIC_ALLOWED_IRR, VCPU, type VcpuId } from '../../mem/layout.js';
import type { Access } from '../../mem/access.js';
import { kvmVmBugged } from '../vm-bug.js';
import { ExitReason, type KvmX86Ops } from '../x86-ops.js';
import { savicDeliverInterrupt, savicHandleIcrWrite, savicInjectIrq, savicInjectNmi, savicPreSevRun, savicProtectedApicHasInterrupt } from '../../kvm/svm/sev.js';
import { savicVcpuRun } from '../../hw/svm/savic.js';

/**
 * A vCPU at creation: Secure AVIC active, and the guest's firmware setup of its backing page —
 * ALLOWED_IRR lets the host inject every vector from 0x10 up (a guest that wants to refuse IPI
 * vectors clears them; vectors it refuses are dropped at VMRUN and counted as `savicFiltered`).
 * @kvm arch/x86/kvm/svm/sev.c sev_savic_vcpu_create (RFC v2) / guest savic_setup
 */
export function savicVcpuCreate(acc: Access, v: VcpuId): void {
  const L = acc.layout;
  acc.writeOnce(L.vcpu(v, VCPU.APICV_ACTIVE), 1, 'apicv:init');
  for (let i = 0; i < 8; i++) acc.writeOnce(L.savicBacking(v, SAVIC_ALLOWED_IRR + 0x10 * i), i === 0 ? 0xffff0000 | 0 : -1, 'savic:guest-allowed-irr-init');
}

/** The Secure AVIC vendor operations. @kvm arch/x86/kvm/svm/svm.c svm_x86_ops (Secure AVIC paths of the RFC) */
export const savicX86Ops: KvmX86Ops = {
  name: 'savic',
  protectedApic: true,
  deliverInterrupt: (ctx, target, vector) => savicDeliverInterrupt(ctx, target, vector),
  // No posted-interrupt descriptor, and KVM may not touch the guest's IRR.
  syncPirToIrr: () => -1,
  apicHasInterrupt: savicProtectedApicHasInterrupt,
  injectPending: savicInjectIrq,
  injectNmi: savicInjectNmi,
  // Doorbells are sent by KVM from vcpu->mode; no physical APIC ID table entry to maintain.
  vcpuLoad(): void {},
  vcpuPut(): void {},
  // svm_vcpu_run: pre_sev_run (KVM), then VMRUN and the guest until #VMEXIT (the CPU).
  vcpuRun: (ctx, v, guest, maxSteps) => {
    savicPreSevRun(ctx, v);
    return savicVcpuRun(ctx, v, guest, maxSteps);
  },
  handleHostIrq(): void {
    // Root mode: a reschedule IPI has done its job by interrupting.
  },
  handleExit(ctx, v, exit) {
    if (exit.reason === ExitReason.VMGEXIT) savicHandleIcrWrite(ctx, v, exit.lo ?? 0, exit.hi ?? 0);
  },
  refreshApicvExecCtrl(ctx, v, active) {
    if (!active) kvmVmBugged(ctx, `APICv deactivated on Secure AVIC vcpu${v}`);
  },
};
