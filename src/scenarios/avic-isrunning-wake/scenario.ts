/**
 * avic-isrunning-wake — AMD AVIC: the target vCPU clears IsRunning in its physical APIC ID table
 * entry on the way to block (avic_vcpu_blocking), while a sender's AVIC sets the IPI in the
 * target's backing page and acts on IsRunning. Domain notes 3.1-3.3, 3.5 AV-1 (and AV-2 for the
 * IsRunning invariant), 0.2; seed 003 (the Secure AVIC series' IPI/HLT analysis, whose plain-AVIC
 * counterpart this is). See README.md beside this file.
 *
 *   CPU1 (sender: guest ICR write, its AVIC)        CPU0 (target: HLT exit -> kvm_vcpu_block)
 *   hw/svm/avic.ts avicHwIcrWrite                   kvm/svm/avic.ts avic_vcpu_blocking:
 *     table lookup (entry says IsRunning = 1)         entry.IsRunning = 0
 *                                                   kvm/block.ts: set_current_state (smp_mb);
 *     IRR[v] |= bit (locked)                          kvm_vcpu_check_block: vIRR empty -> sleep
 *   erratum #1235 (family 17h): acts on the IsRunning of its lookup → doorbell to CPU0, which is
 *     not in guest mode: nothing; the target sleeps with IRR[v] set.
 *   fixed (v6.17+: avic_hardware_setup turns IPI virtualization off on family 17h): the table
 *     never says IsRunning, every IPI takes #VMEXIT(AVIC_INCOMPLETE_IPI) → KVM's
 *     avic_incomplete_ipi_interception → avic_kick_target_vcpus → kvm_vcpu_wake_up.
 *
 * Every step above is the machine's code (vcpu_enter_guest, the SVM ops, the AVIC hardware
 * model, kvm_vcpu_block); this module holds the topology, the guests and pacing (ipi-round.ts),
 * the IsRunning log for the checker, and the variants, which are patches.
 */
import { APIC_IRR } from '../../mem/apicdef.js';
import { AVIC_PHYSID, PCPU, VCPU, planScratch, type PcpuId, type VcpuId } from '../../mem/layout.js';
import type { Access } from '../../mem/access.js';
import { vcpuEnterGuest } from '../../kvm/x86.js';
import type { KvmCtx, KvmX86Ops } from '../../kvm/x86-ops.js';
import { svmX86Ops } from '../../kvm/svm/svm.js';
import { PATCH_AVIC_IPIV_ON_ERRATUM_1235 } from '../../kvm/svm/avic.js';
import { AVIC_PHYSICAL_ID_ENTRY, PATCH_HW_AVIC_ERRATUM_1235, cpuPhysicalId } from '../../hw/svm/avic.js';
import { avicIsRunningImpliesLoaded, avicNoSleepWithPendingIrr, type IsRunningRound, type PhysIdEntry, type PhysIdEntryWrite, type PhysIdFinal } from '../../invariants/avic.js';
import type { Violation } from '../../invariants/checks.js';
import type { ScenarioCtx, ScenarioDef, ScenarioParams } from '../define.js';
import { resetVmSlice, scenarioKvmCtx } from '../kvm-actor.js';
import { IdleTargetGuest, IpiSenderGuest, blockTarget, ipiRound, ipiRoundAreas, sleepRecord, targetAwaitSenders, type BlockOutcome, type IpiRound } from '../ipi-round.js';

/** The vCPU that goes idle, and the pCPU its thread runs on. */
const TARGET: VcpuId = 0;
const TARGET_PCPU: PcpuId = 0;
/** Most senders (one IRR word each: vectors 0xfb, 0xdb, 0xbb). */
const MAX_SENDERS = 3;
/** IPIs each sender sends per round. */
const IPIS_PER_SENDER = 4;
/** Guest steps per VM-entry before a preemption-timer exit. */
const GUEST_STEPS = 64;

