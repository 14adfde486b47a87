/**
 * tdx-nmi-inversion — TDX: NMI X exits the TD, NMI X+1 becomes pending in SEAM root, SEAMRET
 * unblocks NMIs and X+1 is handled through the host IDT before KVM calls the handler for X
 * (causality inversion), whose handlers then find nothing: "unknown NMI". Seed: 002 ("[PATCH
 * 0/7] KVM: TDX: TD vcpu enter/exit", Sean Christopherson / Binbin Wu, Nov 2024; domain notes
 * 6.3, 6.4 NMI-2, 9.1). See README.md beside this file.
 *
 *   CPU0 (TD vCPU thread)                              CPU1 / CPU2 (NMI sources)
 *   SEAMCALL TDH.VP.ENTER  (save NMI-unblocked in the SEAMCALL VMCS)
 *   SEAM non-root: guest runs                          A: status |= event; latch NMI X
 *   NMI exit: accept X (latch -> exit qual.), blocked
 *   SEAM root: td_vmexit_to_vmm saves/restores state   B: status |= event; latch NMI X+1
 *   buggy:  SEAMRET restores "unblocked"                 (held: NMIs blocked in SEAM root)
 *           -> X+1 delivered via the host IDT: handlers poll every source, claim A's and B's
 *              events (2 handled -> swallow armed), IRET
 *           tdx_vcpu_enter_exit -> vmx_handle_nmi(X): a different RIP, so not back-to-back,
 *              nothing left to claim -> unknown NMI; and X+1 was handled before X
 *   fixed:  the module sets blocking-by-NMI in the SEAMCALL VMCS for an NMI exit, so SEAMRET
 *           keeps NMIs blocked; vmx_handle_nmi(X) runs in the noinstr region, its IRET
 *           unblocks, X+1 is delivered back-to-back (same RIP) and swallowed or handled
 *
 * Emulated words: PCPU.NMI_PENDING of CPU0 is the one-deep NMI latch: bits 0-15 the FRED
 * NMI-source bitmap accumulated since the last delivery (non-zero = an NMI is pending), bits
 * 16-30 the arrival count (an NMI's sequence number is taken in the same locked operation that
 * latches it). PCPU.NMI_BLOCKED is CPU0's "blocked by NMI" state. Each source has a status word
 * (bit 0: raise in progress, bits 1-31: events not yet claimed by a handler).
 */
import { PCPU, planScratch, type PcpuId } from '../../mem/layout.js';
import type { Access } from '../../mem/access.js';
import { pollUntil } from '../../sync/wait.js';
import { nmiHandledInArrivalOrder, nmiNoUnknownWithSource, type NmiArrival, type NmiEntry, type NmiInvocation, type NmiOutcome, type NmiRound } from '../../invariants/nmi.js';
import type { Violation } from '../../invariants/checks.js';
import type { ScenarioCtx, ScenarioDef, ScenarioParams } from '../define.js';

/** The pCPU the TD vCPU runs on. */
const TD_PCPU: PcpuId = 0;
/** NMIs each source raises per round. */
const RAISES_PER_SOURCE = 2;
/** Upper bound of a source's pause before each raise (cpu_relax iterations). */
const SOURCE_GAP_SPINS = 1500;
/** How long the guest runs in SEAM non-root before a non-NMI exit (latch polls). */
const GUEST_RUN_SPINS = 300;
/** FRED NMI-source vector of source 0 (0 = unknown source, 2 = external/legacy NMI). */
const FIRST_SOURCE_VECTOR = 3;
/** Most sources: vectors 3..15 of the 16-bit NMI-source bitmap. */
const MAX_SOURCES = 13;

/** Latch word: the NMI-source bitmap (pending iff non-zero) and the arrival count. */
const LATCH_SOURCES = 0xffff;
const LATCH_SEQ_SHIFT = 16;
const LATCH_SEQ_MASK = 0x7fff;
/** Source status word: bit 0 = raise in progress; bits 1-31 count events no handler claimed yet. */
const STATUS_RAISING = 1;

/** Exit reasons of TDH.VP.ENTER in this model. */
const EXIT_REASON_EXCEPTION_NMI = 0;
const EXIT_REASON_TDCALL = 77;

/**
 * Instruction pointers at which CPU0 can take an NMI in VMX root (the back-to-back test of
 * default_do_nmi compares them). Distinct call sites, distinct values.
 */
