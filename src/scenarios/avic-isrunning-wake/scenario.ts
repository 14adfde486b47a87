/**
 * avic-isrunning-wake — AMD AVIC: the target vCPU clears IsRunning in its physical APIC ID table
 * entry on the way to block (avic_vcpu_blocking), while a sender's AVIC hardware sets the IPI in
 * the target's backing page and reads IsRunning. Domain notes 3.1-3.3, 3.5 AV-1 (and AV-2 for
 * the IsRunning invariant), 0.2; seed 003 (the Secure AVIC series' IPI/HLT analysis, whose
 * plain-AVIC counterpart this is). See README.md beside this file.
 *
 *   CPU1 (sender: guest ICR write, AVIC hw)     CPU0 (target: HLT exit -> kvm_vcpu_block)
 *                                               avic_vcpu_blocking: entry.IsRunning = 0
 *   IRR[v] = 1            (plain store,         prepare_to_rcuwait; set_current_state (smp_mb)
 *                          erratum #1235:       kvm_vcpu_check_block: read vIRR
 *   read entry.IsRunning   no barrier)
 *   buggy (enable_ipiv on a family-17h host): the load passes the buffered IRR store:
 *     IsRunning == 1 (stale) -> doorbell to      vIRR == 0 (stale) -> schedule(): asleep with
 *     CPU0, which is not in guest mode: nothing   IRR[v] set, nobody wakes it
 *   fixed (avic_hardware_setup turns IPI virtualization off on family 17h/18h: the table never
 *     says IsRunning): every IPI takes #VMEXIT AVIC_INCOMPLETE_IPI (serializing) ->
 *     avic_kick_vcpu -> svm_complete_interrupt_delivery: doorbell if IN_GUEST_MODE else
 *     kvm_vcpu_wake_up, which pairs with set_current_state's barrier.
 *
 * Emulated words: the physical APIC ID table (one packed word per vCPU: host APIC ID in 11:0,
 * IsRunning bit 30, Valid bit 31 — one word, so hardware reads it in one access as it reads the
 * real 64-bit entry), KVM's copy of each entry (svm->avic_physical_id_entry), an AVIC doorbell
 * word per pCPU, the target's backing page (= KVM's APIC page, IRR at 0x200 + 0x10·i), the
 * vCPU words of src/mem/layout (MODE, WAIT_TASK, TASK_STATE, BLOCKING, CPU, IRR_PENDING,
 * READY) and two guest-memory words in which the target's guest announces that it goes idle.
 *
 * The rcuwait/blocking helpers and the guest CPU model are exported for savic-ipi-hlt.
 */
import { APIC_IRR } from '../../mem/apicdef.js';
import { PCPU, VCPU, planScratch, vecPos, vecWord, type Addr, type PcpuId, type VcpuId } from '../../mem/layout.js';
import type { Access } from '../../mem/access.js';
import { pollUntil } from '../../sync/wait.js';
import { IN_GUEST_MODE, OUTSIDE_GUEST_MODE } from '../../kvm/modes.js';
import { TASK_INTERRUPTIBLE, TASK_RUNNING } from '../../kvm/kick.js';
import { avicIsRunningImpliesLoaded, avicNoSleepWithPendingIrr, type IsRunningRound, type PhysIdEntry, type PhysIdEntryWrite, type PhysIdFinal, type SleepRound } from '../../invariants/avic.js';
import type { Violation } from '../../invariants/checks.js';
import type { ScenarioCtx, ScenarioDef, ScenarioParams } from '../define.js';

/** The vCPU that goes idle, and the pCPU its thread runs on. */
const TARGET: VcpuId = 0;
const TARGET_PCPU: PcpuId = 0;
/** Most senders (one IRR word each: vectors 0xfb, 0xdb, 0xbb). */
const MAX_SENDERS = 3;

/**
 * Packed physical APIC ID table entry (the real entry is a u64: host physical APIC ID 11:0,
 * backing-page address 51:12, IsRunning bit 62, Valid bit 63).
 * @apm AMD64 APM vol. 2, AVIC: Physical APIC ID table entry format
 */
export const AVIC_ENTRY = {
  HOST_ID_MASK: 0xfff,
  IS_RUNNING: 1 << 30,
  VALID: 1 << 31,
} as const;

/**
 * The guest's processor priority in both scenarios: TPR 0, and every taken vector is EOIed at
 * once, so PPR stays 0 (Secure AVIC's idle-HLT needs a TPR that masks nothing).
 */
export const GUEST_PPR = 0;

/**
 * Upper bounds of the seeded random timing (guest steps / local loop iterations), the same for
 * every variant.
 */
export const AVIC_TIMING = {
  /** Guest steps of work between wake-up and the next idle entry. */
  WORK_STEPS: 4,
  /** Guest steps with IRQs off between the idle entry and announcing the idle state. */
  IDLE_STEPS: 4,
  /** Guest steps between announcing "about to halt" and sti; hlt (a fixed count). */
  HALT_STEPS: 8,
  /** Upper bound of a sender's pause (local loop iterations) after "idle task on". */
  JITTER_SPINS: 600,
  /** Seeded spread (±, local loop iterations) around the adaptive pause after "about to halt". */
  LATE_SPREAD: 100,
  /** Step of the adaptive pause (local loop iterations). */
  ADAPT_STEP: 16,
  /**
   * Share of IPIs sent on the "about to halt" announcement: all of them — without a timer exit in
   * the idle path, an IPI sent on "idle task on" only meets a guest with IRQs off.
   */
  LATE_SHARE: 1,
} as const;

/**
 * Polls an actor spins on a pacing condition before it sleeps (each a cpu_relax plus
 * {@link PACE_POLL_SPINS} local iterations: some 100 µs in all, instrumented or not — long enough
 * to stay on its CPU between two idle entries of the target, short enough not to starve the
 * other actors when there are more actors than cores).
 */
const PACE_SPINS = 4000;
/** Local loop iterations between two polls of a pacing condition. */
const PACE_POLL_SPINS = 50;

