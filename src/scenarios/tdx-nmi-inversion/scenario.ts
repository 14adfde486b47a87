/**
 * tdx-nmi-inversion — TDX: NMI X exits the TD, NMI X+1 becomes pending in SEAM root, SEAMRET
 * unblocks NMIs and X+1 is handled through the host IDT before KVM calls the handler for X
 * (causality inversion), whose handlers then find nothing: "unknown NMI". Seed: 002 ("[PATCH
 * 0/7] KVM: TDX: TD vcpu enter/exit", Sean Christopherson / Binbin Wu, Nov 2024; domain notes
 * 6.3, 6.4 NMI-2). See README.md beside this file.
 *
 *   CPU0 (TD vCPU thread: the machine's vcpu_enter_guest → tdx_vcpu_run)   CPU1.. (NMI sources)
 *   SEAMCALL TDH.VP.ENTER (hw/tdx/td-cpu)                                   status |= event; NMI X
 *   SEAM non-root: NMI exit, X consumed, NMIs blocked
 *   SEAM root: td_vmexit_to_vmm                                             status |= event; NMI X+1
 *   today's module (patch tdx-module-nmi-unblocked-at-seamret): SEAMRET unblocks,
 *     X+1 delivered through the host IDT (default_do_nmi claims both events), then KVM's
 *     vmx_handle_nmi(X) finds nothing and is not back-to-back: unknown NMI
 *   proposed module fix: SEAMRET keeps NMIs blocked, vmx_handle_nmi(X) runs first, X+1 follows
 *     back-to-back at the same RIP and is swallowed (or handled)
 *
 * Machine code only: the NMI latch and blocking (hw/nmi.ts), SEAMCALL/TD/SEAMRET (hw/tdx/td-cpu),
 * tdx_vcpu_run and vmx_handle_nmi (kvm/vmx), default_do_nmi (host/nmi.ts). This module holds the
 * topology, the NMI sources (devices whose NMI_LOCAL handlers claim their own events), pacing,
 * the record of what happened and the checks.
 */
import { VCPU, planScratch, type Addr, type PcpuId } from '../../mem/layout.js';
import type { Access } from '../../mem/access.js';
import { cpuNmiInit, cpuNmiPending, nmiDeviceRaise } from '../../hw/nmi.js';
import { nmiDeviceClaim, nmiHostStateInit, registerNmiHandler, setNmiObserver, type NmiEntry, type NmiInvocationRecord, type NmiOutcome } from '../../host/nmi.js';
import { PATCH_TDX_MODULE_NMI_UNBLOCKED_AT_SEAMRET } from '../../hw/tdx/td-cpu.js';
import { vcpuEnterGuest } from '../../kvm/x86.js';
import { tdxX86Ops } from '../../kvm/vmx/tdx.js';
import { nmiHandledInArrivalOrder, nmiNoUnknownWithSource, type NmiArrival, type NmiInvocation, type NmiRound } from '../../invariants/nmi.js';
import type { Violation } from '../../invariants/checks.js';
import type { GuestAction, GuestProgram } from '../../kvm/x86-ops.js';
import type { ScenarioCtx, ScenarioDef, ScenarioParams } from '../define.js';
import { resetVmSlice, scenarioKvmCtx } from '../kvm-actor.js';

/** The TD vCPU and the pCPU it runs on. */
const TD_VCPU = 0;
const TD_PCPU: PcpuId = 0;
/** NMIs each source raises per round. */
const RAISES_PER_SOURCE = 2;
/** Upper bound of a source's pause before each raise (cpu_relax iterations). */
const SOURCE_GAP_SPINS = 1500;
/** Guest steps per TD entry before a non-NMI exit (the host tick). */
const GUEST_RUN_STEPS = 100;
/** FRED NMI-source vector of source 0 (0 = unknown source, 2 = external/legacy NMI). */
const FIRST_SOURCE_VECTOR = 3;
/** Most sources: vectors 3..15 of the 16-bit NMI-source bitmap. */
const MAX_SOURCES = 13;

/** Words of one invocation record: first, last, source bits, entry, ip, handled, b2b, outcome. */
const INV_WORDS = 8;
const ENTRIES: readonly NmiEntry[] = ['host-idt', 'kvm-exit'];
const OUTCOMES: readonly NmiOutcome[] = ['handled', 'swallowed', 'unknown'];

function sources(p: ScenarioParams): number {
  return Math.min(MAX_SOURCES, Math.max(1, p.vcpus - 1));
}

function maxInvocations(p: ScenarioParams): number {
  return sources(p) * RAISES_PER_SOURCE + 4;
}

function plan(p: ScenarioParams) {
  const n = sources(p);
  return planScratch({ srcDone: n * 16, invCount: 1, status: n * 16, arrivals: n * 16, invocations: maxInvocations(p) * INV_WORDS });
}

/** A source's status word (its device register: events raised and not yet claimed). */
function statusAddr(ctx: ScenarioCtx, s: number): Addr {
  return ctx.L.scratch(plan(ctx.params).at.status + s * 16);
}

/** The TD's guest: it just runs (its NMIs are host NMIs that exit the TD). */
class RunningGuest implements GuestProgram {
  private static readonly RUN: GuestAction = { kind: 'run' };
  onInterrupt(): void {}
  step(): GuestAction {
    return RunningGuest.RUN;
  }
}


const installed = new WeakSet<Access>();