const IP = {
  /** vcpu_enter_guest, IRQs off, before kvm_x86_run. */
  VCPU_ENTER_GUEST: 0x1100,
  /** The instruction after SEAMRET in __seamcall_saved_ret (tdh_vp_enter returning). */
  SEAMRET_RETURN: 0x1200,
  /** tdx_vcpu_enter_exit decoding vp_enter_ret / the exit qualification. */
  TDX_EXIT_DECODE: 0x1300,
  /** The return address inside vmx_do_nmi_irqoff / fred_entry_from_kvm. */
  VMX_DO_NMI_IRQOFF: 0x1400,
  /** After guest_state_exit_irqoff, back in instrumentable tdx_vcpu_run. */
  TDX_VCPU_RUN: 0x1500,
} as const;

/** Words of CPU0's private area (written only by the TD vCPU thread). */
const CPU = {
  /** NMI-blocking field of the SEAMCALL VMCS (interruptibility saved by SEAMCALL). */
  SEAMCALL_NMI_BLOCKING: 0,
  EXIT_REASON: 1,
  /** Exit qualification of an NMI exit: the NMI-source bitmap, and the arrivals it covers. */
  EXIT_SOURCES: 2,
  EXIT_FIRST: 3,
  EXIT_LAST: 4,
  /** Arrival sequence number of the last NMI CPU0 accepted. */
  ACCEPTED_THROUGH: 5,
  /** default_do_nmi's per-CPU last_nmi_rip and swallow_nmi. */
  LAST_NMI_RIP: 6,
  SWALLOW_NMI: 7,
  /** vcpu->arch.handling_intr_from_guest (kvm_before_interrupt). */
  HANDLING_INTR_FROM_GUEST: 8,
  /** nmi_stats.unknown / nmi_stats.swallow. */
  UNKNOWN: 9,
  SWALLOWED: 10,
  /** Handler invocations logged this round. */
  INVOCATIONS: 11,
  /** TDVPS words the module saves on a TD exit (guest RIP, RSP, RFLAGS, exit info). */
  TDVPS: 12,
} as const;
/** TDVPS words td_vmexit_to_vmm saves (guest GPRs, RIP, RFLAGS, exit information). */
const TDVPS_WORDS = 8;
const CPU_WORDS = CPU.TDVPS + TDVPS_WORDS;
/** kvm_intr_type KVM_HANDLING_NMI. */
const KVM_HANDLING_NMI = 2;

/** Words of one invocation record: first, last, source bits, entry, ip, handled, b2b, outcome. */
const INV_WORDS = 8;
const ENTRIES: readonly NmiEntry[] = ['host-idt', 'kvm-exit'];
const OUTCOMES: readonly NmiOutcome[] = ['handled', 'swallowed', 'unknown'];

function sources(p: ScenarioParams): number {
  return Math.min(MAX_SOURCES, Math.max(1, p.vcpus - 1));
}

function plan(p: ScenarioParams) {
  const n = sources(p);
  return planScratch({
    srcDone: 1,
    cpu: CPU_WORDS,
    status: n * 16,
    arrivals: n * 16,
    invocations: (n * RAISES_PER_SOURCE + 4) * INV_WORDS,
  });
}

/** Where things live this run. */
interface Places {
  n: number;
  at: ReturnType<typeof plan>['at'];
}

function places(ctx: ScenarioCtx): Places {
  return { n: sources(ctx.params), at: plan(ctx.params).at };
}

function cpuWord(ctx: ScenarioCtx, w: number) {
  return ctx.L.scratch(places(ctx).at.cpu + w);
}

/**
 * A source raises an NMI at `pcpu`: set its own status (the event its handler will find), then
 * latch the NMI at the target — one locked operation that ORs its NMI-source vector into the
 * pending bitmap (collapsing into an NMI already pending) and takes the next arrival number —
 * then publish the event in its status (count + 1, raise-in-progress cleared). Returns the
 * arrival sequence number. `status` is the scratch word index of the source's status word.
 * @sdm SDM vol. 3, APIC "Interrupt Command Register" (NMI delivery mode) and "Handling Multiple NMIs" (one NMI latched while blocked); FRED NMI-source reporting
 */