/** APIC ID of pCPU p (identity in this machine). @emulator */
export function apicIdOf(p: PcpuId): number {
  return p;
}

/**
 * The IPI vector sender s uses: 0xfb (Linux's CALL_FUNCTION_SINGLE_VECTOR, the IPI of
 * smp_call_function_single), then one IRR word lower per further sender (0xdb, 0xbb), so no two
 * senders' IRR updates touch the same word.
 * @emulator
 */
export function ipiVector(s: number): number {
  return 0xfb - 0x20 * s;
}

function senders(p: ScenarioParams): number {
  return Math.min(MAX_SENDERS, Math.max(1, p.vcpus - 1));
}

/** Entry writes logged per round (a round of 4 IPIs per sender writes a few dozen). */
const MAX_LOG = 128;

const plans = new Map<number, ReturnType<typeof makePlan>>();
function makePlan(vcpus: number) {
  return planScratch({
    table: vcpus,
    kvmEntry: vcpus * 16,
    doorbell: vcpus * 16,
    ...ipiRoundAreas(MAX_SENDERS),
    log: 1 + 2 * MAX_LOG,
  });
}
function plan(p: ScenarioParams): ReturnType<typeof makePlan> {
  let pl = plans.get(p.vcpus);
  if (!pl) plans.set(p.vcpus, (pl = makePlan(p.vcpus)));
  return pl;
}

/** Guest-memory announcement words: the idle task starts (IRQs off), and it is about to HLT. */
export const IDLE_EARLY = 0;
/** See {@link IDLE_EARLY}. */
export const IDLE_LATE = 1;

// ------------------------------------------------------------------------------------------
// Shared pieces (also used by savic-ipi-hlt)
// ------------------------------------------------------------------------------------------

/**
 * Wake the vCPU's task if it sleeps on its rcuwait: smp_mb (pairs with set_current_state), look
 * at the waiter, try_to_wake_up (TASK_INTERRUPTIBLE -> TASK_RUNNING, futex notify). Returns
 * whether it woke the task.
 * @kvm virt/kvm/kvm_main.c kvm_vcpu_wake_up (kernel/exit.c rcuwait_wake_up)
 */
export function vcpuWakeUp(acc: Access, v: VcpuId): boolean {
  const L = acc.layout;
  acc.smpMb('vcpu:wake-mb');
  if (acc.readOnce(L.vcpu(v, VCPU.WAIT_TASK), 'vcpu:wait-task-read') === 0) return false;
  const st = L.vcpu(v, VCPU.TASK_STATE);
  if (acc.cmpxchg(st, TASK_INTERRUPTIBLE, TASK_RUNNING, 'vcpu:try-to-wake-up') !== TASK_INTERRUPTIBLE) return false;
  acc.notify(st, 1, 'vcpu:wake-notify');
  acc.writeOnce(L.vcpu(v, VCPU.READY), 1, 'vcpu:ready');
  return true;
}

/** Architecture-specific steps of {@link kvmVcpuBlock}. */
export interface BlockHooks {
  /** kvm_arch_vcpu_blocking (AVIC: put the AVIC, IsRunning = 0). */
  blocking(): void;
  /** kvm_arch_vcpu_unblocking (AVIC: load the AVIC). */
  unblocking(): void;
  /** kvm_vcpu_check_block's verdict, read after set_current_state's barrier: runnable? */
  runnable(): boolean;
}

/** How {@link kvmVcpuBlock} ended: the vCPU is runnable again, or it sleeps at the end of the round. */
export type BlockOutcome = 'runnable' | 'asleep';

/**
 * kvm_vcpu_block() of a halted vCPU (halt_poll_ns = 0): blocking, prepare_to_rcuwait, then
 * loop { set_current_state(TASK_INTERRUPTIBLE) (a full barrier); kvm_vcpu_check_block;
 * schedule() }, finish_rcuwait, unblocking. schedule() takes the task off the pCPU until a
 * waker puts TASK_RUNNING back. The emulator bounds the sleep: once every sender of the round is
 * done and the task is still TASK_INTERRUPTIBLE, nobody will wake it, and the round ends with
 * the vCPU asleep (the checker decides whether that lost a wake-up). A sleep never re-checks
 * without a wake-up.
 * @kvm virt/kvm/kvm_main.c kvm_vcpu_block
 */
export function kvmVcpuBlock(R: IpiRound, cpu: PcpuId, hooks: BlockHooks): BlockOutcome {
  const { acc, target: v } = R;
  const L = acc.layout;
  const st = L.vcpu(v, VCPU.TASK_STATE);
  acc.writeOnce(L.vcpu(v, VCPU.BLOCKING), 1, 'vcpu:blocking');
  hooks.blocking();
  acc.storeRelease(L.vcpu(v, VCPU.WAIT_TASK), 1, 'vcpu:wait-task-set');
  for (;;) {
    acc.writeOnce(st, TASK_INTERRUPTIBLE, 'vcpu:task-interruptible');
    acc.smpMb('vcpu:set-current-state-mb');
    if (hooks.runnable()) break;
    // schedule(): kvm_sched_out clears the per-CPU running vCPU; the task sleeps.
    acc.writeOnce(L.pcpu(cpu, PCPU.CURRENT_VCPU), -1, 'vcpu:sched-out');
    acc.poke(R.inSchedule, 1);
    targetProgress(R);
    paceUntil(acc, st, () => acc.readOnce(st, 'vcpu:schedule') !== TASK_INTERRUPTIBLE || sendersDone(R), `vcpu${v} to be woken or the round's senders to finish`);
    if (acc.readOnce(st, 'vcpu:schedule') === TASK_INTERRUPTIBLE) return 'asleep';
    acc.poke(R.inSchedule, 0);
    acc.writeOnce(L.pcpu(cpu, PCPU.CURRENT_VCPU), v, 'vcpu:sched-in');
  }
  acc.storeRelease(L.vcpu(v, VCPU.WAIT_TASK), 0, 'vcpu:wait-task-clear');
  acc.writeOnce(st, TASK_RUNNING, 'vcpu:task-running');
  hooks.unblocking();
  acc.writeOnce(L.vcpu(v, VCPU.BLOCKING), 0, 'vcpu:unblocking');
  return 'runnable';
}

