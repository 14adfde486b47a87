/**
 * What an AMD CPU does for a Secure AVIC guest between VMRUN and #VMEXIT (APM vol. 2, Secure
 * AVIC; domain notes 7), together with the guest's own #VC IPI handler, which runs in guest
 * mode on the sender's thread:
 *
 * - VMRUN: with UpdateIRR set, RequestedIRR ∩ ALLOWED_IRR is merged into the guest-owned backing
 *   page's IRR, and RequestedIRR/UpdateIRR are cleared ({@link savicVmrun}).
 * - Delivery: the highest backing-page IRR vector whose class is above PPR (from the backing
 *   page's TPR and ISR) is taken (IRR → ISR); an edge EOI is accelerated (ISR cleared).
 * - NMIs: V_NMI_PENDING (KVM's vNMI) or NMI_REQUEST (a guest IPI) are taken unless
 *   V_NMI_BLOCKING; the handler's IRET ends the blocking.
 * - IPIs: only self-IPIs (SELF_IPI MSR, ICR shorthand self) are accelerated. Any other ICR
 *   write raises #VC (AVIC_INCOMPLETE_IPI) in the guest: its handler sets the IRR bit (fixed) or
 *   NMI_REQUEST (NMI) in each target's backing page — locked RMWs on guest memory — and then
 *   does an MSR_PROT VMGEXIT (WRMSR ICR), which exits to KVM (savic_handle_icr_write).
 * - HLT: the idle-HLT intercept exits only if no virtual interrupt is pending; otherwise the
 *   CPU delivers it (with a plain HLT intercept KVM would block a vCPU whose IRR it cannot see:
 *   domain SA-3, the savic-ipi-hlt scenario).
 * - The CPU looks at the backing page at VMRUN, when a doorbell (MSR_AMD64_SVM_AVIC_DOORBELL to
 *   this pCPU) arrives in guest mode, after an accelerated EOI or NMI, and for its own self-IPIs;
 *   an IRR bit another vCPU's #VC handler writes stays unseen until then.
 */
import { PCPU, VMCB, SAVIC_ALLOWED_IRR, SAVIC_NMI_REQUEST, vecPos, vecWord, type VcpuId } from '../../mem/layout.js';
import { APIC_IRR, APIC_ISR, APIC_SELF_IPI, APIC_TASKPRI } from '../../mem/apicdef.js';
import type { Access } from '../../mem/access.js';
import { apicDestinations, computePpr, decodeIcr } from '../../apic/index.js';
import { EV } from '../../trace/events.js';
import { ExitReason, type GuestExit, type GuestProgram, type KvmCtx } from '../../kvm/x86-ops.js';

/** x2APIC ICR MSR. */
const MSR_X2APIC_ICR = 0x830;
/** x2APIC SELF_IPI MSR (0x800 + APIC_SELF_IPI / 16). */
const MSR_X2APIC_SELF_IPI = 0x800 + (APIC_SELF_IPI >>> 4);

/** Highest vector set in a backing-page bitmap (IRR/ISR), -1 if none. */
function highestVector(acc: Access, v: VcpuId, bitmap: number, label: string): number {
  const L = acc.layout;
  for (let i = 7; i >= 0; i--) {
    const w = acc.readOnce(L.savicBacking(v, bitmap + 0x10 * i), label) >>> 0;
    if (w !== 0) return i * 32 + 31 - Math.clz32(w);
  }
  return -1;
}

/**
 * The vector the CPU would deliver from the backing page now (above PPR), or -1.
 * @apm AMD64 APM vol. 2, 15.29 AVIC: interrupt delivery from the vAPIC backing page
 */
export function savicDeliverableVector(acc: Access, v: VcpuId): number {
  const irr = highestVector(acc, v, APIC_IRR, 'savic:hw-irr-scan');
  if (irr < 0) return -1;
  const tpr = acc.readOnce(acc.layout.savicBacking(v, APIC_TASKPRI), 'savic:hw-tpr-read');
  const ppr = computePpr(tpr, highestVector(acc, v, APIC_ISR, 'savic:hw-isr-scan'));
  return (irr & 0xf0) > (ppr & 0xf0) ? irr : -1;
}

/**
 * V_INTR pending for the idle-HLT intercept: a deliverable vector or an NMI the CPU can take.
 * @apm AMD64 APM vol. 2, Idle HLT intercept
 */
export function savicVintrPending(acc: Access, v: VcpuId): boolean {
  return savicDeliverableVector(acc, v) >= 0 || savicNmiPending(acc, v);
}

