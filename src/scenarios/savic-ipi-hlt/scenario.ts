/**
 * savic-ipi-hlt — AMD Secure AVIC: a guest IPI (the sender's #VC handler writes the target's
 * guest-owned backing-page IRR, then asks KVM with an MSR_PROT VMGEXIT) races with the target
 * vCPU going idle (HLT). Seed 003 ("[RFC PATCH v2 00/17] AMD: Add Secure AVIC KVM Support",
 * sections "IPI Support" and "Idle HLT Intercept"; patch "Add IPI Delivery Support for Secure
 * AVIC"); domain notes 7.1-7.3 (SA-2, SA-3, SA-4) and 0.2. See README.md beside this file.
 *
 *   CPU1 (sender vCPU thread)                     CPU0 (target vCPU thread)
 *   hw/svm/savic.ts: guest #VC: IRR[v] |= bit     guest idle: cli; timer MSR_PROT VMGEXIT (exit +
 *     in the target's page; MSR_PROT VMGEXIT        VMRUN: pre_sev_run clears has_pending_ipi);
 *   kvm/svm/sev.ts savic_handle_icr_write:          sti; hlt — idle-HLT: exit only without V_INTR
 *     has_pending_ipi = true; smp_mb()            mode = OUTSIDE_GUEST_MODE
 *     mode == IN_GUEST_MODE ? doorbell : kick     kvm_vcpu_block: set_current_state (smp_mb);
 *                                                   sev_savic_has_pending_interrupt: smp_mb;
 *                                                   has_pending_ipi || KVM IRR ? run : sleep
 *   savic-icr-write-no-mb: the flag store is still buffered when KVM loads mode == IN (stale) and
 *     rings a doorbell at a CPU that left guest mode; the target's check reads the flag as 0.
 *   savic-plain-hlt-intercept: an IPI that lands while the guest has IRQs off has its flag
 *     cleared by the idle path's VMRUN; sti; hlt then exits although V_INTR is pending, and KVM,
 *     which cannot read the guest IRR, blocks the vCPU.
 *
 * Every step is the machine's code (vcpu_enter_guest, the Secure AVIC ops and hardware model,
 * kvm_vcpu_block, kvm_vcpu_kick); this module holds the topology, the guests and pacing
 * (ipi-round.ts) and the variants, which are patches.
 */
import { APIC_IRR, APIC_ISR } from '../../mem/apicdef.js';
import { PCPU, VCPU, VMCB, planScratch, type PcpuId, type VcpuId } from '../../mem/layout.js';
import type { Access } from '../../mem/access.js';
import { vcpuEnterGuest } from '../../kvm/x86.js';
import type { KvmCtx } from '../../kvm/x86-ops.js';
import { savicX86Ops, PATCH_SAVIC_PLAIN_HLT_INTERCEPT } from '../../kvm/svm/savic.js';
import { PATCH_SAVIC_ICR_WRITE_NO_MB } from '../../kvm/svm/sev.js';
import { savicNoSleepWithPendingIpi } from '../../invariants/avic.js';
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
export const SAVIC_TIMING = {
  /** Target: guest steps of work between wake-up and the next idle entry. */
  WORK_STEPS: 4,
  /** Target: guest steps after the idle timer VMGEXIT, before "about to halt". */
  IDLE_STEPS: 4,
  /** Target: guest steps between "about to halt" and sti; hlt (a fixed count). */
  HALT_STEPS: 8,
  /** Sender: upper bound of the pause (local loop iterations) after "idle task on". */
  JITTER_SPINS: 600,
  /** Sender: seeded spread (±, local loop iterations) around the adaptive pause after "about to halt". */
  LATE_SPREAD: 100,
  /** Sender: step of the adaptive pause (local loop iterations). */
  ADAPT_STEP: 16,
  /**
   * Sender: share of IPIs sent on "about to halt" (around the HLT exit); the rest go on "idle
   * task on" (IRQs off, before the idle path's timer VMGEXIT).
   */
  LATE_SHARE: 0.75,
} as const;

function senders(p: ScenarioParams): number {
  return Math.min(MAX_SENDERS, Math.max(1, p.vcpus - 1));
}