/** Where a vCPU's backing-page IRR word i lives. */
export type IrrWord = (i: number) => Addr;

/**
 * The highest deliverable vector in a backing page's IRR, scanning from word 7 down, or -1.
 * @kvm arch/x86/kvm/lapic.c apic_search_irr (find_highest_vector) as kvm_apic_has_interrupt uses it
 */
export function highestIrr(acc: Access, irr: IrrWord, label: string): number {
  for (let i = 7; i >= 0; i--) {
    const w = acc.readOnce(irr(i), label) >>> 0;
    if (w === 0) continue;
    const v = i * 32 + 31 - Math.clz32(w);
    if (v >= 0x10 && (v & 0xf0) > (GUEST_PPR & 0xf0)) return v;
  }
  return -1;
}

/** The target's CPU while it runs the guest: interrupt flag, V_INTR, where the guest is. */
export interface GuestCpu {
  /** RFLAGS.IF. */
  ifFlag: boolean;
  /** V_INTR: hardware found a deliverable vector at VMRUN or at the last doorbell. */
  vintr: boolean;
  /** Where the guest resumes after a VM-exit (a small program counter). */
  pc: number;
  /** Idle entries of the guest so far (its idle task's sequence number). */
  idleEpoch: number;
}

/**
 * Hardware evaluation of the backing page (VMRUN, or a doorbell taken in guest mode): V_INTR is
 * set iff the IRR holds a deliverable vector.
 * @apm AMD64 APM vol. 2, AVIC: "the processor evaluates the vAPIC backing page for pending interrupts on VMRUN and on a doorbell"
 */
export function evaluateVintr(acc: Access, g: GuestCpu, irr: IrrWord): void {
  g.vintr = highestIrr(acc, irr, 'hw:irr-evaluate') >= 0;
}

/**
 * VMRUN's interrupt part: a doorbell that rang while this pCPU was outside guest mode is gone,
 * and the processor evaluates the backing page. VMRUN is serializing.
 * @apm AMD64 APM vol. 2, VMRUN (serializing) and AVIC interrupt evaluation at VMRUN
 */
export function vmrunEvaluate(acc: Access, g: GuestCpu, doorbell: Addr, irr: IrrWord): void {
  acc.smpMb('hw:vmrun');
  acc.xchg(doorbell, 0, 'hw:vmrun-doorbell-discard');
  evaluateVintr(acc, g, irr);
}

/**
 * One instruction boundary of the guest on the target: a doorbell rung at this pCPU makes the
 * processor evaluate the backing page; with IF=1 and V_INTR set, the guest takes the highest
 * vector (IRR -> ISR, handler, accelerated EOI) and `onVector` accounts for it.
 * @apm AMD64 APM vol. 2, AVIC: doorbell handling in guest mode and virtual interrupt delivery
 */
export function guestStep(acc: Access, g: GuestCpu, doorbell: Addr, irr: IrrWord, onVector: (v: number) => void): void {
  acc.cpuRelax('guest:step');
  if (acc.readOnce(doorbell, 'hw:doorbell-poll') !== 0 && acc.xchg(doorbell, 0, 'hw:doorbell-take') !== 0) evaluateVintr(acc, g, irr);
  if (!g.ifFlag || !g.vintr) return;
  const v = highestIrr(acc, irr, 'hw:irr-accept');
  if (v >= 0) {
    acc.atomicAnd(irr(vecWord(v)), ~(1 << vecPos(v)), 'hw:irr-accept-clear');
    onVector(v);
  }
  evaluateVintr(acc, g, irr);
}

/**
 * Spin (cpu_relax) until `done()`, then fall back to a bounded sleep on `addr` (whoever changes
 * the condition notifies `addr`). Pacing between the actors of a round, the same for every
 * variant; its labels are never widened.
 * @emulator
 */
export function paceUntil(acc: Access, addr: Addr, done: () => boolean, what: string): void {
  for (let i = 0; i < PACE_SPINS; i++) {
    if (done()) return;
    acc.cpuRelax('pace:spin');
    localSpin(PACE_POLL_SPINS);
  }
  pollUntil(acc, addr, 'pace:wait', done, () => what);
}

/** Sink of {@link localSpin}, so the JIT cannot drop its loop. */
let spinSink = 0;

/**
 * Burn `n` iterations of a local loop: a pause that costs the same whether or not accesses are
 * instrumented (no machine access, no race point).
 * @emulator
 */
export function localSpin(n: number): void {
  let x = spinSink;
  for (let i = 0; i < n; i++) x = (x + i) | 0;
  spinSink = x;
}

/** Scratch areas of {@link IpiRound}, to spread into a scenario's planScratch. @emulator */
export function ipiRoundAreas(maxSenders: number) {
  return { ready: 1, done: 1, progress: 1, inSchedule: 1, idle: 2, phase: maxSenders * 16, sent: maxSenders, delivered: maxSenders };
}

/** The round's pacing and accounting words (emulator bookkeeping, and the guest's idle counters). */
export interface IpiRound {
  readonly acc: Access;
  readonly target: VcpuId;
  readonly senders: number;
  /** Senders at the start line. */
  readonly ready: Addr;
  /** Senders done with the round. */
  readonly done: Addr;
  /** Bumped and notified by the target whenever a sender's pacing condition may have changed. */
  readonly progress: Addr;
  /** 1 while the target's task is inside schedule(). */
  readonly inSchedule: Addr;
  /** Guest memory: the number of the idle entry at that step (IDLE_EARLY: idle task on, IRQs off; IDLE_LATE: about to halt). */
  idle(which: number): Addr;
  /** 1 while sender s is between its IRR write and the end of its notification. */
  phase(s: number): Addr;
  /** IPIs sender s sent, and how many of them the target's guest took. */
  sent(s: number): Addr;
  delivered(s: number): Addr;
}

