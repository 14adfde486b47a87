/**
 * KVM's side of AMD Secure AVIC (RFC v2, Sep 2025, arch/x86/kvm/svm/sev.c; domain notes 7).
 *
 * The guest owns its APIC backing page: KVM cannot read IRR/ISR/TPR/PPR. KVM's software vAPIC
 * is only a staging area for what KVM itself injects (device/IOAPIC interrupts, the LAPIC timer):
 *
 *   any thread                         vCPU thread, vcpu_enter_guest            VMRUN (CPU)
 *   KVM IRR |= v; KVM_REQ_EVENT; kick  inject_irq = set_requested_irr:          UpdateIRR?
 *                                        RequestedIRR |= KVM IRR;                 IRR |= Req & ALLOWED_IRR
 *                                        KVM IRR &= ~moved (atomic);              Req = 0; UpdateIRR = 0
 *                                        UpdateIRR = 1                           (not atomic vs. software)
 *
 * Guest IPIs (domain SA-2): the sender's #VC handler sets the IRR bit (or NMI_REQUEST) in the
 * target's backing page, then an MSR_PROT VMGEXIT reaches KVM, which for each destination does
 *   has_pending_ipi = true; smp_mb(); mode = load-acquire; IN_GUEST ? doorbell : kvm_vcpu_kick
 * pairing with the target's  mode = OUTSIDE; ...; smp_mb(); has_pending_ipi?  in
 * protected_apic_has_interrupt, and pre_sev_run clears the flag just before VMRUN.
 */
import { VCPU, VMCB, vecPos, vecWord, type VcpuId } from '../../mem/layout.js';
import { APIC_IRR } from '../../mem/apicdef.js';
import type { Access } from '../../mem/access.js';
import { apicDestinations, apicFindHighestIrr, decodeIcr } from '../../apic/index.js';
import { IN_GUEST_MODE } from '../modes.js';
import { kvmMakeRequest, KVM_REQ_EVENT } from '../requests.js';
import { kvmVcpuKick } from '../kick.js';
import { EV } from '../../trace/events.js';
import type { KvmCtx } from '../x86-ops.js';
import { avicRingDoorbell } from './avic.js';
import { definePatch } from '../patches.js';
import { forEachBit, savicFateCounter, type SavicVectorFate } from '../../hw/svm/savic.js';

/**
 * Bug patch (SA-1, hypothetical): KVM's deliver_interrupt for a Secure AVIC vCPU writes the
 * target's RequestedIRR and UpdateIRR from the delivering thread instead of leaving the vector in
 * KVM's IRR for the target's own inject_irq. VMRUN reads RequestedIRR and then clears it (not
 * atomically with respect to software), so a vector OR-ed in between is lost. The RFC's cover
 * letter names this race as the reason all writes happen on the CPU that runs the vCPU; both
 * posted versions (RFC v1, Feb 2025; RFC v2, Sep 2025) inject there.
 * @kvm arch/x86/kvm/svm/sev.c (RFC) sev_savic_set_requested_irr — the injection flow it replaces
 */
export const PATCH_SAVIC_REMOTE_REQUESTED_IRR = definePatch({
  id: 'savic-remote-requested-irr',
  step: 'deliver_interrupt (Secure AVIC)',
  summary: "the delivering thread ORs the vector into the target's RequestedIRR and sets UpdateIRR itself (KVM's runnable check then looks at UpdateIRR), racing with VMRUN's read-then-clear of those fields",
  origin: { kind: 'hypothetical', ref: 'seed 003: [RFC PATCH v2 00/17] AMD: Add Secure AVIC KVM Support, "Interrupt Injection"', subject: 'the cross-CPU RequestedIRR write the cover letter rules out ("hardware clearing of RequestedIRR and UpdateIRR can race with KVM\'s writes")' },
  kernel: 'none: Secure AVIC KVM support is an RFC (v1 Feb 2025, v2 Sep 2025), not upstream; neither version writes RequestedIRR from another CPU',
  vendors: ['savic'],
});

/**
 * Bug patch (SA-2, hypothetical): savic_handle_icr_write without the smp_mb() between the
 * has_pending_ipi store and the vcpu->mode load. The load can pass the buffered store (x86 store
 * buffering): KVM sees IN_GUEST_MODE after the target left guest mode and rings a doorbell only,
 * while the target's check in kvm_vcpu_block still reads has_pending_ipi = 0 and sleeps.
 * @kvm arch/x86/kvm/svm/sev.c (RFC) savic_handle_icr_write
 */