export function nmiRaise(acc: Access, pcpu: PcpuId, sourceVector: number, status: number): number {
  const L = acc.layout;
  const sAddr = L.scratch(status);
  acc.atomicOr(sAddr, STATUS_RAISING, 'nmi:src-status-set');
  const latch = L.pcpu(pcpu, PCPU.NMI_PENDING);
  let w = acc.readOnce(latch, 'nmi:raise-read');
  for (;;) {
    const seq = (((w >>> LATCH_SEQ_SHIFT) & LATCH_SEQ_MASK) + 1) & LATCH_SEQ_MASK;
    const next = (seq << LATCH_SEQ_SHIFT) | (w & LATCH_SOURCES) | (1 << sourceVector);
    const found = acc.cmpxchg(latch, w, next, 'nmi:raise-latch');
    if (found === w) {
      // Raise-in-progress bit set: +1 clears it and carries one more event into the count.
      acc.atomicAdd(sAddr, 1, 'nmi:src-status-publish');
      return seq;
    }
    w = found;
  }
}

/**
 * CPU0 accepts the pending NMI (for delivery through the IDT or as an NMI VM-exit): take the
 * latched NMI-source bitmap, block NMIs. Returns the bitmap and the arrivals it covers, or null
 * when nothing is latched.
 * @sdm SDM vol. 3, "Handling Multiple NMIs" (delivery blocks NMIs) and VMX "NMI exiting" (the NMI is consumed by the VM exit)
 */
export function nmiAccept(ctx: ScenarioCtx, label: string): { sources: number; first: number; last: number } | null {
  const { acc, L } = ctx;
  const latch = L.pcpu(TD_PCPU, PCPU.NMI_PENDING);
  let w = acc.readOnce(latch, `${label}-read`);
  for (;;) {
    if ((w & LATCH_SOURCES) === 0) return null;
    const found = acc.cmpxchg(latch, w, w & ~LATCH_SOURCES, label);
    if (found === w) break;
    w = found;
  }
  acc.xchg(L.pcpu(TD_PCPU, PCPU.NMI_BLOCKED), 1, 'nmi:blocked-set');
  const through = cpuWord(ctx, CPU.ACCEPTED_THROUGH);
  const first = acc.readOnce(through, 'nmi:accepted-read') + 1;
  const last = (w >>> LATCH_SEQ_SHIFT) & LATCH_SEQ_MASK;
  acc.writeOnce(through, last, 'nmi:accepted-write');
  return { sources: w & LATCH_SOURCES, first, last };
}

/**
 * IRET at the end of an NMI handler: NMIs are no longer blocked.
 * @sdm SDM vol. 3, "Handling Multiple NMIs" (IRET unblocks NMIs)
 */
export function nmiIret(ctx: ScenarioCtx): void {
  ctx.acc.xchg(ctx.L.pcpu(TD_PCPU, PCPU.NMI_BLOCKED), 0, 'nmi:iret');
}

/** A handler claims source s's events: wait out a raise in progress, then read-and-clear the count. */
function claimSource(ctx: ScenarioCtx, s: number): number {
  const { acc, L } = ctx;
  const addr = L.scratch(places(ctx).at.status + s * 16);
  const raising = () => (acc.readOnce(addr, 'nmi:handler-poll') & STATUS_RAISING) !== 0;
  // The status write and the NMI message are one device action; the emulator splits them, so a
  // poll that lands between the two waits for the second (bounded).
  if (raising()) pollUntil(acc, addr, 'nmi:handler-poll-wait', () => !raising(), () => `source ${s} to finish raising its NMI`);
  const old = acc.atomicAnd(addr, STATUS_RAISING, 'nmi:handler-claim');
  return old >>> 1;
}

/**
 * The Linux NMI handler for one NMI on CPU0: back-to-back detection by RIP, every NMI_LOCAL
 * handler polls its source, more than one event handled arms `swallow_nmi`, and an NMI nobody
 * claims is swallowed only as the second half of a back-to-back pair, else reported unknown.
 * Logs the invocation for the checkers.
 * @kvm arch/x86/kernel/nmi.c default_do_nmi (nmi_handle(NMI_LOCAL), unknown_nmi_error)
 */