/** Build the {@link IpiRound} of a scenario from its scratch plan. @emulator */
export function ipiRound(acc: Access, at: { [K in keyof ReturnType<typeof ipiRoundAreas>]: number }, senders: number, target: VcpuId): IpiRound {
  const L = acc.layout;
  return {
    acc,
    target,
    senders,
    ready: L.scratch(at.ready),
    done: L.scratch(at.done),
    progress: L.scratch(at.progress),
    inSchedule: L.scratch(at.inSchedule),
    idle: (which) => L.scratch(at.idle + which),
    phase: (s) => L.scratch(at.phase + s * 16),
    sent: (s) => L.scratch(at.sent + s),
    delivered: (s) => L.scratch(at.delivered + s),
  };
}

/**
 * The target tells sleeping senders that their pacing condition may have changed (an idle
 * announcement, a taken IPI, its task going to sleep).
 * @emulator
 */
export function targetProgress(R: IpiRound): void {
  R.acc.writeOnce(R.progress, R.acc.peek(R.progress) + 1, 'pace:progress');
  R.acc.notify(R.progress, Infinity, 'pace:progress');
}

/** Every sender of the round is done (so nothing will wake the target any more). @emulator */
export function sendersDone(R: IpiRound): boolean {
  return R.acc.readOnce(R.done, 'pace:done-read') === R.senders;
}

/**
 * Start of a round on the target: wait until every sender is on its CPU and spinning, so the
 * IPIs meet the target's idle entries instead of a sender still waking from the round barrier.
 * @emulator
 */
export function targetAwaitSenders(R: IpiRound): void {
  paceUntil(R.acc, R.ready, () => R.acc.readOnce(R.ready, 'pace:ready-read') >= R.senders, 'the senders to be ready');
}

/**
 * The target's guest announces an idle step of its idle entry number `epoch` in guest memory,
 * as the idle task's state is visible to other CPUs' schedulers. Starting an idle entry
 * (IDLE_EARLY) counts it.
 * @emulator
 */
export function announceIdle(R: IpiRound, g: GuestCpu, which: number): void {
  if (which === IDLE_EARLY) g.idleEpoch++;
  R.acc.writeOnce(R.idle(which), g.idleEpoch, which === IDLE_EARLY ? 'guest:idle-enter' : 'guest:idle-halt');
  targetProgress(R);
}

/** The target's guest took vector v: account it to the sender that uses it. @emulator */
export function countDelivered(R: IpiRound, v: number): void {
  const s = (ipiVector(0) - v) / 0x20;
  if (Number.isInteger(s) && s >= 0 && s < R.senders) R.acc.bump(R.delivered(s));
  targetProgress(R);
}

/**
 * The target is asleep in schedule() with nobody left to wake it: TASK_INTERRUPTIBLE and no
 * sender between its IRR write and the end of its notification.
 * @emulator
 */
function targetAsleepForGood(R: IpiRound): boolean {
  const { acc } = R;
  if (acc.peek(R.inSchedule) === 0 || acc.peek(acc.layout.vcpu(R.target, VCPU.TASK_STATE)) !== TASK_INTERRUPTIBLE) return false;
  for (let s = 0; s < R.senders; s++) if (acc.peek(R.phase(s)) !== 0) return false;
  return true;
}

/** How a sender paces its IPIs (seeded; the same for every variant of a scenario). */
export interface SenderPacing {
  /** IPIs per round. */
  ipis: number;
  /** Upper bound of the pause (local loop iterations) after an "idle task on" announcement. */
  jitter: number;
  /** Share of IPIs triggered by the "about to halt" announcement (the rest: "idle task on"). */
  lateShare: number;
  /** Half-width of the seeded spread around the adaptive pause after "about to halt". */
  lateSpread: number;
  /** How far one IPI's outcome moves the adaptive pause. */
  adaptStep: number;
}

/** Most local loop iterations of the adaptive pause. */
const ADAPT_MAX = 20_000;
/** Adaptive pause per scenario on this worker thread (it carries over from round to round). */
const adaptivePause = new Map<string, number>();

/**
 * A sender vCPU's round: up to `ipis` IPIs to the target. Before each, its guest waits until the
 * target's guest announces a new idle entry — the "about to halt" step (share `lateShare`) or
 * the "idle task on" step, seeded — and pauses, as a guest scheduler kicks a CPU it saw go idle;
 * `send` is the IPI (the guest's ICR write and whatever hardware and KVM do), returning whether
 * it found the target still in guest mode. The pause after "idle task on" is a seeded
 * 0..`jitter`; after "about to halt" it is adaptive, like a fuzzer's feedback: it grows by
 * `adaptStep` when the IPI found the target still in guest mode and shrinks when it found it
 * gone, so the IPIs gather where the target leaves guest mode, with a seeded ±`lateSpread` around
 * it. It reacts only to what the sending side itself observed (the same code for every variant)
 * and never decides an outcome. After each IPI the sender waits, like csd_lock_wait() of
 * smp_call_function_single(wait=1), until the target's guest took it — or until the target
 * sleeps with nobody left to wake it (a lost wake-up: the round ends there).
 * @emulator
 */