function savicNmiPending(acc: Access, v: VcpuId): boolean {
  const L = acc.layout;
  if (acc.readOnce(L.vmcb(v, VMCB.V_NMI_BLOCKING), 'savic:hw-vnmi-blocking-read') !== 0) return false;
  return (
    acc.readOnce(L.vmcb(v, VMCB.V_NMI_PENDING), 'savic:hw-vnmi-pending-read') !== 0 ||
    (acc.readOnce(L.savicBacking(v, SAVIC_NMI_REQUEST), 'savic:hw-nmi-request-read') & 1) !== 0
  );
}

/** Take a pending NMI (vNMI first, then NMI_REQUEST): run the guest's handler and IRET. */
function savicTakeNmi(ctx: KvmCtx, v: VcpuId, guest: GuestProgram): boolean {
  const { acc, L } = ctx;
  if (!savicNmiPending(acc, v)) return false;
  let source = 0;
  if (acc.xchg(L.vmcb(v, VMCB.V_NMI_PENDING), 0, 'savic:hw-vnmi-take') !== 0) source = 1;
  else if ((acc.atomicAnd(L.savicBacking(v, SAVIC_NMI_REQUEST), ~1, 'savic:hw-nmi-request-take') & 1) !== 0) source = 2;
  if (source === 0) return false;
  acc.writeOnce(L.vmcb(v, VMCB.V_NMI_BLOCKING), 1, 'savic:hw-vnmi-blocking-set');
  guest.onNmi?.();
  ctx.stats.count('nmisDelivered');
  ctx.trace.emit(EV.NMI, v, source);
  // IRET from the handler unblocks NMIs.
  acc.writeOnce(L.vmcb(v, VMCB.V_NMI_BLOCKING), 0, 'savic:hw-vnmi-blocking-clear');
  return true;
}

/** Deliver the highest deliverable backing-page vector, run the handler, accelerated EOI. */
function savicDeliver(ctx: KvmCtx, v: VcpuId, guest: GuestProgram): boolean {
  const { acc, L } = ctx;
  const vec = savicDeliverableVector(acc, v);
  if (vec < 0) return false;
  if (!acc.testAndClearBit(L.savicBacking(v, APIC_IRR + 0x10 * vecWord(vec)), vecPos(vec), 'savic:hw-irr-ack')) return false;
  acc.setBit(L.savicBacking(v, APIC_ISR + 0x10 * vecWord(vec)), vecPos(vec), 'savic:hw-isr-set');
  ctx.trace.emit(EV.ACK, v, vec);
  guest.onInterrupt(vec);
  ctx.stats.countDelivered(v, vec);
  ctx.trace.emit(EV.DELIVERED, v, vec);
  // The handler's EOI: accelerated for an edge-triggered vector (clears the highest ISR bit).
  const isr = highestVector(acc, v, APIC_ISR, 'savic:hw-isr-scan');
  if (isr >= 0) acc.clearBit(L.savicBacking(v, APIC_ISR + 0x10 * vecWord(isr)), vecPos(isr), 'savic:hw-eoi');
  ctx.trace.emit(EV.EOI, v, isr);
  return true;
}

/**
 * Set `vector` in vCPU t's backing-page IRR from guest code (locked, as the guest's
 * apic_set_vector does), counting it as sent (or coalesced with one already pending).
 * @kvm arch/x86/kernel/apic/x2apic_savic.c (guest) savic_icr_write / apic_set_vector
 */
export function savicGuestSetIrr(ctx: KvmCtx, t: VcpuId, vector: number): void {
  const { acc, L } = ctx;
  ctx.stats.countSent(t, vector);
  ctx.trace.emit(EV.IPI_SENT, t, vector);
  if (acc.testAndSetBit(L.savicBacking(t, APIC_IRR + 0x10 * vecWord(vector)), vecPos(vector), 'savic:guest-irr-set')) {
    ctx.stats.countCoalesced(t, vector);
    ctx.trace.emit(EV.COALESCED, t, vector, 1);
  } else {
    ctx.trace.emit(EV.IRR_SET, t, vector);
  }
}

/**
 * The guest's #VC handler for a non-self ICR write: write every target's backing page (IRR bit
 * or NMI_REQUEST). Returns false for what Secure AVIC does not support (SMI/INIT/SIPI/...: the
 * guest does not send them; the write is passed on to KVM as is).
 * @kvm arch/x86/kernel/apic/x2apic_savic.c (guest) savic_icr_write
 */