export function defaultDoNmi(ctx: ScenarioCtx, nmi: { sources: number; first: number; last: number }, entry: NmiEntry, ip: number): NmiOutcome {
  const { acc, L } = ctx;
  const lastRip = cpuWord(ctx, CPU.LAST_NMI_RIP);
  const swallow = cpuWord(ctx, CPU.SWALLOW_NMI);
  const b2b = acc.readOnce(lastRip, 'nmi:last-rip-read') === ip;
  if (!b2b) acc.writeOnce(swallow, 0, 'nmi:swallow-reset');
  acc.writeOnce(lastRip, ip, 'nmi:last-rip-write');
  let handled = 0;
  for (let s = 0; s < places(ctx).n; s++) handled += claimSource(ctx, s);
  let outcome: NmiOutcome;
  if (handled > 0) {
    if (handled > 1) acc.writeOnce(swallow, 1, 'nmi:swallow-arm');
    outcome = 'handled';
  } else if (b2b && acc.readOnce(swallow, 'nmi:swallow-read') !== 0) {
    acc.bump(cpuWord(ctx, CPU.SWALLOWED));
    outcome = 'swallowed';
  } else {
    acc.bump(cpuWord(ctx, CPU.UNKNOWN));
    outcome = 'unknown';
  }
  const k = acc.peek(cpuWord(ctx, CPU.INVOCATIONS));
  const base = places(ctx).at.invocations + k * INV_WORDS;
  const rec = [nmi.first, nmi.last, nmi.sources, ENTRIES.indexOf(entry), ip, handled, b2b ? 1 : 0, OUTCOMES.indexOf(outcome)];
  rec.forEach((v, i) => acc.poke(L.scratch(base + i), v));
  acc.poke(cpuWord(ctx, CPU.INVOCATIONS), k + 1);
  return outcome;
}

/**
 * CPU0 at an instruction boundary in VMX root: while NMIs are not blocked and one is latched,
 * deliver it through the host IDT (exc_nmi → default_do_nmi, then IRET). An NMI latched while
 * the handler ran is taken right after its IRET, at the same RIP (back-to-back).
 * @sdm SDM vol. 3, "Priority Among Simultaneous Exceptions and Interrupts" (NMIs recognised at instruction boundaries when not blocked)
 */
export function nmiWindow(ctx: ScenarioCtx, ip: number): void {
  const { acc, L } = ctx;
  for (;;) {
    if (acc.readOnce(L.pcpu(TD_PCPU, PCPU.NMI_BLOCKED), 'nmi:blocked-read') !== 0) return;
    const nmi = nmiAccept(ctx, 'nmi:deliver');
    if (!nmi) return;
    defaultDoNmi(ctx, nmi, 'host-idt', ip);
    nmiIret(ctx);
  }
}

/**
 * TDH.VP.ENTER as the CPU and the TDX module run it on CPU0: SEAMCALL (NMI-inhibit state saved
 * in the SEAMCALL VMCS, NMIs inhibited in SEAM root), VM entry to SEAM non-root (the TD VMCS
 * leaves host NMIs unblocked; NMI exiting is on), the guest runs until an NMI (NMI exit: the
 * NMI is consumed, NMIs blocked) or a TDCALL, then td_vmexit_to_vmm saves the guest and SEAMRET
 * reloads the NMI-inhibit state from the SEAMCALL VMCS. Returns the exit reason.
 * @kvm arch/x86/virt/vmx/tdx/tdx.c tdh_vp_enter (TDX module td_vmexit_to_vmm, tdx_vmm_post_dispatching)
 */
export function tdhVpEnter(ctx: ScenarioCtx): number {
  const { acc, L, params } = ctx;
  const blocked = L.pcpu(TD_PCPU, PCPU.NMI_BLOCKED);
  const seamcallNmiBlocking = cpuWord(ctx, CPU.SEAMCALL_NMI_BLOCKING);
  // SEAMCALL: VMX root -> SEAM root.
  acc.writeOnce(seamcallNmiBlocking, acc.readOnce(blocked, 'tdx:seamcall-save'), 'tdx:seamcall-save');
  acc.xchg(blocked, 1, 'tdx:seamcall-inhibit');
  // VM entry into SEAM non-root.
  acc.xchg(blocked, 0, 'tdx:seam-vmentry');
  let reason = EXIT_REASON_TDCALL;
  const latch = L.pcpu(TD_PCPU, PCPU.NMI_PENDING);
  for (let i = 0; i < GUEST_RUN_SPINS; i++) {
    if ((acc.readOnce(latch, 'tdx:guest-run') & LATCH_SOURCES) === 0) continue;
    const nmi = nmiAccept(ctx, 'tdx:nmi-exit');
    if (!nmi) continue;
    reason = EXIT_REASON_EXCEPTION_NMI;
    acc.writeOnce(cpuWord(ctx, CPU.EXIT_SOURCES), nmi.sources, 'tdx:seam-exit-qual');
    acc.writeOnce(cpuWord(ctx, CPU.EXIT_FIRST), nmi.first, 'tdx:seam-exit-qual');
    acc.writeOnce(cpuWord(ctx, CPU.EXIT_LAST), nmi.last, 'tdx:seam-exit-qual');
    break;
  }
  // TD exit into SEAM root: NMIs inhibited (an NMI exit already blocked them when it took the NMI).
  acc.xchg(blocked, 1, 'tdx:seam-exit');
  acc.writeOnce(cpuWord(ctx, CPU.EXIT_REASON), reason, 'tdx:seam-exit-reason');
  // td_vmexit_to_vmm: save the guest's state into the TDVPS, load the host's.
  for (let i = 0; i < TDVPS_WORDS; i++) acc.writeOnce(cpuWord(ctx, CPU.TDVPS + i), reason + i, 'tdx:seam-root-save');
  if (reason === EXIT_REASON_EXCEPTION_NMI) {
    if (params.variant.buggy) {
      // BUG (deliberate): td_vmexit_to_vmm has no step that propagates blocking-by-NMI into the
      // SEAMCALL VMCS, so SEAMRET below reloads "NMIs unblocked" and an NMI held pending in SEAM
      // root (X+1) is delivered through the host IDT before KVM calls the handler for X.
    } else {
      // Proposed module fix: set_guest_inter_blocking_by_nmi() on an NMI-caused TD exit.
      acc.writeOnce(seamcallNmiBlocking, 1, 'tdx:seam-root-set-nmi-blocking');
    }
  }
  acc.readOnce(cpuWord(ctx, CPU.TDVPS), 'tdx:seam-root-restore-host');
  // SEAMRET: SEAM root -> VMX root, NMI-inhibit state reloaded from the SEAMCALL VMCS.
  acc.xchg(blocked, acc.readOnce(seamcallNmiBlocking, 'tdx:seamret-load'), 'tdx:seamret');
  return reason;
}