export function senderRounds(ctx: ScenarioCtx, R: IpiRound, pacing: SenderPacing, send: () => boolean): void {
  const { acc, prng } = ctx;
  const s = ctx.index - 1;
  const key = `${ctx.roles.join(',')}/${s}`;
  let pause = adaptivePause.get(key) ?? pacing.jitter;
  acc.atomicAdd(R.ready, 1, 'pace:ready');
  acc.notify(R.ready, 1, 'pace:ready');
  let epoch = 0;
  for (let k = 0; k < pacing.ipis; k++) {
    const late = prng.next() < pacing.lateShare;
    const w = R.idle(late ? IDLE_LATE : IDLE_EARLY);
    const after = epoch;
    paceUntil(acc, R.progress, () => acc.readOnce(w, 'pace:idle-read') > after, 'the target guest to go idle');
    epoch = acc.readOnce(w, 'pace:idle-read');
    localSpin(late ? Math.max(0, pause + prng.below(2 * pacing.lateSpread + 1) - pacing.lateSpread) : prng.below(pacing.jitter + 1));
    // Bookkeeping with plain stores (bump): no fence the modelled CPU would not execute.
    acc.bump(R.phase(s), 1);
    acc.bump(R.sent(s));
    const inGuest = send();
    acc.bump(R.phase(s), -1);
    if (late) pause = Math.min(ADAPT_MAX, Math.max(0, pause + (inGuest ? pacing.adaptStep : -pacing.adaptStep)));
    const taken = () => acc.peek(R.delivered(s)) > k;
    paceUntil(acc, R.progress, () => taken() || targetAsleepForGood(R), 'the target guest to take the IPI');
    if (!taken()) break;
  }
  adaptivePause.set(key, pause);
  acc.atomicAdd(R.done, 1, 'pace:sender-done');
  // Nudge a target that sleeps so it sees the round is over (no machine state changes).
  acc.notify(acc.layout.vcpu(R.target, VCPU.TASK_STATE), 1, 'pace:round-nudge');
}

/** The target's record for the lost-wake-up checkers. @emulator */
export function sleepRecord(R: IpiRound, irr: IrrWord): SleepRound {
  const { acc } = R;
  const L = acc.layout;
  const words: number[] = [];
  for (let i = 0; i < 8; i++) words.push(acc.peek(irr(i)) >>> 0);
  let sent = 0;
  let delivered = 0;
  let inFlight = 0;
  for (let s = 0; s < R.senders; s++) {
    sent += acc.peek(R.sent(s));
    delivered += acc.peek(R.delivered(s));
    inFlight += acc.peek(R.phase(s));
  }
  const sleeping = acc.peek(L.vcpu(R.target, VCPU.WAIT_TASK)) !== 0 && acc.peek(L.vcpu(R.target, VCPU.TASK_STATE)) === TASK_INTERRUPTIBLE;
  return { vcpu: R.target, sleeping, irr: words, ppr: GUEST_PPR, inFlight, sent, delivered };
}

// ------------------------------------------------------------------------------------------
// AVIC
// ------------------------------------------------------------------------------------------

/** The modelled host: AMD family 17h (Zen 2), affected by erratum #1235. */
const HOST_CPU_FAMILY = 0x17;

/**
 * enable_ipiv as avic_hardware_setup() leaves it: IPI virtualization is turned off on family
 * 17h/18h (erratum #1235: the sender's AVIC can miss a software update that cleared
 * IsRunning, so it neither exits nor wakes the blocking target).
 * @kvm arch/x86/kvm/svm/avic.c avic_hardware_setup (enable_ipiv)
 */
export function avicEnableIpiv(p: ScenarioParams): boolean {
  if (p.variant.buggy) {
    // BUG (deliberate): no erratum #1235 quirk — enable_ipiv stays on for this family-17h host,
    // so __avic_vcpu_load() writes IsRunning=1 into the physical APIC ID table that the
    // sender's AVIC (with no barrier between its IRR store and its IsRunning load) reads.
    return true;
  }
  return !(HOST_CPU_FAMILY === 0x17 || HOST_CPU_FAMILY === 0x18);
}

/** Decode a packed entry. */
function decode(e: number): PhysIdEntry {
  return { valid: (e & AVIC_ENTRY.VALID) !== 0, isRunning: (e & AVIC_ENTRY.IS_RUNNING) !== 0, hostId: e & AVIC_ENTRY.HOST_ID_MASK };
}

/** One vCPU thread's view of the AVIC state it owns. */
export interface AvicVcpu {
  readonly acc: Access;
  readonly v: VcpuId;
  readonly ipiv: boolean;
  readonly table: Addr;
  readonly kvmEntry: Addr;
  /**
   * Entry writes of this round, two words each (packed entry; copy | blocking | host APIC ID the
   * vCPU is loaded on + 1), kept in the thread's heap and flushed to scratch when the round's
   * work is done, so logging adds no shared-memory access to the race.
   */
  readonly log: Int32Array;
  logged: number;
}

function loadedHostId(acc: Access, v: VcpuId): number {
  const L = acc.layout;
  const cpu = acc.peek(L.vcpu(v, VCPU.CPU));
  return cpu >= 0 && acc.peek(L.pcpu(cpu, PCPU.CURRENT_VCPU)) === v ? apicIdOf(cpu) : -1;
}

/** Log flag: the write went to the table (else to KVM's copy). */
const LOG_TABLE = 1;
/** Log flag: the vCPU was blocking when it wrote. */
const LOG_BLOCKING = 2;

function logWrite(a: AvicVcpu, copy: 'table' | 'kvm', e: number): void {
  if (a.logged >= MAX_LOG) return;
  const L = a.acc.layout;
  const blocking = a.acc.peek(L.vcpu(a.v, VCPU.WAIT_TASK)) !== 0;
  a.log[2 * a.logged] = e;
  a.log[2 * a.logged + 1] = (copy === 'table' ? LOG_TABLE : 0) | (blocking ? LOG_BLOCKING : 0) | ((loadedHostId(a.acc, a.v) + 1) << 8);
  a.logged++;
}

/**
 * Point the entry at `cpu` and mark it running; the table gets IsRunning only with IPI
 * virtualization on.
 * @kvm arch/x86/kvm/svm/avic.c __avic_vcpu_load
 */
export function avicVcpuLoadEntry(a: AvicVcpu, cpu: PcpuId): void {
  const { acc } = a;
  let e = acc.readOnce(a.kvmEntry, 'avic:kvm-entry-read');
  e = (e & ~AVIC_ENTRY.HOST_ID_MASK) | (apicIdOf(cpu) & AVIC_ENTRY.HOST_ID_MASK) | AVIC_ENTRY.IS_RUNNING;
  acc.writeOnce(a.kvmEntry, e, 'avic:kvm-entry-write');
  logWrite(a, 'kvm', e);
  const t = a.ipiv ? e : e & ~AVIC_ENTRY.IS_RUNNING;
  acc.writeOnce(a.table, t, 'avic:load-table-write');
  logWrite(a, 'table', t);
}