export function savicGuestVcIcrWrite(ctx: KvmCtx, v: VcpuId, lo: number, hi: number): boolean {
  const icr = decodeIcr(lo, hi, true);
  if (icr.deliveryMode !== 'fixed' && icr.deliveryMode !== 'nmi') return false;
  for (const t of apicDestinations(ctx.acc, v, icr, ctx.nrVcpus, true)) {
    if (icr.deliveryMode === 'nmi') {
      ctx.stats.count('nmisSent');
      if ((ctx.acc.atomicOr(ctx.L.savicBacking(t, SAVIC_NMI_REQUEST), 1, 'savic:guest-nmi-request-set') & 1) !== 0) ctx.stats.count('nmisCoalesced');
    } else if (icr.vector >= 16) {
      savicGuestSetIrr(ctx, t, icr.vector);
    }
  }
  return true;
}

/** How KVM programmed the VMCB's HLT intercepts (INTERCEPT_HLT / INTERCEPT_IDLE_HLT). */
export interface SavicHltIntercept {
  /** Idle-HLT intercept: HLT exits only if no virtual interrupt is pending; else a plain HLT intercept (always exits). */
  readonly idleHlt: boolean;
}

/**
 * Run a Secure AVIC guest from VMRUN until a #VMEXIT, at most `maxSteps` guest steps. VMRUN
 * merges RequestedIRR, drops a doorbell that rang while this pCPU was outside guest mode and
 * evaluates the backing page; afterwards the CPU looks at the page again only when a doorbell
 * arrives, after an accelerated EOI or NMI, and for its own self-IPIs — what another vCPU's #VC
 * handler writes into this page stays unseen until KVM's doorbell (or the next VMRUN). A pending
 * vector is taken with RFLAGS.IF = 1; HLT exits as `intercept` says.
 * @apm AMD64 APM vol. 2, Secure AVIC: VMRUN (the UpdateIRR merge), doorbell and guest execution until #VMEXIT; Idle HLT intercept. KVM's pre_sev_run runs before it (kvm/svm/savic.ts)
 */
export function savicVcpuRun(ctx: KvmCtx, v: VcpuId, guest: GuestProgram, maxSteps: number, intercept: SavicHltIntercept): GuestExit {
  const { acc, L } = ctx;
  // VMRUN is serializing: the flag clear is visible before the guest reads its backing page.
  acc.smpMb('savic:vmrun-serialize');
  const merged = savicVmrun(acc, v, savicFateCounter(ctx, v));
  if (merged > 0) ctx.trace.emit(EV.SAVIC_VMRUN, v, merged);
  const hostIrr = L.pcpu(ctx.cpu, PCPU.HOST_IRR_SYS);
  const doorbell = L.pcpu(ctx.cpu, PCPU.AVIC_DOORBELL);
  if (acc.readOnce(doorbell, 'avic:hw-doorbell-read') !== 0) acc.xchg(doorbell, 0, 'avic:hw-vmrun-doorbell-drop');
  // V_INTR / V_NMI as the CPU last evaluated them (VMRUN evaluates).
  let vintr = savicVintrPending(acc, v);
  for (let step = 0; step < maxSteps; step++) {
    if (acc.readOnce(hostIrr, 'hw:host-irr-read') !== 0) return { reason: ExitReason.EXTERNAL_INTERRUPT };
    if (acc.readOnce(doorbell, 'avic:hw-doorbell-read') !== 0 && acc.xchg(doorbell, 0, 'avic:hw-doorbell-ack') !== 0) vintr = savicVintrPending(acc, v);
    if (vintr) {
      if (savicTakeNmi(ctx, v, guest)) {
        vintr = savicVintrPending(acc, v);
        continue;
      }
      if ((guest.interruptsEnabled?.() ?? true) && savicDeliver(ctx, v, guest)) {
        vintr = savicVintrPending(acc, v);
        continue;
      }
    }
    const act = guest.step();
    if (act.kind === 'run') continue;
    if (act.kind === 'hlt') {
      // Idle-HLT intercept: no exit while a virtual interrupt is pending (a doorbell that has
      // arrived is processed first; the CPU takes no other exit between this check and the HLT
      // exit); `sti; hlt` re-enabled IF, so the vector is taken.
      if (intercept.idleHlt) {
        if (acc.readOnce(doorbell, 'avic:hw-doorbell-read') !== 0 && acc.xchg(doorbell, 0, 'avic:hw-doorbell-ack') !== 0) vintr = savicVintrPending(acc, v);
        if (vintr) continue;
      }
      return { reason: ExitReason.HLT };
    }
    if (act.msr === MSR_X2APIC_SELF_IPI) {
      savicGuestSetIrr(ctx, v, act.lo & 0xff);
      vintr = savicVintrPending(acc, v);
      continue;
    }
    if (act.msr === MSR_X2APIC_ICR) {
      const icr = decodeIcr(act.lo, act.hi, true);
      if (icr.shorthand === 'self' && icr.deliveryMode === 'fixed') {
        savicGuestSetIrr(ctx, v, icr.vector);
        vintr = savicVintrPending(acc, v);
        continue;
      }
      if (savicGuestVcIcrWrite(ctx, v, act.lo, act.hi)) return { reason: ExitReason.VMGEXIT, msr: act.msr, lo: act.lo, hi: act.hi };
    }
    // Other APIC MSRs (the LAPIC timer) go to KVM through MSR_PROT VMGEXITs; KVM emulates them.
    return { reason: ExitReason.MSR_WRITE, msr: act.msr, lo: act.lo, hi: act.hi };
  }
  return { reason: ExitReason.PREEMPTION_TIMER };
}