/** Upper bounds of the seeded random timing, the same for every variant. */
export const AVIC_TIMING = {
  /** Target: guest steps of work between wake-up and the next idle entry. */
  WORK_STEPS: 4,
  /** Target: guest steps with IRQs off between the idle entry and "about to halt". */
  IDLE_STEPS: 4,
  /** Target: guest steps between "about to halt" and sti; hlt (a fixed count). */
  HALT_STEPS: 8,
  /** Sender: upper bound of the pause (local loop iterations) after "idle task on". */
  JITTER_SPINS: 600,
  /** Sender: seeded spread (±, local loop iterations) around the adaptive pause after "about to halt". */
  LATE_SPREAD: 100,
  /** Sender: step of the adaptive pause (local loop iterations). */
  ADAPT_STEP: 16,
  /** Sender: every IPI goes on "about to halt" (with IRQs off before it, earlier IPIs only meet a masked guest). */
  LATE_SHARE: 1,
} as const;

function senders(p: ScenarioParams): number {
  return Math.min(MAX_SENDERS, Math.max(1, p.vcpus - 1));
}

/** Entry snapshots logged per round (one per load/put/blocking/unblocking of the target). */
const MAX_LOG = 128;
/** Words per logged snapshot: table lo/hi, KVM copy lo/hi, flags. */
const LOG_WORDS = 5;

const plans = new Map<number, ReturnType<typeof makePlan>>();
function makePlan() {
  return planScratch({ ...ipiRoundAreas(MAX_SENDERS), log: 1 + LOG_WORDS * MAX_LOG });
}
function plan(p: ScenarioParams): ReturnType<typeof makePlan> {
  let pl = plans.get(p.vcpus);
  if (!pl) plans.set(p.vcpus, (pl = makePlan()));
  return pl;
}

/** This run's round words. */
function round(ctx: { acc: Access; params: ScenarioParams }): IpiRound {
  return ipiRound(ctx.acc, plan(ctx.params).at, senders(ctx.params), TARGET);
}

/** The APIC ID of the pCPU vCPU v is loaded on right now, -1 if none (bookkeeping). */
function loadedHostId(acc: Access, v: VcpuId): number {
  const L = acc.layout;
  const cpu = acc.peek(L.vcpu(v, VCPU.CPU));
  return cpu >= 0 && acc.peek(L.pcpu(cpu, PCPU.CURRENT_VCPU)) === v ? cpuPhysicalId(cpu) : -1;
}

/** Log flag: the vCPU was blocking (kvm_vcpu_is_blocking) right after KVM's call. */
const LOG_BLOCKING = 1;

/**
 * The SVM operations with a log of the target's entry after each of KVM's AVIC load/put calls
 * (kept in the thread's heap, flushed to scratch at the end of the round: no shared-memory access
 * is added to the race).
 */
class EntryLog {
  readonly words = new Int32Array(LOG_WORDS * MAX_LOG);
  n = 0;
  readonly ops: KvmX86Ops;
  constructor() {
    const after = (k: KvmCtx, v: VcpuId) => this.record(k.acc, v);
    this.ops = {
      ...svmX86Ops,
      vcpuLoad(k, v, cpu) {
        svmX86Ops.vcpuLoad(k, v, cpu);
        after(k, v);
      },
      vcpuPut(k, v) {
        svmX86Ops.vcpuPut(k, v);
        after(k, v);
      },
      vcpuBlocking(k, v) {
        svmX86Ops.vcpuBlocking?.(k, v);
        after(k, v);
      },
      vcpuUnblocking(k, v) {
        svmX86Ops.vcpuUnblocking?.(k, v);
        after(k, v);
      },
    };
  }
  private record(acc: Access, v: VcpuId): void {
    if (v !== TARGET || this.n >= MAX_LOG) return;
    const L = acc.layout;
    const o = LOG_WORDS * this.n++;
    for (let w = 0; w < 4; w++) this.words[o + w] = acc.peek(L.avicPhysId(v, w));
    this.words[o + 4] = (acc.peek(L.vcpu(v, VCPU.WAIT_TASK)) !== 0 ? LOG_BLOCKING : 0) | ((loadedHostId(acc, v) + 1) << 8);
  }
  flush(acc: Access, at: number): void {
    const L = acc.layout;
    acc.poke(L.scratch(at), this.n);
    for (let i = 0; i < LOG_WORDS * this.n; i++) acc.poke(L.scratch(at + 1 + i), this.words[i]!);
  }
}

const logs = new WeakMap<ScenarioCtx, EntryLog>();
function kvmCtxOf(ctx: ScenarioCtx): { k: KvmCtx; log: EntryLog } {
  let log = logs.get(ctx);
  if (!log) logs.set(ctx, (log = new EntryLog()));
  const l = log;
  return { k: scenarioKvmCtx(ctx, () => l.ops), log: l };
}

