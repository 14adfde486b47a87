/**
 * The round shared by the two "IPI vs. a halting target" scenarios (avic-isrunning-wake: AV-1,
 * savic-ipi-hlt: SA-2/SA-3): the guest programs of the target and of the senders, the pacing
 * that makes the IPIs meet the target's idle entries, the target's bounded sleep, and the record
 * the lost-wake-up checkers read. Everything that decides an outcome — vcpu_enter_guest, the
 * CPU's VMRUN and IPI delivery, the doorbell, AVIC_INCOMPLETE_IPI / MSR_PROT handling,
 * kvm_vcpu_block, kvm_vcpu_wake_up — is the machine's own code (kvm/, kvm/svm, hw/svm), reached
 * through the scenario actor's KvmCtx. What is here is emulator bookkeeping: guest memory the
 * guests use to pace each other, counters, and the end of a round.
 *
 *   target vCPU (pCPU 0)                              sender vCPU s (pCPU s+1)
 *   KVM_RUN: vcpu_enter_guest(IdleTargetGuest)        KVM_RUN: vcpu_enter_guest(IpiSenderGuest)
 *     work; cli; "idle task on" (guest memory)          wait for an idle announcement, pause
 *     [Secure AVIC: timer MSR_PROT VMGEXIT]             WRMSR ICR (the CPU / the #VC handler
 *     "about to halt"; sti; hlt → HLT exit                and KVM do the rest)
 *   kvm_vcpu_block (machine) … schedule()              csd_lock_wait: until the target took it
 *     sleeps until woken or the round is over            or sleeps with nobody left to wake it
 */
import { PCPU, VCPU, type Addr, type PcpuId, type VcpuId } from '../mem/layout.js';
import type { Access } from '../mem/access.js';
import { pollUntil } from '../sync/wait.js';
import { TASK_INTERRUPTIBLE } from '../kvm/kick.js';
import { kvmVcpuBlockBegin, kvmVcpuBlockEnd, kvmVcpuBlockIter } from '../kvm/block.js';
import type { GuestAction, GuestProgram, KvmCtx } from '../kvm/x86-ops.js';
import type { SleepRound } from '../invariants/avic.js';
import type { ScenarioCtx } from './define.js';

/** x2APIC ICR MSR. */
const MSR_X2APIC_ICR = 0x830;
/** IA32_TSC_DEADLINE: the idle path stops the tick by writing 0 (for Secure AVIC an MSR_PROT VMGEXIT). */
const MSR_TSC_DEADLINE = 0x6e0;

/**
 * The target guest's processor priority: TPR 0, and every taken vector is EOIed at once, so PPR
 * stays 0 (Secure AVIC's idle-HLT needs a TPR that masks nothing).
 */
export const GUEST_PPR = 0;

/** Guest-memory announcement words: the idle task starts (IRQs off), and it is about to HLT. */
export const IDLE_EARLY = 0;
/** See {@link IDLE_EARLY}. */
export const IDLE_LATE = 1;

/**
 * Polls an actor spins on a pacing condition before it sleeps (each a cpu_relax plus
 * {@link PACE_POLL_SPINS} local iterations: some 100 µs in all, instrumented or not).
 */
const PACE_SPINS = 4000;
/** Local loop iterations between two polls of a pacing condition. */
const PACE_POLL_SPINS = 50;
/** Most local loop iterations of the adaptive pause. */
const ADAPT_MAX = 20_000;
/** Controlled mode: most scheduling steps (cpu_relax) a sender pauses after an idle announcement. */
const CONTROLLED_PAUSE_STEPS = 64;

/**
 * The IPI vector sender s uses: 0xfb (Linux's CALL_FUNCTION_SINGLE_VECTOR, the IPI of
 * smp_call_function_single), then one IRR word lower per further sender (0xdb, 0xbb).
 * @emulator
 */
export function ipiVector(s: number): number {
  return 0xfb - 0x20 * s;
}

/** Scratch areas of {@link IpiRound}, to spread into a scenario's planScratch. @emulator */
export function ipiRoundAreas(maxSenders: number) {
  return { ready: 1, done: 1, progress: 1, inSchedule: 1, idle: 2, halts: 1, phase: maxSenders * 16, sent: maxSenders, delivered: maxSenders, takenAtHalt: maxSenders };
}