export const PATCH_SAVIC_ICR_WRITE_NO_MB = definePatch({
  id: 'savic-icr-write-no-mb',
  step: 'savic_handle_icr_write',
  summary: 'no smp_mb() between the has_pending_ipi store and the vcpu->mode load of the IPI target',
  origin: { kind: 'hypothetical', ref: 'RFC v1 09/19 (20250228085115.105648-10) and RFC v2 07/17 both have the barrier', subject: 'KVM: SVM: Add IPI Delivery Support for Secure AVIC ("Order sev_savic_has_pending_ipi write and vcpu->mode read")' },
  kernel: 'none: Secure AVIC KVM support is an RFC, not upstream, and every posted version has the barrier',
  vendors: ['savic'],
});

/**
 * Move KVM's pending IRR into RequestedIRR on the CPU about to VMRUN the vCPU: OR each word
 * into RequestedIRR, clear exactly those bits from KVM's IRR with an atomic AND (concurrent
 * deliveries are kept), set UpdateIRR. A vector already waiting in RequestedIRR coalesces.
 * Returns whether anything was moved.
 * @kvm arch/x86/kvm/svm/sev.c sev_savic_set_requested_irr (RFC v2)
 */
export function savicSetRequestedIrr(acc: Access, v: VcpuId, fate?: (f: SavicVectorFate, vector: number) => void): boolean {
  const L = acc.layout;
  let any = false;
  for (let i = 0; i < 8; i++) {
    const kvmIrr = L.apicBitmapWord(v, APIC_IRR, i);
    const val = acc.readOnce(kvmIrr, 'savic:kvm-irr-read');
    if (val === 0) continue;
    const r = L.vmcb(v, VMCB.REQUESTED_IRR, i);
    const old = acc.readOnce(r, 'savic:requested-irr-read');
    acc.writeOnce(r, old | val, 'savic:requested-irr-write');
    acc.atomicAnd(kvmIrr, ~val, 'savic:kvm-irr-clear');
    if (fate) forEachBit(old & val, i, (vec) => fate('coalesced', vec));
    any = true;
  }
  if (any) acc.writeOnce(L.vmcb(v, VMCB.UPDATE_IRR), 1, 'savic:update-irr-write');
  return any;
}

/**
 * KVM-originated fixed interrupt (device, IOAPIC, LAPIC timer): KVM's IRR, KVM_REQ_EVENT, kick;
 * the target's own vcpu_enter_guest moves it into RequestedIRR.
 * @kvm arch/x86/kvm/svm/sev.c sev_savic_deliver_interrupt (RFC v2: kvm_lapic_set_irr + REQ_EVENT + kick)
 */
export function savicDeliverInterrupt(ctx: KvmCtx, target: VcpuId, vector: number): void {
  const { acc, L } = ctx;
  if (ctx.patches.has(PATCH_SAVIC_REMOTE_REQUESTED_IRR)) {
    // The delivering thread injects itself: RequestedIRR |= vector; UpdateIRR = 1 — while the
    // target's CPU may be inside VMRUN's read-then-clear of the same fields.
    if (ctx.runningVcpu !== target) ctx.stats.count('savicRemoteRequestedIrr');
    if ((acc.atomicOr(L.vmcb(target, VMCB.REQUESTED_IRR, vecWord(vector)), 1 << vecPos(vector), 'savic:remote-requested-irr-or') >>> vecPos(vector)) & 1) {
      ctx.stats.countCoalesced(target, vector);
      ctx.trace.emit(EV.COALESCED, target, vector, 3);
    }
    acc.writeOnce(L.vmcb(target, VMCB.UPDATE_IRR), 1, 'savic:remote-update-irr-write');
    kvmVcpuKick(ctx, target);
    return;
  }
  if (acc.testAndSetBit(L.apicBitmapWord(target, APIC_IRR, vecWord(vector)), vecPos(vector), 'savic:kvm-irr-set')) {
    ctx.stats.countCoalesced(target, vector);
    ctx.trace.emit(EV.COALESCED, target, vector, 2);
  } else {
    ctx.trace.emit(EV.IRR_SET, target, vector);
  }
  kvmMakeRequest(acc, target, KVM_REQ_EVENT);
  kvmVcpuKick(ctx, target);
}