/** KVM_RUN's vcpu_load on pCPU `cpu`. */
function vcpuLoad(k: KvmCtx, v: VcpuId, cpu: PcpuId): void {
  k.acc.writeOnce(k.L.pcpu(cpu, PCPU.CURRENT_VCPU), v, 'sched:current-vcpu');
  k.acc.writeOnce(k.L.vcpu(v, VCPU.CPU), cpu, 'vcpu:cpu-write');
  k.ops.vcpuLoad(k, v, cpu);
}

/** vcpu_put at the end of KVM_RUN. */
function vcpuPut(k: KvmCtx, v: VcpuId, cpu: PcpuId): void {
  k.ops.vcpuPut(k, v);
  k.acc.writeOnce(k.L.pcpu(cpu, PCPU.CURRENT_VCPU), -1, 'sched:current-vcpu');
}

/**
 * The target's round: KVM_RUN on pCPU 0 — vcpu_enter_guest until the guest HLTs, then
 * kvm_vcpu_block — until every sender is done, or until it sleeps with nobody left to wake it.
 */
function targetRound(ctx: ScenarioCtx): void {
  const { k, log } = kvmCtxOf(ctx);
  log.n = 0;
  const R = round(ctx);
  const T = AVIC_TIMING;
  const guest = new IdleTargetGuest(ctx, R, { workSteps: T.WORK_STEPS, idleSteps: T.IDLE_STEPS, haltSteps: T.HALT_STEPS }, false);
  targetAwaitSenders(R);
  vcpuLoad(k, TARGET, TARGET_PCPU);
  let outcome: BlockOutcome = 'runnable';
  while (!guest.finished) {
    if (vcpuEnterGuest(k, TARGET, guest, GUEST_STEPS) !== 'halt') continue;
    // HLT exit: kvm_emulate_halt -> vcpu_block -> kvm_vcpu_halt (no halt polling) -> kvm_vcpu_block.
    outcome = blockTarget(k, R, TARGET_PCPU);
    if (outcome === 'asleep') break;
  }
  if (outcome === 'runnable') vcpuPut(k, TARGET, TARGET_PCPU);
  log.flush(ctx.acc, plan(ctx.params).at.log);
}

/** One sender's round: its vCPU runs the sender guest, whose ICR writes go through its AVIC. */
function senderRound(ctx: ScenarioCtx): void {
  const { k } = kvmCtxOf(ctx);
  const me: VcpuId = ctx.index;
  const T = AVIC_TIMING;
  const guest = new IpiSenderGuest(ctx, round(ctx), { ipis: IPIS_PER_SENDER, jitter: T.JITTER_SPINS, lateShare: T.LATE_SHARE, lateSpread: T.LATE_SPREAD, adaptStep: T.ADAPT_STEP });
  vcpuLoad(k, me, me);
  while (!guest.finished) vcpuEnterGuest(k, me, guest, GUEST_STEPS);
  vcpuPut(k, me, me);
}

/** A fresh SVM VM for every round (KVM_CREATE_VCPU: valid entries, not running), nobody blocking. */
function setUp(acc: Access, p: ScenarioParams): void {
  const L = acc.layout;
  resetVmSlice(acc, 'svm', p.vcpus, plan(p).words);
  for (let v = 0; v < p.vcpus; v++) {
    for (const f of [VCPU.WAIT_TASK, VCPU.TASK_STATE, VCPU.BLOCKING, VCPU.READY]) acc.poke(L.vcpu(v, f), 0);
    acc.poke(L.pcpu(v, PCPU.AVIC_DOORBELL), 0);
  }
}

/** Decode a logged or final entry (its high and low words). */
function decode(lo: number, hi: number): PhysIdEntry {
  return { valid: (hi & AVIC_PHYSICAL_ID_ENTRY.VALID_MASK_HI) !== 0, isRunning: (hi & AVIC_PHYSICAL_ID_ENTRY.IS_RUNNING_MASK_HI) !== 0, hostId: lo & AVIC_PHYSICAL_ID_ENTRY.HOST_PHYSICAL_ID_MASK_LO };
}