/** The round's pacing and accounting words (emulator bookkeeping, and the guests' shared memory). */
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
  /** Guest memory: the number of the idle entry at that step (IDLE_EARLY, IDLE_LATE). */
  idle(which: number): Addr;
  /** 1 while sender s is between its ICR write and the end of KVM's notification. */
  phase(s: number): Addr;
  /** IPIs sender s sent, and how many of them the target's guest took. */
  sent(s: number): Addr;
  delivered(s: number): Addr;
  /** HLT exits of the target so far (bookkeeping for the senders' pacing). */
  readonly halts: Addr;
  /** The target's HLT-exit count when it last took sender s's IPI. */
  takenAtHalt(s: number): Addr;
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
    halts: L.scratch(at.halts),
    takenAtHalt: (s) => L.scratch(at.takenAtHalt + s),
  };
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

/**
 * The target tells sleeping senders that their pacing condition may have changed.
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
 * Start of a round on the target: wait until every sender is on its CPU and spinning.
 * @emulator
 */
export function targetAwaitSenders(R: IpiRound): void {
  paceUntil(R.acc, R.ready, () => R.acc.readOnce(R.ready, 'pace:ready-read') >= R.senders, 'the senders to be ready');
}

/**
 * The target is asleep in schedule() with nobody left to wake it: TASK_INTERRUPTIBLE and no
 * sender between its ICR write and the end of KVM's notification.
 */
function targetAsleepForGood(R: IpiRound): boolean {
  const { acc } = R;
  if (acc.peek(R.inSchedule) === 0 || acc.peek(acc.layout.vcpu(R.target, VCPU.TASK_STATE)) !== TASK_INTERRUPTIBLE) return false;
  for (let s = 0; s < R.senders; s++) if (acc.peek(R.phase(s)) !== 0) return false;
  return true;
}

/** Upper bounds of the target guest's seeded timing (guest steps). */
export interface TargetTiming {
  /** Guest steps of work between wake-up and the next idle entry. */
  workSteps: number;
  /** Guest steps with IRQs off between the idle entry (or its timer exit) and "about to halt". */
  idleSteps: number;
  /** Guest steps between "about to halt" and sti; hlt (a fixed count). */
  haltSteps: number;
}

/**
 * The target vCPU's guest: works with IRQs on; goes idle — local_irq_disable(), publishes
 * "idle task on" in guest memory, optionally stops its tick (WRMSR TSC_DEADLINE = 0: for a Secure
 * AVIC guest an MSR_PROT VMGEXIT, i.e. an exit to KVM and a new VMRUN), a few steps, publishes
 * "about to halt", a fixed number of steps, then safe_halt() = "sti; hlt" (HLT in STI's shadow:
 * IF is 1 again when the CPU decides whether HLT exits). Its handler accounts each vector to the
 * sender that uses it. Once every sender is done it only runs (`finished`).
 * @emulator
 */
export class IdleTargetGuest implements GuestProgram {
  private ifFlag = true;
  private pc: 'work' | 'idle' | 'halt' = 'work';
  private left: number;
  private epoch = 0;
  /** Every sender is done: the scenario stops entering the guest. */
  finished = false;

  constructor(
    private readonly ctx: ScenarioCtx,
    private readonly R: IpiRound,
    private readonly timing: TargetTiming,
    /** The idle path stops the tick (an MSR write that exits to KVM) after "idle task on". */
    private readonly stopTickExit: boolean,
  ) {
    this.left = 1 + ctx.prng.below(timing.workSteps);
  }

  interruptsEnabled(): boolean {
    return this.ifFlag;
  }

  onInterrupt(vector: number): void {
    const s = (ipiVector(0) - vector) / 0x20;
    if (Number.isInteger(s) && s >= 0 && s < this.R.senders) {
      this.R.acc.poke(this.R.takenAtHalt(s), this.R.acc.peek(this.R.halts));
      this.R.acc.bump(this.R.delivered(s));
    }
    targetProgress(this.R);
  }

  private announce(which: number): void {
    if (which === IDLE_EARLY) this.epoch++;
    this.R.acc.writeOnce(this.R.idle(which), this.epoch, which === IDLE_EARLY ? 'guest:idle-enter' : 'guest:idle-halt');
    targetProgress(this.R);
  }