/** What happened to a vector on its way through RequestedIRR (for accounting and events). */
export type SavicVectorFate = 'coalesced' | 'filtered';

/**
 * What VMRUN does with UpdateIRR set: merge RequestedIRR, filtered by the guest's ALLOWED_IRR,
 * into the backing page's IRR, then clear RequestedIRR and UpdateIRR — a read followed by a
 * separate clear, not an atomic exchange (why only the running CPU may write them). A vector
 * already pending in the backing page coalesces; one the guest does not allow is dropped.
 * Returns the number of vectors merged.
 * @apm AMD64 APM vol. 2, Secure AVIC: VMRUN processing of UpdateIRR / RequestedIRR
 */
export function savicVmrun(acc: Access, v: VcpuId, fate?: (f: SavicVectorFate, vector: number) => void): number {
  const L = acc.layout;
  if (acc.readOnce(L.vmcb(v, VMCB.UPDATE_IRR), 'savic:vmrun-update-irr-read') === 0) return 0;
  let merged = 0;
  for (let i = 0; i < 8; i++) {
    const req = acc.readOnce(L.vmcb(v, VMCB.REQUESTED_IRR, i), 'savic:vmrun-read');
    if (req === 0) continue;
    const allowed = acc.readOnce(L.savicBacking(v, SAVIC_ALLOWED_IRR + 0x10 * i), 'savic:vmrun-allowed-read');
    const irr = L.savicBacking(v, APIC_IRR + 0x10 * i);
    const old = acc.readOnce(irr, 'savic:vmrun-irr-read');
    acc.writeOnce(irr, old | (req & allowed), 'savic:vmrun-irr-write');
    merged += popcount(req & allowed & ~old);
    if (fate) {
      forEachBit(req & allowed & old, i, (vec) => fate('coalesced', vec));
      forEachBit(req & ~allowed, i, (vec) => fate('filtered', vec));
    }
  }
  for (let i = 0; i < 8; i++) acc.writeOnce(L.vmcb(v, VMCB.REQUESTED_IRR, i), 0, 'savic:vmrun-clear');
  acc.writeOnce(L.vmcb(v, VMCB.UPDATE_IRR), 0, 'savic:vmrun-clear-update-irr');
  return merged;
}

/** Call `f` for each vector whose bit is set in `bits` (word `word` of a 256-bit bitmap). @emulator */
export function forEachBit(bits: number, word: number, f: (vector: number) => void): void {
  for (let b = bits >>> 0; b !== 0; ) {
    const bit = 31 - Math.clz32(b);
    b &= ~(1 << bit);
    f(word * 32 + bit);
  }
}

function popcount(x: number): number {
  let n = 0;
  for (let b = x >>> 0; b !== 0; b &= b - 1) n++;
  return n;
}

/** Accounting callback for {@link savicSetRequestedIrr} / {@link savicVmrun}. @emulator */
export function savicFateCounter(ctx: KvmCtx, v: VcpuId): (f: SavicVectorFate, vector: number) => void {
  return (f, vector) => {
    if (f === 'coalesced') {
      ctx.stats.countCoalesced(v, vector);
      ctx.trace.emit(EV.COALESCED, v, vector, 3);
    } else {
      ctx.stats.count('savicFiltered');
    }
  };
}
