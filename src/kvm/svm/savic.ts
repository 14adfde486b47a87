/**
 * AMD Secure AVIC (SEV-SNP) behind the {@link KvmX86Ops} seam (RFC v2 series on svm/sev.c;
 * domain notes 7):
 *
 * - The APIC is protected: the guest owns its backing page; KVM_GET_LAPIC / KVM_SET_LAPIC fail
 *   with -EINVAL (guest_apic_protected); KVM cannot see IRR/ISR/TPR/PPR.
 * - KVM-originated interrupts go through KVM's IRR into RequestedIRR on the target's own thread
 *   right before VMRUN (inject_irq); VMRUN merges them (sev.ts).
 * - Guest IPIs: #VC handler in the guest + MSR_PROT VMGEXIT → savic_handle_icr_write
 *   (has_pending_ipi, full fence, doorbell or kick); the idle-HLT intercept KVM programs
 *   ({@link savicHltIntercept}) and the CPU honours (hw/svm/savic.ts).
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
import { savicVcpuRun, type SavicHltIntercept } from '../../hw/svm/savic.js';
import { definePatch } from '../patches.js';
import type { KvmCtx } from '../x86-ops.js';

/**
 * Bug patch (SA-3, hypothetical): the Secure AVIC vCPU's VMCB has the plain HLT intercept
 * instead of the idle-HLT intercept. HLT then exits even with a virtual interrupt pending in the
 * guest-owned backing page, and KVM — which cannot read that IRR — blocks the vCPU unless
 * has_pending_ipi is still set. The RFC's cover letter: "idle HLT intercept feature should be
 * always enabled for a Secure AVIC guest. Otherwise, any pending interrupts in vAPIC IRR during
 * HLT VMEXIT would not be serviced and the vCPU could get stuck in HLT until the next wakeup
 * event".
 * @kvm arch/x86/kvm/svm/sev.c (RFC) Secure AVIC VMCB set-up (INTERCEPT_IDLE_HLT)
 */
export const PATCH_SAVIC_PLAIN_HLT_INTERCEPT = definePatch({
  id: 'savic-plain-hlt-intercept',
  step: 'Secure AVIC VMCB set-up (HLT intercept)',
  summary: 'the VMCB intercepts HLT plainly instead of with the idle-HLT intercept, so HLT exits with a virtual interrupt pending that KVM cannot see',
  origin: { kind: 'hypothetical', ref: 'seed 003: [RFC PATCH v2 00/17] AMD: Add Secure AVIC KVM Support, "Idle HLT Intercept"', subject: 'the stuck-in-HLT failure the cover letter gives as the reason idle-HLT must always be enabled' },
  kernel: 'none: Secure AVIC KVM support is an RFC (v2, Sep 2025), not upstream; it requires the idle-HLT intercept',
  vendors: ['savic'],
});

const IDLE_HLT: SavicHltIntercept = { idleHlt: true };
const PLAIN_HLT: SavicHltIntercept = { idleHlt: false };

/**
 * The HLT intercept KVM programs for a Secure AVIC vCPU: idle-HLT (exit only with no V_INTR
 * pending), which the series requires because KVM cannot see the guest's IRR.
 * @kvm arch/x86/kvm/svm/sev.c (RFC) Secure AVIC VMCB set-up
 */
export function savicHltIntercept(ctx: Pick<KvmCtx, 'patches'>): SavicHltIntercept {
  return ctx.patches.has(PATCH_SAVIC_PLAIN_HLT_INTERCEPT) ? PLAIN_HLT : IDLE_HLT;
}

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
    return savicVcpuRun(ctx, v, guest, maxSteps, savicHltIntercept(ctx));
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