  step(): GuestAction {
    this.ctx.acc.cpuRelax('guest:step');
    if (this.finished) return RUN;
    if (this.pc === 'work') {
      if (--this.left > 0) return RUN;
      if (sendersDone(this.R)) {
        this.finished = true;
        return RUN;
      }
      // Idle entry: local_irq_disable(); the idle task is on the CPU.
      this.ifFlag = false;
      this.announce(IDLE_EARLY);
      this.pc = 'idle';
      this.left = this.ctx.prng.below(this.timing.idleSteps);
      // tick_nohz_idle_stop_tick(): with IRQs off, the timer MSR write exits to KVM.
      if (this.stopTickExit) return STOP_TICK;
    }
    if (this.pc === 'idle') {
      if (this.left-- > 0) return RUN;
      this.announce(IDLE_LATE);
      this.pc = 'halt';
      this.left = this.timing.haltSteps;
    }
    if (this.left-- > 0) return RUN;
    // safe_halt(): sti; hlt.
    this.ifFlag = true;
    this.pc = 'work';
    this.left = 1 + this.ctx.prng.below(this.timing.workSteps);
    return HLT;
  }
}

const RUN: GuestAction = { kind: 'run' };
const HLT: GuestAction = { kind: 'hlt' };
const STOP_TICK: GuestAction = { kind: 'wrmsr', msr: MSR_TSC_DEADLINE, lo: 0, hi: 0 };

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

/** Adaptive pause per scenario on this worker thread (it carries over from round to round). */
const adaptivePause = new Map<string, number>();

/**
 * A sender vCPU's guest: up to `ipis` IPIs to the target (WRMSR ICR, fixed, physical
 * destination). Before each it waits until the target's guest announces a new idle entry — the
 * "about to halt" step (share `lateShare`) or "idle task on", seeded — and pauses, as a guest
 * scheduler kicks a CPU it saw go idle. The pause after "idle task on" is a seeded 0..`jitter`;
 * after "about to halt" it adapts like a fuzzer's feedback: it grows by `adaptStep` when the
 * target took the IPI without a HLT exit in between (it came early) and shrinks when the target
 * had exited first, so IPIs gather where the target leaves guest mode (bookkeeping the target's
 * loop keeps; in controlled mode the pause is a seeded number of steps instead). It never
 * decides an outcome. After each IPI it waits, like csd_lock_wait() of
 * smp_call_function_single(wait=1), until the target's guest took it — or until the target
 * sleeps with nobody left to wake it (a lost wake-up: the sender stops there).
 * @emulator
 */
export class IpiSenderGuest implements GuestProgram {
  private k = 0;
  private epoch = 0;
  private pause: number;
  private late = false;
  private inFlight = false;
  /** The target's HLT-exit count when the IPI in flight was sent. */
  private haltsAtSend = 0;
  private readonly key: string;
  /** The sender is done with its round. */
  finished = false;

  constructor(
    private readonly ctx: ScenarioCtx,
    private readonly R: IpiRound,
    private readonly pacing: SenderPacing,
  ) {
    this.key = `${ctx.roles.join(',')}/${ctx.index - 1}`;
    this.pause = adaptivePause.get(this.key) ?? pacing.jitter;
    R.acc.atomicAdd(R.ready, 1, 'pace:ready');
    R.acc.notify(R.ready, 1, 'pace:ready');
  }

  onInterrupt(): void {
    // The senders receive nothing.
  }

  private get s(): number {
    return this.ctx.index - 1;
  }

  /** The previous ICR write is through (in guest mode, or KVM handled its exit): account, adapt, wait for it to be taken. */
  private afterSend(): void {
    const { acc } = this.ctx;
    const R = this.R;
    this.inFlight = false;
    acc.bump(R.phase(this.s), -1);
    const want = this.k + 1;
    const taken = () => acc.peek(R.delivered(this.s)) >= want;
    paceUntil(acc, R.progress, () => taken() || targetAsleepForGood(R), 'the target guest to take the IPI');
    if (this.late && !acc.controlled) {
      // Early: the target took the IPI without a HLT exit in between; late: it had exited first.
      const early = taken() && acc.peek(R.takenAtHalt(this.s)) === this.haltsAtSend;
      this.pause = Math.min(ADAPT_MAX, Math.max(0, this.pause + (early ? this.pacing.adaptStep : -this.pacing.adaptStep)));
    }
    this.k++;
    if (!taken() || this.k >= this.pacing.ipis) this.finish();
  }