/**
 * inject_irq for Secure AVIC: move KVM's IRR into RequestedIRR (runs on the vCPU's own thread,
 * right before VMRUN).
 * @kvm arch/x86/kvm/svm/sev.c sev_savic_set_requested_irr (via kvm_x86_ops.inject_irq)
 */
export function savicInjectIrq(ctx: KvmCtx, v: VcpuId): void {
  if (savicSetRequestedIrr(ctx.acc, v, savicFateCounter(ctx, v))) ctx.trace.emit(EV.SAVIC_REQUESTED_IRR, v, 1);
}

/**
 * vNMI injection: set V_NMI_PENDING in the VMSA's vintr_ctrl (no EVENTINJ). With one already
 * pending the new NMI collapses into it (counted as `nmisCoalesced`).
 * @kvm arch/x86/kvm/svm/svm.c svm_inject_nmi (vNMI: svm_set_vnmi_pending)
 */
export function savicInjectNmi(ctx: KvmCtx, v: VcpuId): void {
  const { acc, L } = ctx;
  ctx.stats.count('nmisSent');
  if (acc.xchg(L.vmcb(v, VMCB.V_NMI_PENDING), 1, 'savic:vnmi-pending-set') !== 0) ctx.stats.count('nmisCoalesced');
}

/**
 * pre_sev_run: clear has_pending_ipi just before VMRUN (the only place it is cleared, SA-4).
 * @kvm arch/x86/kvm/svm/sev.c pre_sev_run (RFC v2)
 */
export function savicPreSevRun(ctx: KvmCtx, v: VcpuId): void {
  ctx.acc.writeOnce(ctx.L.vmcb(v, VMCB.HAS_PENDING_IPI), 0, 'savic:pending-ipi-clear');
}

/**
 * Does the halted vCPU have something to run for? KVM cannot read the guest's IRR, so: a guest
 * IPI announced since the last VMRUN (has_pending_ipi, after a full barrier that pairs with the
 * sender's), or something in KVM's own IRR still to be requested.
 * @kvm arch/x86/kvm/svm/sev.c sev_savic_has_pending_interrupt (protected_apic_has_interrupt)
 */
export function savicProtectedApicHasInterrupt(ctx: KvmCtx, v: VcpuId): boolean {
  const { acc, L } = ctx;
  acc.smpMb('savic:has-interrupt-mb');
  if (acc.readOnce(L.vmcb(v, VMCB.HAS_PENDING_IPI), 'savic:pending-ipi-read') !== 0) return true;
  // Under savic-remote-requested-irr KVM's IRR is bypassed: a vector waiting in RequestedIRR for
  // VMRUN is what that design has pending.
  if (ctx.patches.has(PATCH_SAVIC_REMOTE_REQUESTED_IRR) && acc.readOnce(L.vmcb(v, VMCB.UPDATE_IRR), 'savic:update-irr-read') !== 0) return true;
  return apicFindHighestIrr(acc, v) >= 0;
}

/**
 * The MSR_PROT VMGEXIT that follows a guest's #VC IPI handler (it already wrote every target's
 * backing page): for each destination, has_pending_ipi = true, a full barrier, then the target's
 * mode: in guest mode → AVIC doorbell to its pCPU; otherwise kvm_vcpu_kick (wakes a sleeper).
 * @kvm arch/x86/kvm/svm/sev.c savic_handle_icr_write (RFC v2)
 */
export function savicHandleIcrWrite(ctx: KvmCtx, source: VcpuId, lo: number, hi: number): void {
  const { acc, L } = ctx;
  const icr = decodeIcr(lo, hi, true);
  for (const t of apicDestinations(acc, source, icr, ctx.nrVcpus, true)) {
    if (t === source) continue;
    acc.writeOnce(L.vmcb(t, VMCB.HAS_PENDING_IPI), 1, 'savic:pending-ipi-set');
    // Order the has_pending_ipi store before the vcpu->mode load (pairs with the target's
    // mode = OUTSIDE_GUEST_MODE ... smp_mb() ... has_pending_ipi load).
    if (!ctx.patches.has(PATCH_SAVIC_ICR_WRITE_NO_MB)) acc.smpMb('savic:pending-ipi-mb');
    const inGuest = acc.loadAcquire(L.vcpu(t, VCPU.MODE), 'savic:mode-read') === IN_GUEST_MODE;
    ctx.trace.emit(EV.SAVIC_PENDING_IPI, t, inGuest ? 1 : 0);
    if (inGuest) avicRingDoorbell(ctx, t);
    else kvmVcpuKick(ctx, t);
  }
}