/**
 * Mark the entry not running (the host APIC ID stays); the table is written only with IPI
 * virtualization on (otherwise it never said IsRunning).
 * @kvm arch/x86/kvm/svm/avic.c __avic_vcpu_put
 */
export function avicVcpuPutEntry(a: AvicVcpu): void {
  const { acc } = a;
  const e = acc.readOnce(a.kvmEntry, 'avic:kvm-entry-read') & ~AVIC_ENTRY.IS_RUNNING;
  if (a.ipiv) {
    acc.writeOnce(a.table, e, 'avic:put-table-write');
    logWrite(a, 'table', e);
  }
  acc.writeOnce(a.kvmEntry, e, 'avic:kvm-entry-write');
  logWrite(a, 'kvm', e);
}

/**
 * sched-in / unblocking: nothing to do while the vCPU is blocking (kvm_vcpu_is_blocking: its
 * rcuwait has a task), else load.
 * @kvm arch/x86/kvm/svm/avic.c avic_vcpu_load
 */
export function avicVcpuLoad(a: AvicVcpu, cpu: PcpuId): void {
  if (a.acc.readOnce(a.acc.layout.vcpu(a.v, VCPU.WAIT_TASK), 'avic:load-is-blocking') !== 0) return;
  avicVcpuLoadEntry(a, cpu);
}

/**
 * sched-out: nothing to do if IsRunning is already clear (the vCPU is blocking), else put.
 * @kvm arch/x86/kvm/svm/avic.c avic_vcpu_put
 */
export function avicVcpuPut(a: AvicVcpu): void {
  if ((a.acc.readOnce(a.kvmEntry, 'avic:kvm-entry-read') & AVIC_ENTRY.IS_RUNNING) === 0) return;
  avicVcpuPutEntry(a);
}

/** Addresses of this run's AVIC state. */
export interface AvicPlaces {
  n: number;
  at: ReturnType<typeof plan>['at'];
  irr: IrrWord;
  doorbell: (p: PcpuId) => Addr;
}

function places(ctx: { L: ScenarioCtx['L']; params: ScenarioParams }): AvicPlaces {
  const { L, params } = ctx;
  const at = plan(params).at;
  return {
    n: senders(params),
    at,
    irr: (i) => L.apicBitmapWord(TARGET, APIC_IRR, i),
    doorbell: (p) => L.scratch(at.doorbell + p * 16),
  };
}

/**
 * The doorbell: WRMSR MSR_AMD64_SVM_AVIC_DOORBELL with the host APIC ID; the target pCPU
 * evaluates its backing page if it is in guest mode and ignores it otherwise. WRMSR serializes.
 * @apm AMD64 APM vol. 2, AVIC doorbell MSR (C001_011Bh)
 */
export function avicDoorbell(acc: Access, doorbellOf: (p: PcpuId) => Addr, hostId: number, label: string): void {
  acc.atomicOr(doorbellOf(hostId), 1, label);
}

/**
 * Ring the doorbell of the pCPU the vCPU was last seen on, unless that is this pCPU.
 * @kvm arch/x86/kvm/svm/avic.c avic_ring_doorbell
 */
export function avicRingDoorbell(acc: Access, doorbellOf: (p: PcpuId) => Addr, target: VcpuId, thisCpu: PcpuId): void {
  const cpu = acc.readOnce(acc.layout.vcpu(target, VCPU.CPU), 'kvm:doorbell-cpu-read');
  if (cpu >= 0 && cpu !== thisCpu) avicDoorbell(acc, doorbellOf, apicIdOf(cpu), 'kvm:doorbell');
}

/**
 * The target of an IPI AVIC could not deliver: mark IRR pending and complete the delivery —
 * load-acquire(mode): IN_GUEST_MODE -> doorbell, else kvm_vcpu_wake_up (AVIC is active on
 * every vCPU here, so the REQ_EVENT branch for an inhibited target is not taken). Returns
 * whether the target was IN_GUEST_MODE.
 * @kvm arch/x86/kvm/svm/avic.c avic_kick_vcpu -> arch/x86/kvm/svm/svm.c svm_complete_interrupt_delivery
 */
export function avicKickVcpu(acc: Access, doorbellOf: (p: PcpuId) => Addr, target: VcpuId, thisCpu: PcpuId): boolean {
  const L = acc.layout;
  acc.writeOnce(L.vcpu(target, VCPU.IRR_PENDING), 1, 'kvm:irr-pending');
  const inGuest = acc.loadAcquire(L.vcpu(target, VCPU.MODE), 'kvm:deliver-mode-read') === IN_GUEST_MODE;
  if (inGuest) avicRingDoorbell(acc, doorbellOf, target, thisCpu);
  else vcpuWakeUp(acc, target);
  return inGuest;
}

/**
 * The sending CPU's AVIC on a guest ICR write (fixed, edge, physical destination): look the
 * destination up in the physical APIC ID table, set the vector in the target's backing-page IRR,
 * then read IsRunning — 1: doorbell to the entry's host APIC ID; 0: #VMEXIT AVIC_INCOMPLETE_IPI
 * (TARGET_NOT_RUNNING). The IRR update is a plain store with no barrier before the IsRunning
 * load: the missing ordering avic_vcpu_blocking's comment suspects behind erratum #1235. The
 * doorbell it sends is a message ordered behind that store, not a barrier.
 * Returns what the hardware did.
 * @apm AMD64 APM vol. 2, AVIC: IPI delivery on a guest ICR write; AMD family 17h revision guide, erratum 1235
 */