/** On the TD vCPU's thread: the sources' NMI handlers and the record of every invocation. */
function installHandlers(ctx: ScenarioCtx): void {
  const { acc, L, params } = ctx;
  if (installed.has(acc)) return;
  installed.add(acc);
  for (let s = 0; s < sources(params); s++) registerNmiHandler(acc, () => nmiDeviceClaim(acc, statusAddr(ctx, s), `source ${s}`));
  const at = plan(params).at;
  setNmiObserver(acc, (r: NmiInvocationRecord) => {
    const k = acc.peek(L.scratch(at.invCount));
    if (k >= maxInvocations(params)) return;
    const rec = [r.nmi.first, r.nmi.last, r.nmi.sources, ENTRIES.indexOf(r.entry), r.ip, r.handled, r.b2b ? 1 : 0, OUTCOMES.indexOf(r.outcome)];
    rec.forEach((v, i) => acc.poke(L.scratch(at.invocations + k * INV_WORDS + i), v));
    acc.poke(L.scratch(at.invCount), k + 1);
  });
}

/** The TD vCPU thread's round: KVM_RUN until every source is done and no NMI is left latched. */
function tdRound(ctx: ScenarioCtx): void {
  installHandlers(ctx);
  const k = scenarioKvmCtx(ctx, () => tdxX86Ops);
  const { acc, L, params } = ctx;
  const n = sources(params);
  const at = plan(params).at;
  const allDone = () => {
    for (let s = 0; s < n; s++) if (acc.readOnce(L.scratch(at.srcDone + s * 16), 'nmi:src-done-read') === 0) return false;
    return true;
  };
  const guest = new RunningGuest();
  for (;;) {
    if (allDone() && !cpuNmiPending(acc, TD_PCPU, 'nmi:latch-idle-read')) return;
    vcpuEnterGuest(k, TD_VCPU, guest, GUEST_RUN_STEPS);
  }
}

/** One source's round: RAISES_PER_SOURCE NMIs at CPU0, each after a random pause. */
function sourceRound(ctx: ScenarioCtx): void {
  const { acc, L, params } = ctx;
  const s = ctx.index - 1;
  const at = plan(params).at;
  const status = statusAddr(ctx, s);
  for (let k = 0; k < RAISES_PER_SOURCE; k++) {
    const gap = ctx.prng.below(SOURCE_GAP_SPINS);
    for (let i = 0; i < gap; i++) acc.cpuRelax('src:gap');
    const seq = nmiDeviceRaise(acc, status, TD_PCPU, FIRST_SOURCE_VECTOR + s);
    acc.poke(L.scratch(at.arrivals + s * 16 + k), seq);
  }
  acc.writeOnce(L.scratch(at.srcDone + s * 16), 1, 'nmi:src-done');
}

/** The round's record for the checkers. */
function roundRecord(ctx: ScenarioCtx): NmiRound {
  const { acc, L, params } = ctx;
  const at = plan(params).at;
  const arrivals: NmiArrival[] = [];
  for (let s = 0; s < sources(params); s++) for (let k = 0; k < RAISES_PER_SOURCE; k++) arrivals.push({ seq: acc.peek(L.scratch(at.arrivals + s * 16 + k)), source: s });
  const invocations: NmiInvocation[] = [];
  const count = Math.min(acc.peek(L.scratch(at.invCount)), maxInvocations(params));
  for (let k = 0; k < count; k++) {
    const w = (i: number) => acc.peek(L.scratch(at.invocations + k * INV_WORDS + i));
    invocations.push({ first: w(0), last: w(1), sourceBits: w(2), entry: ENTRIES[w(3)] ?? 'host-idt', ip: w(4), handled: w(5), b2b: w(6) !== 0, outcome: OUTCOMES[w(7)] ?? 'unknown' });
  }
  return { pcpu: TD_PCPU, arrivals, invocations };
}

/** A fresh TD (vCPU 0 on pCPU 0) and a quiet CPU0 for every round. */
function setup(acc: Access, p: ScenarioParams): void {
  resetVmSlice(acc, 'tdx', 1, plan(p).words);
  acc.poke(acc.layout.vcpu(TD_VCPU, VCPU.EXIT_REASON), -1);
  cpuNmiInit(acc, TD_PCPU);
  nmiHostStateInit(acc, TD_PCPU);
}

/** The scenario. */
export const tdxNmiInversion: ScenarioDef = {
  id: 'tdx-nmi-inversion',
  title: 'TDX: NMI X+1, pending in SEAM root, is handled before KVM handles the NMI X that exited the TD',
  seedFile: '002_0386f14b5b8a249e.txt',
  variants: [
    {
      name: 'buggy',
      buggy: true,
      differs: 'today\'s TDX module: after an NMI exit, SEAMRET reloads "NMIs unblocked" from the SEAMCALL VMCS (nothing sets blocking-by-NMI there)',
      patches: [PATCH_TDX_MODULE_NMI_UNBLOCKED_AT_SEAMRET],
    },
    {
      name: 'fixed',
      buggy: false,
      differs: '',
      kernel: 'no released TDX module: the proposed module change (set blocking-by-NMI in the SEAMCALL VMCS on an NMI-caused TD exit, seed 002), not a kernel fix — 6.16 cannot prevent the inversion',
    },
  ],
  invariants: [
    { name: 'nmiHandledInArrivalOrder', description: 'NMIs are handled in arrival order on each pCPU' },
    { name: 'nmiNoUnknownWithSource', description: 'no unknown-NMI report for an NMI that had a source' },
  ],
  widen: { probability: 0.5, maxSpins: 400, points: ['tdx:seam-', 'nmi:raise', 'kvm:'] },
  vcpus: { default: 3, min: 2, max: MAX_SOURCES + 1 },
  roles: (p) => ['td-vcpu', ...Array.from({ length: sources(p) }, (_, i) => `nmi-source${i}`)],
  layout: (p) => ({ vcpus: p.vcpus, pcpus: p.vcpus, scratchWords: plan(p).words }),
  init(acc, p) {
    setup(acc, p);
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
    setup(ctx.acc, ctx.params);
  },
};