/** The round's entry snapshots and final entries for the IsRunning checker. */
function isRunningRecord(ctx: ScenarioCtx): IsRunningRound {
  const { acc, L, params } = ctx;
  const at = plan(params).at.log;
  const writes: PhysIdEntryWrite[] = [];
  const n = acc.peek(L.scratch(at));
  const w = (i: number, j: number) => acc.peek(L.scratch(at + 1 + LOG_WORDS * i + j));
  for (let i = 0; i < n; i++) {
    const f = w(i, 4);
    const state = { vcpu: TARGET, blocking: (f & LOG_BLOCKING) !== 0, loadedHostId: (f >> 8) - 1 };
    writes.push({ ...state, copy: 'table', entry: decode(w(i, AVIC_PHYSID.ENTRY_LO), w(i, AVIC_PHYSID.ENTRY_HI)) });
    writes.push({ ...state, copy: 'kvm', entry: decode(w(i, AVIC_PHYSID.KVM_ENTRY_LO), w(i, AVIC_PHYSID.KVM_ENTRY_HI)) });
  }
  const final: PhysIdFinal[] = [];
  for (let v = 0; v < params.vcpus; v++) {
    const e = (word: number) => acc.peek(L.avicPhysId(v, word));
    final.push({
      vcpu: v,
      table: decode(e(AVIC_PHYSID.ENTRY_LO), e(AVIC_PHYSID.ENTRY_HI)),
      kvm: decode(e(AVIC_PHYSID.KVM_ENTRY_LO), e(AVIC_PHYSID.KVM_ENTRY_HI)),
      loadedHostId: loadedHostId(acc, v),
      blocking: acc.peek(L.vcpu(v, VCPU.WAIT_TASK)) !== 0,
    });
  }
  return { writes, final };
}

/** The scenario. */
export const avicIsrunningWake: ScenarioDef = {
  id: 'avic-isrunning-wake',
  title: 'AVIC: IsRunning cleared on the way to block vs. a sender whose AVIC still acts on IsRunning = 1',
  seedFile: '003_7040354a06e62716.txt',
  variants: [
    {
      name: 'buggy',
      buggy: true,
      differs: 'a family-17h host (erratum #1235) whose KVM leaves IPI virtualization on (avic_hardware_setup without the 8de4a1c8164e quirk), so the table says IsRunning to a sender that can miss the clear',
      patches: [PATCH_HW_AVIC_ERRATUM_1235, PATCH_AVIC_IPIV_ON_ERRATUM_1235],
      kernel: 'before v6.17 with AVIC on an AMD family 17h host (Hygon family 18h: until 9a12fa5213cf)',
    },
    { name: 'fixed', buggy: false, differs: '', patches: [PATCH_HW_AVIC_ERRATUM_1235], kernel: 'v6.17 and later (8de4a1c8164e; Hygon family 18h: 9a12fa5213cf)' },
    { name: 'no-erratum', buggy: false, differs: 'a host without erratum #1235 (family 19h+): IPI virtualization on, the AVIC orders its IRR store before the IsRunning load', kernel: 'any (the hardware is correct)' },
  ],
  invariants: [
    { name: 'avicNoSleepWithPendingIrr', description: 'a vCPU asleep in kvm_vcpu_block never has a deliverable IRR bit in its backing page without a wake-up in flight' },
    { name: 'avicIsRunningImpliesLoaded', description: "IsRunning (table or KVM copy) implies the vCPU is loaded on the entry's host APIC ID and is not blocking" },
  ],
  widen: { probability: 0.3, maxSpins: 200, points: ['guest:', 'avic:hw-backing-page-fetch'] },
  vcpus: { default: 2, min: 2, max: MAX_SENDERS + 1 },
  roles: (p) => ['target', ...Array.from({ length: senders(p) }, (_, i) => `sender${i}`)],
  layout: (p) => ({ vcpus: p.vcpus, pcpus: p.vcpus, scratchWords: plan(p).words }),
  init(acc, p) {
    setUp(acc, p);
  },
  round(ctx) {
    if (ctx.index === 0) targetRound(ctx);
    else senderRound(ctx);
  },
  check(ctx): Violation[] {
    const R = round(ctx);
    return [...avicNoSleepWithPendingIrr(sleepRecord(R, (i) => ctx.L.apicBitmapWord(TARGET, APIC_IRR, i))), ...avicIsRunningImpliesLoaded(isRunningRecord(ctx))];
  },
  reset(ctx) {
    setUp(ctx.acc, ctx.params);
  },
};