/**
 * KVM's handling of an NMI VM-exit: kvm_before_interrupt(KVM_HANDLING_NMI), the NMI handler
 * through a synthesized NMI frame (vmx_do_nmi_irqoff, or fred_entry_from_kvm with the exit
 * qualification's NMI-source bitmap), whose IRET unblocks NMIs, then kvm_after_interrupt.
 * @kvm arch/x86/kvm/vmx/vmx.c vmx_handle_nmi
 */
export function vmxHandleNmi(ctx: ScenarioCtx): void {
  const { acc } = ctx;
  const handling = cpuWord(ctx, CPU.HANDLING_INTR_FROM_GUEST);
  acc.writeOnce(handling, KVM_HANDLING_NMI, 'kvm:before-interrupt');
  const nmi = {
    sources: acc.readOnce(cpuWord(ctx, CPU.EXIT_SOURCES), 'kvm:exit-qual-read'),
    first: acc.readOnce(cpuWord(ctx, CPU.EXIT_FIRST), 'kvm:exit-qual-read'),
    last: acc.readOnce(cpuWord(ctx, CPU.EXIT_LAST), 'kvm:exit-qual-read'),
  };
  defaultDoNmi(ctx, nmi, 'kvm-exit', IP.VMX_DO_NMI_IRQOFF);
  nmiIret(ctx);
  nmiWindow(ctx, IP.VMX_DO_NMI_IRQOFF);
  acc.writeOnce(handling, 0, 'kvm:after-interrupt');
}

/**
 * The noinstr part of a TD vCPU run: TDH.VP.ENTER, decode the exit, handle an NMI exit right
 * away (vmx_handle_nmi), leave. NMIs are taken wherever CPU0 has them unblocked.
 * @kvm arch/x86/kvm/vmx/tdx.c tdx_vcpu_enter_exit
 */
export function tdxVcpuEnterExit(ctx: ScenarioCtx): void {
  tdhVpEnter(ctx);
  nmiWindow(ctx, IP.SEAMRET_RETURN);
  const decoded = ctx.acc.readOnce(cpuWord(ctx, CPU.EXIT_REASON), 'kvm:tdx-exit-reason');
  nmiWindow(ctx, IP.TDX_EXIT_DECODE);
  if (decoded === EXIT_REASON_EXCEPTION_NMI) vmxHandleNmi(ctx);
  nmiWindow(ctx, IP.TDX_VCPU_RUN);
}

/** The TD vCPU thread's round: run the TD until every source is done and no NMI is left. */
function tdRound(ctx: ScenarioCtx): void {
  const { acc, L } = ctx;
  const { n, at } = places(ctx);
  for (;;) {
    nmiWindow(ctx, IP.VCPU_ENTER_GUEST);
    const done = acc.readOnce(L.scratch(at.srcDone), 'nmi:src-done-read') === n;
    if (done && (acc.readOnce(L.pcpu(TD_PCPU, PCPU.NMI_PENDING), 'nmi:latch-idle-read') & LATCH_SOURCES) === 0) return;
    tdxVcpuEnterExit(ctx);
  }
}