export function avicHwSendIpi(acc: Access, P: Pick<AvicPlaces, 'irr' | 'doorbell'>, table: Addr, vector: number): 'doorbell' | 'incomplete-ipi' {
  const entry = acc.readOnce(table, 'avic:hw-entry-lookup');
  if ((entry & AVIC_ENTRY.VALID) === 0) return 'incomplete-ipi';
  const irr = P.irr(vecWord(vector));
  acc.writeOnce(irr, acc.readOnce(irr, 'avic:hw-irr-read') | (1 << vecPos(vector)), 'avic:hw-irr-write');
  const now = acc.readOnce(table, 'avic:hw-isrunning-read');
  if ((now & AVIC_ENTRY.IS_RUNNING) !== 0) {
    // The doorbell message the AVIC sends itself: ordered behind the IRR store (stores stay in
    // order), but no barrier — unlike KVM's WRMSR to the doorbell MSR (avicDoorbell).
    acc.writeOnce(P.doorbell(now & AVIC_ENTRY.HOST_ID_MASK), 1, 'avic:hw-doorbell');
    return 'doorbell';
  }
  return 'incomplete-ipi';
}

// ------------------------------------------------------------------------------------------
// The actors
// ------------------------------------------------------------------------------------------

/** Target guest program counter: working (IF=1), after HLT. */
const PC = { WORK: 0, AFTER_HLT: 1 } as const;

/** IPIs each sender sends per round. */
const IPIS_PER_SENDER = 4;

/** The target guest runs until it exits: HLT, or 'done' once every sender is done. */
function runTargetGuest(ctx: ScenarioCtx, R: IpiRound, g: GuestCpu, P: AvicPlaces): 'hlt' | 'done' {
  const { acc, prng } = ctx;
  const doorbell = P.doorbell(TARGET_PCPU);
  const onVector = (v: number) => countDelivered(R, v);
  if (g.pc === PC.AFTER_HLT) {
    guestStep(acc, g, doorbell, P.irr, onVector);
    g.pc = PC.WORK;
  }
  const n = 1 + prng.below(AVIC_TIMING.WORK_STEPS);
  for (let i = 0; i < n; i++) guestStep(acc, g, doorbell, P.irr, onVector);
  if (sendersDone(R)) return 'done';
  // Idle entry: local_irq_disable(); the idle task is on the CPU (guest memory); then
  // safe_halt() = "sti; hlt": HLT runs in STI's interrupt shadow, and AVIC intercepts HLT
  // unconditionally, so a pending vector does not stop the exit (KVM's vIRR check does).
  g.ifFlag = false;
  announceIdle(R, g, IDLE_EARLY);
  const m = prng.below(AVIC_TIMING.IDLE_STEPS);
  for (let i = 0; i < m; i++) guestStep(acc, g, doorbell, P.irr, onVector);
  announceIdle(R, g, IDLE_LATE);
  for (let i = 0; i < AVIC_TIMING.HALT_STEPS; i++) guestStep(acc, g, doorbell, P.irr, onVector);
  g.ifFlag = true;
  g.pc = PC.AFTER_HLT;
  return 'hlt';
}

/** This run's shared words. */
function shared(ctx: { acc: Access; params: ScenarioParams }): { R: IpiRound; P: AvicPlaces } {
  const P = places({ L: ctx.acc.layout, params: ctx.params });
  return { R: ipiRound(ctx.acc, P.at, P.n, TARGET), P };
}

/**
 * The target's round: KVM_RUN on pCPU 0 — enter, run the guest, block on HLT — until every
 * sender is done, or until it sleeps with nobody left to wake it.
 */
function targetRound(ctx: ScenarioCtx): void {
  const { acc, L, params } = ctx;
  const { R, P } = shared(ctx);
  const a: AvicVcpu = { acc, v: TARGET, ipiv: avicEnableIpiv(params), table: L.scratch(P.at.table + TARGET), kvmEntry: L.scratch(P.at.kvmEntry + TARGET * 16), log: new Int32Array(2 * MAX_LOG), logged: 0 };
  const g: GuestCpu = { ifFlag: true, vintr: false, pc: PC.WORK, idleEpoch: 0 };
  const mode = L.vcpu(TARGET, VCPU.MODE);
  const doorbell = P.doorbell(TARGET_PCPU);
  targetAwaitSenders(R);
  // vcpu_load(): sched-in on pCPU 0.
  acc.writeOnce(L.vcpu(TARGET, VCPU.CPU), TARGET_PCPU, 'vcpu:cpu-set');
  acc.writeOnce(L.pcpu(TARGET_PCPU, PCPU.CURRENT_VCPU), TARGET, 'vcpu:sched-in');
  avicVcpuLoad(a, TARGET_PCPU);
  const hooks: BlockHooks = {
    blocking: () => avicVcpuPutEntry(a),
    unblocking: () => avicVcpuLoad(a, TARGET_PCPU),
    // kvm_vcpu_check_block -> kvm_arch_vcpu_runnable -> kvm_cpu_has_interrupt -> kvm_apic_has_interrupt.
    runnable: () => highestIrr(acc, P.irr, 'kvm:check-block-irr') >= 0,
  };
  let outcome: BlockOutcome = 'runnable';
  for (;;) {
    // vcpu_enter_guest: mode = IN_GUEST_MODE (release), smp_mb__after_srcu_read_unlock, VMRUN.
    acc.storeRelease(mode, IN_GUEST_MODE, 'vcpu:mode-in');
    acc.smpMb('vcpu:enter-mb');
    vmrunEvaluate(acc, g, doorbell, P.irr);
    const exit = runTargetGuest(ctx, R, g, P);
    acc.storeRelease(mode, OUTSIDE_GUEST_MODE, 'vcpu:mode-outside');
    if (exit === 'done') break;
    // HLT exit: kvm_emulate_halt -> vcpu_block -> kvm_vcpu_halt (no halt polling) -> kvm_vcpu_block.
    outcome = kvmVcpuBlock(R, TARGET_PCPU, hooks);
    if (outcome === 'asleep') break;
  }
  if (outcome === 'runnable') {
    // vcpu_put(): sched-out at the end of KVM_RUN.
    avicVcpuPut(a);
    acc.writeOnce(L.pcpu(TARGET_PCPU, PCPU.CURRENT_VCPU), -1, 'vcpu:sched-out');
  }
  // Bookkeeping: the round's entry writes, for the checker.
  acc.poke(L.scratch(P.at.log), a.logged);
  for (let i = 0; i < 2 * a.logged; i++) acc.poke(L.scratch(P.at.log + 1 + i), a.log[i]!);
}