const plans = new Map<number, ReturnType<typeof makePlan>>();
function makePlan() {
  return planScratch(ipiRoundAreas(MAX_SENDERS));
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

function kvmCtxOf(ctx: ScenarioCtx): KvmCtx {
  return scenarioKvmCtx(ctx, () => savicX86Ops);
}

/** KVM_RUN's vcpu_load on pCPU `cpu`. */
function vcpuLoad(k: KvmCtx, v: VcpuId, cpu: PcpuId): void {
  k.acc.writeOnce(k.L.pcpu(cpu, PCPU.CURRENT_VCPU), v, 'sched:current-vcpu');
  k.acc.writeOnce(k.L.vcpu(v, VCPU.CPU), cpu, 'vcpu:cpu-write');
  k.ops.vcpuLoad(k, v, cpu);
}

/**
 * The target's round: KVM_RUN on pCPU 0 — vcpu_enter_guest until the guest HLTs (its idle path
 * stops the tick through an MSR_PROT VMGEXIT first), then kvm_vcpu_block — until every sender is
 * done, or until it sleeps with nobody left to wake it.
 */
function targetRound(ctx: ScenarioCtx): void {
  const k = kvmCtxOf(ctx);
  const R = round(ctx);
  const T = SAVIC_TIMING;
  const guest = new IdleTargetGuest(ctx, R, { workSteps: T.WORK_STEPS, idleSteps: T.IDLE_STEPS, haltSteps: T.HALT_STEPS }, true);
  targetAwaitSenders(R);
  vcpuLoad(k, TARGET, TARGET_PCPU);
  let outcome: BlockOutcome = 'runnable';
  while (!guest.finished) {
    if (vcpuEnterGuest(k, TARGET, guest, GUEST_STEPS) !== 'halt') continue;
    outcome = blockTarget(k, R, TARGET_PCPU);
    if (outcome === 'asleep') break;
  }
  if (outcome === 'runnable') {
    k.ops.vcpuPut(k, TARGET);
    k.acc.writeOnce(k.L.pcpu(TARGET_PCPU, PCPU.CURRENT_VCPU), -1, 'sched:current-vcpu');
  }
}

/** One sender's round: its guest's ICR writes go through its #VC handler and KVM's MSR_PROT handling. */
function senderRound(ctx: ScenarioCtx): void {
  const k = kvmCtxOf(ctx);
  const me: VcpuId = ctx.index;
  const T = SAVIC_TIMING;
  const guest = new IpiSenderGuest(ctx, round(ctx), { ipis: IPIS_PER_SENDER, jitter: T.JITTER_SPINS, lateShare: T.LATE_SHARE, lateSpread: T.LATE_SPREAD, adaptStep: T.ADAPT_STEP });
  vcpuLoad(k, me, me);
  while (!guest.finished) vcpuEnterGuest(k, me, guest, GUEST_STEPS);
  k.ops.vcpuPut(k, me);
}

/** A fresh Secure AVIC VM for every round: empty backing pages and VMCB fields, nobody blocking. */
function setUp(acc: Access, p: ScenarioParams): void {
  const L = acc.layout;
  resetVmSlice(acc, 'savic', p.vcpus, plan(p).words);
  for (let v = 0; v < p.vcpus; v++) {
    for (const f of [VCPU.WAIT_TASK, VCPU.TASK_STATE, VCPU.BLOCKING, VCPU.READY]) acc.poke(L.vcpu(v, f), 0);
    for (let i = 0; i < 8; i++) {
      acc.poke(L.savicBacking(v, APIC_IRR + 0x10 * i), 0);
      acc.poke(L.savicBacking(v, APIC_ISR + 0x10 * i), 0);
    }
    for (const f of [VMCB.UPDATE_IRR, VMCB.V_NMI_PENDING, VMCB.V_NMI_BLOCKING, VMCB.HAS_PENDING_IPI]) acc.poke(L.vmcb(v, f), 0);
    for (let i = 0; i < 8; i++) acc.poke(L.vmcb(v, VMCB.REQUESTED_IRR, i), 0);
    acc.poke(L.pcpu(v, PCPU.AVIC_DOORBELL), 0);
  }
}

/** The scenario. */
export const savicIpiHlt: ScenarioDef = {
  id: 'savic-ipi-hlt',
  title: 'Secure AVIC: a guest IPI (backing-page IRR + MSR_PROT VMGEXIT) races with the target vCPU halting',
  seedFile: '003_7040354a06e62716.txt',
  variants: [
    { name: 'buggy-no-fence', buggy: true, differs: 'savic_handle_icr_write has no smp_mb() between the has_pending_ipi store and the vcpu->mode load', patches: [PATCH_SAVIC_ICR_WRITE_NO_MB] },
    { name: 'buggy-no-idle-hlt', buggy: true, differs: 'the VMCB uses a plain HLT intercept instead of the idle-HLT intercept', patches: [PATCH_SAVIC_PLAIN_HLT_INTERCEPT] },
    { name: 'fixed', buggy: false, differs: '', kernel: 'none upstream: the RFC (v1 Feb 2025, v2 Sep 2025) as posted — Secure AVIC KVM support is a proposal' },
  ],
  invariants: [{ name: 'savicNoSleepWithPendingIpi', description: 'a vCPU asleep in kvm_vcpu_block never has a deliverable vector pending in its guest-owned backing page without a wake-up in flight' }],
  widen: { probability: 0.3, maxSpins: 200, points: ['guest:'] },
  vcpus: { default: 2, min: 2, max: MAX_SENDERS + 1 },
  roles: (p) => ['target', ...Array.from({ length: senders(p) }, (_, i) => `sender${i}`)],
  layout: (p) => ({ vcpus: p.vcpus, pcpus: p.vcpus, savic: true, scratchWords: plan(p).words }),
  init(acc, p) {
    setUp(acc, p);
  },
  round(ctx) {
    if (ctx.index === 0) targetRound(ctx);
    else senderRound(ctx);
  },
  check(ctx): Violation[] {
    const R = round(ctx);
    return savicNoSleepWithPendingIpi({ ...sleepRecord(R, (i) => ctx.L.savicBacking(TARGET, APIC_IRR + 0x10 * i)), pendingIpiFlag: ctx.acc.peek(ctx.L.vmcb(TARGET, VMCB.HAS_PENDING_IPI)) !== 0 });
  },
  reset(ctx) {
    setUp(ctx.acc, ctx.params);
  },
};