  private finish(): void {
    const { acc } = this.ctx;
    this.finished = true;
    adaptivePause.set(this.key, this.pause);
    acc.atomicAdd(this.R.done, 1, 'pace:sender-done');
    // Nudge a target that sleeps so it sees the round is over (no machine state changes).
    acc.notify(acc.layout.vcpu(this.R.target, VCPU.TASK_STATE), 1, 'pace:round-nudge');
  }

  step(): GuestAction {
    if (this.inFlight) this.afterSend();
    if (this.finished) return RUN;
    const { acc, prng } = this.ctx;
    const R = this.R;
    this.late = prng.next() < this.pacing.lateShare;
    const w = R.idle(this.late ? IDLE_LATE : IDLE_EARLY);
    const after = this.epoch;
    paceUntil(acc, R.progress, () => acc.readOnce(w, 'pace:idle-read') > after, 'the target guest to go idle');
    this.epoch = acc.readOnce(w, 'pace:idle-read');
    const p = this.pacing;
    if (acc.controlled) {
      // Controlled mode: time is scheduling steps, so the pause is a seeded number of them.
      for (let i = prng.below(CONTROLLED_PAUSE_STEPS + 1); i > 0; i--) acc.readOnce(R.progress, 'pace:pause');
    } else {
      localSpin(this.late ? Math.max(0, this.pause + prng.below(2 * p.lateSpread + 1) - p.lateSpread) : prng.below(p.jitter + 1));
    }
    // Bookkeeping with plain stores (bump): no fence the modelled CPU would not execute.
    acc.bump(R.phase(this.s), 1);
    acc.bump(R.sent(this.s));
    this.haltsAtSend = acc.peek(R.halts);
    this.inFlight = true;
    return { kind: 'wrmsr', msr: MSR_X2APIC_ICR, lo: ipiVector(this.s), hi: R.target };
  }
}

/** How the target's block ended: runnable again, or asleep at the end of the round. */
export type BlockOutcome = 'runnable' | 'asleep';

/**
 * The target's HLT exit → kvm_vcpu_block (the machine's kvmVcpuBlockBegin / Iter / End, with
 * halt polling off). Its schedule() is kvm_sched_out (the vendor's vcpu_put), a sleep until a
 * waker puts TASK_RUNNING back or every sender is done, then kvm_sched_in (vcpu_load). A sleep
 * nobody ends is where the round stops: the vCPU stays asleep (blocking, rcuwait registered) for
 * the checker — it never re-checks without a wake-up.
 * @emulator
 */
export function blockTarget(k: KvmCtx, R: IpiRound, cpu: PcpuId): BlockOutcome {
  const { acc, L } = k;
  const v = R.target;
  const st = L.vcpu(v, VCPU.TASK_STATE);
  let asleep = false;
  const schedule = () => {
    k.ops.vcpuPut(k, v);
    acc.writeOnce(L.pcpu(cpu, PCPU.CURRENT_VCPU), -1, 'sched:current-vcpu');
    acc.poke(R.inSchedule, 1);
    targetProgress(R);
    paceUntil(acc, st, () => acc.readOnce(st, 'vcpu:schedule') !== TASK_INTERRUPTIBLE || sendersDone(R), `vcpu${v} to be woken or the round's senders to finish`);
    if (acc.readOnce(st, 'vcpu:schedule') === TASK_INTERRUPTIBLE) {
      asleep = true;
      return;
    }
    acc.poke(R.inSchedule, 0);
    acc.writeOnce(L.pcpu(cpu, PCPU.CURRENT_VCPU), v, 'sched:current-vcpu');
    k.ops.vcpuLoad(k, v, cpu);
  };
  acc.bump(R.halts);
  kvmVcpuBlockBegin(k, v);
  while (!kvmVcpuBlockIter(k, v, schedule)) if (asleep) return 'asleep';
  kvmVcpuBlockEnd(k, v);
  return 'runnable';
}

/** The target's record for the lost-wake-up checkers (`irr`: the backing page's IRR word i). @emulator */
export function sleepRecord(R: IpiRound, irr: (i: number) => Addr): SleepRound {
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