/** One sender's round: IPIs through its AVIC, each when the target goes idle. */
function senderRound(ctx: ScenarioCtx): void {
  const { acc } = ctx;
  const { R, P } = shared(ctx);
  const s = ctx.index - 1;
  const me: PcpuId = s + 1;
  const table = acc.layout.scratch(P.at.table + TARGET);
  const T = AVIC_TIMING;
  senderRounds(ctx, R, { ipis: IPIS_PER_SENDER, jitter: T.JITTER_SPINS, lateShare: T.LATE_SHARE, lateSpread: T.LATE_SPREAD, adaptStep: T.ADAPT_STEP }, () => {
    if (avicHwSendIpi(acc, P, table, ipiVector(s)) === 'doorbell') return true;
    // #VMEXIT(AVIC_INCOMPLETE_IPI) is serializing; KVM then runs on this vCPU's thread:
    // avic_incomplete_ipi_interception -> avic_kick_target_vcpus(_fast) -> avic_kick_vcpu.
    acc.smpMb('avic:incomplete-ipi-vmexit');
    return avicKickVcpu(acc, P.doorbell, TARGET, me);
  });
}

/** Put the machine in its start-of-round state (also the initial state). */
function setUp(acc: Access, p: ScenarioParams): void {
  const L = acc.layout;
  const { words, at } = plan(p);
  for (let i = 0; i < words; i++) acc.poke(L.scratch(i), 0);
  const ipiv = avicEnableIpiv(p);
  for (let v = 0; v < p.vcpus; v++) {
    for (const f of [VCPU.MODE, VCPU.WAIT_TASK, VCPU.TASK_STATE, VCPU.BLOCKING, VCPU.IRR_PENDING, VCPU.READY]) acc.poke(L.vcpu(v, f), 0);
    for (let i = 0; i < 8; i++) acc.poke(L.apicBitmapWord(v, APIC_IRR, i), 0);
    acc.poke(L.vcpu(v, VCPU.APICV_ACTIVE), 1);
    acc.poke(L.pcpu(v, PCPU.CURRENT_VCPU), -1);
    if (v === TARGET) {
      // Not loaded yet: the round starts with KVM_RUN's vcpu_load.
      acc.poke(L.vcpu(v, VCPU.CPU), -1);
      acc.poke(L.scratch(at.table + v), AVIC_ENTRY.VALID);
      acc.poke(L.scratch(at.kvmEntry + v * 16), AVIC_ENTRY.VALID);
    } else {
      // Senders run on their own pCPUs (pCPU v) for the whole round.
      const e = AVIC_ENTRY.VALID | apicIdOf(v) | AVIC_ENTRY.IS_RUNNING;
      acc.poke(L.vcpu(v, VCPU.CPU), v);
      acc.poke(L.pcpu(v, PCPU.CURRENT_VCPU), v);
      acc.poke(L.vcpu(v, VCPU.MODE), IN_GUEST_MODE);
      acc.poke(L.scratch(at.kvmEntry + v * 16), e);
      acc.poke(L.scratch(at.table + v), ipiv ? e : e & ~AVIC_ENTRY.IS_RUNNING);
    }
  }
}

/** The round's entry writes and final entries for the IsRunning checker. */
function isRunningRecord(ctx: ScenarioCtx): IsRunningRound {
  const { acc, L, params } = ctx;
  const P = places(ctx);
  const writes: PhysIdEntryWrite[] = [];
  const n = acc.peek(L.scratch(P.at.log));
  for (let i = 0; i < n; i++) {
    const e = acc.peek(L.scratch(P.at.log + 1 + 2 * i));
    const f = acc.peek(L.scratch(P.at.log + 2 + 2 * i));
    writes.push({ vcpu: TARGET, copy: (f & LOG_TABLE) !== 0 ? 'table' : 'kvm', entry: decode(e), blocking: (f & LOG_BLOCKING) !== 0, loadedHostId: (f >> 8) - 1 });
  }
  const final: PhysIdFinal[] = [];
  for (let v = 0; v < params.vcpus; v++) {
    final.push({
      vcpu: v,
      table: decode(acc.peek(L.scratch(P.at.table + v))),
      kvm: decode(acc.peek(L.scratch(P.at.kvmEntry + v * 16))),
      loadedHostId: loadedHostId(acc, v),
      blocking: acc.peek(L.vcpu(v, VCPU.WAIT_TASK)) !== 0,
    });
  }
  return { writes, final };
}

/** The scenario. */
export const avicIsrunningWake: ScenarioDef = {
  id: 'avic-isrunning-wake',
  title: 'AVIC: IsRunning cleared on the way to block vs. a sender whose AVIC still read it as set',
  seedFile: '003_7040354a06e62716.txt',
  variants: [
    { name: 'buggy', buggy: true, differs: 'avic_hardware_setup leaves enable_ipiv on for a family-17h host (no erratum #1235 quirk), so the table says IsRunning to a sender that reads it without a barrier after its IRR store' },
    { name: 'fixed', buggy: false, differs: '' },
  ],
  invariants: [
    { name: 'avicNoSleepWithPendingIrr', description: 'a vCPU asleep in kvm_vcpu_block never has a deliverable IRR bit in its backing page without a wake-up in flight' },
    { name: 'avicIsRunningImpliesLoaded', description: "IsRunning (table or KVM copy) implies the vCPU is loaded on the entry's host APIC ID and is not blocking" },
  ],
  widen: { probability: 0.3, maxSpins: 200, points: ['guest:'] },
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
    const { R, P } = shared(ctx);
    return [...avicNoSleepWithPendingIrr(sleepRecord(R, P.irr)), ...avicIsRunningImpliesLoaded(isRunningRecord(ctx))];
  },
  reset(ctx) {
    setUp(ctx.acc, ctx.params);
  },
};