/** One source's round: RAISES_PER_SOURCE NMIs at CPU0, each after a random pause. */
function sourceRound(ctx: ScenarioCtx): void {
  const { acc, L } = ctx;
  const s = ctx.index - 1;
  const { at } = places(ctx);
  for (let k = 0; k < RAISES_PER_SOURCE; k++) {
    const gap = ctx.prng.below(SOURCE_GAP_SPINS);
    for (let i = 0; i < gap; i++) acc.cpuRelax('src:gap');
    const seq = nmiRaise(acc, TD_PCPU, FIRST_SOURCE_VECTOR + s, at.status + s * 16);
    acc.poke(L.scratch(at.arrivals + s * 16 + k), seq);
  }
  acc.atomicAdd(L.scratch(at.srcDone), 1, 'nmi:src-done');
}

/** The round's record for the checkers. */
function roundRecord(ctx: ScenarioCtx): NmiRound {
  const { acc, L } = ctx;
  const { n, at } = places(ctx);
  const arrivals: NmiArrival[] = [];
  for (let s = 0; s < n; s++) for (let k = 0; k < RAISES_PER_SOURCE; k++) arrivals.push({ seq: acc.peek(L.scratch(at.arrivals + s * 16 + k)), source: s });
  const invocations: NmiInvocation[] = [];
  const count = acc.peek(cpuWord(ctx, CPU.INVOCATIONS));
  for (let k = 0; k < count; k++) {
    const w = (i: number) => acc.peek(L.scratch(at.invocations + k * INV_WORDS + i));
    invocations.push({ first: w(0), last: w(1), sourceBits: w(2), entry: ENTRIES[w(3)] ?? 'host-idt', ip: w(4), handled: w(5), b2b: w(6) !== 0, outcome: OUTCOMES[w(7)] ?? 'unknown' });
  }
  return { pcpu: TD_PCPU, arrivals, invocations };
}

/** The scenario. */
export const tdxNmiInversion: ScenarioDef = {
  id: 'tdx-nmi-inversion',
  title: 'TDX: NMI X+1, pending in SEAM root, is handled before KVM handles the NMI X that exited the TD',
  seedFile: '002_0386f14b5b8a249e.txt',
  variants: [
    { name: 'buggy', buggy: true, differs: 'SEAMRET after an NMI exit reloads "NMIs unblocked" from the SEAMCALL VMCS (the module does not set blocking-by-NMI)' },
    { name: 'fixed', buggy: false, differs: '' },
  ],
  invariants: [
    { name: 'nmiHandledInArrivalOrder', description: 'NMIs are handled in arrival order on each pCPU' },
    { name: 'nmiNoUnknownWithSource', description: 'no unknown-NMI report for an NMI that had a source' },
  ],
  widen: { probability: 0.5, maxSpins: 400, points: ['tdx:seam-', 'nmi:raise', 'kvm:'] },
  vcpus: { default: 3, min: 2, max: MAX_SOURCES + 1 },
  roles: (p) => ['td-vcpu', ...Array.from({ length: sources(p) }, (_, i) => `nmi-source${i}`)],
  layout: (p) => ({ vcpus: p.vcpus, pcpus: p.vcpus, scratchWords: plan(p).words }),
  init(acc) {
    const L = acc.layout;
    acc.writeOnce(L.pcpu(TD_PCPU, PCPU.NMI_PENDING), 0, 'nmi:init');
    acc.writeOnce(L.pcpu(TD_PCPU, PCPU.NMI_BLOCKED), 0, 'nmi:init');
  },
  round(ctx) {
    if (ctx.index === 0) tdRound(ctx);
    else sourceRound(ctx);
  },
  check(ctx): Violation[] {
    const rec = roundRecord(ctx);
    return [...nmiHandledInArrivalOrder(rec), ...nmiNoUnknownWithSource(rec)];
  },
  reset(ctx) {
    const { acc, L, params } = ctx;
    const { words } = plan(params);
    for (let i = 0; i < words; i++) acc.poke(L.scratch(i), 0);
    acc.poke(L.pcpu(TD_PCPU, PCPU.NMI_PENDING), 0);
    acc.poke(L.pcpu(TD_PCPU, PCPU.NMI_BLOCKED), 0);
  },
};
