/**
 * The controlled runtime's half of the access layer: the same actor code on the same worker
 * threads, but exactly one labelled access at a time, in an order a scheduler chooses, with
 * x86-TSO store buffers.
 *
 * How it runs. Every actor of a controlled run holds a {@link ControlledAccess}. A shared control
 * block (its own SharedArrayBuffer, {@link createControlBlock}) holds the baton, each actor's
 * state, each actor's store buffer and the scheduler's state. The actor that holds the baton runs;
 * at its next labelled access it asks the strategy ({@link ./schedule}) who goes next — itself,
 * another actor (hand-off: the other's GO word is set and, if it sleeps, notified; then this
 * actor spins briefly and sleeps on its own GO word), or the drain of the oldest entry of some
 * actor's store buffer (done in place by whoever holds the baton). Code between two labelled
 * accesses runs while the actor holds the baton, so it is serialised too: a run is a function of
 * the scenario, its parameters and the strategy's seed, whatever the host's load.
 *
 * x86-TSO (Owens, Sarkar, Sewell, "A better x86 memory model: x86-TSO", 2009; SDM vol. 3A
 * 9.2.2): a plain store (WRITE_ONCE) enters the actor's FIFO store buffer; draining its oldest
 * entry to memory is a separate schedulable step; a load (READ_ONCE) takes the newest buffered
 * store to the same word if there is one, else memory; a locked read-modify-write, smp_mb() and
 * the futex calls first drain the actor's whole buffer. A full buffer drains its oldest entry
 * before taking a new store.
 *
 * Time. Waits have no wall clock here: a waiter is blocked until its word differs (then it may
 * run: waiters re-check, as futex waiters must) or, when no actor can run and no buffer can
 * drain, until the logical clock advances to the earliest timeout. Deadlines (sync/wait) are
 * measured on that clock, so a deadlock is reported after the same logical time in every run.
 */
import { Access, type AccessOptions, type MachineMemory, type RacePoint, type WaitResult } from './access.js';
import type { Addr } from './layout.js';
import { EmuError } from '../errors.js';
import { fnv1a } from '../util/prng.js';
import { markSpinning, CB, Entity, STRATEGY_IDS, actorWord, chooseNext, unpackDecision, xorshift, type Decision, type StrategyName } from './schedule.js';

export { CB, STRATEGY_IDS, nextDfsPrefix, type Decision, type StrategyName } from './schedule.js';

/** Actor states in the control block. */
export const ActorState = { UNSTARTED: 0, RUNNABLE: 1, BLOCKED: 2, DONE: 3 } as const;
/** Run states of the control block. */
export const CtlStatus = { RUNNING: 0, FINISHED: 1, ABORTED: 2, STEP_LIMIT: 3 } as const;

/** Kinds of step, hashed into the trace digest and kept in the step log. */
export const StepKind = { READ: 1, WRITE: 2, RMW: 3, FENCE: 4, WAIT: 5, NOTIFY: 6, DRAIN: 7, ENTER: 8, LEAVE: 9 } as const;

/** Parameters of one controlled execution. */
export interface ControlConfig {
  /** Actors that take part (each calls enterControl once). */
  actors: number;
  strategy: StrategyName;
  /** Seed of the strategy's random choices. */
  seed: number;
  /** PCT depth d (number of priority change points + 1). */
  depth?: number;
  /** PCT's estimate of the number of steps k (change points are drawn from 1..k). */
  stepsEstimate?: number;
  /** Decisions beyond this end the execution (status STEP_LIMIT): a livelock guard. */
  maxSteps?: number;
  /** Choices to follow first (indices into the enabled list), for replay and DFS. */
  prefix?: readonly number[];
  /** Store-buffer entries per actor (x86 cores have 40-60; small tests need few). */
  storeBufferEntries?: number;
  /** Decisions recorded in the log (choice, enabled count, preemption) for DFS and diagrams. */
  logEntries?: number;
}

/** Default livelock guard: decisions per execution. */
export const DEFAULT_MAX_STEPS = 5_000_000;

/** Build a control block for one execution. */
export function createControlBlock(cfg: ControlConfig): SharedArrayBuffer {
  const n = cfg.actors;
  if (!Number.isInteger(n) || n < 1 || n > 64) throw new EmuError('EMU_ERR_BAD_PARAM', `invalid actors: ${n} (controlled mode runs 1..64 actors)`, { detail: { param: 'actors' } });
  const sbCap = cfg.storeBufferEntries ?? 16;
  const logCap = cfg.logEntries ?? 1 << 16;
  const prefix = cfg.prefix ?? [];
  const words = CB.size(n, sbCap, logCap, prefix.length);
  const sab = new SharedArrayBuffer(words * 4);
  const c = new Int32Array(sab);
  c[CB.N] = n;
  c[CB.SB_CAP] = sbCap;
  c[CB.LOG_CAP] = logCap;
  c[CB.PREFIX_LEN] = prefix.length;
  for (let i = 0; i < prefix.length; i++) c[CB.prefixAt(n, sbCap, logCap) + i] = prefix[i]!;
  c[CB.STEPREC_AT] = CB.prefixAt(n, sbCap, logCap) + prefix.length;
  c[CB.STRATEGY] = STRATEGY_IDS[cfg.strategy];
  c[CB.RNG] = (cfg.seed >>> 0) ^ 0x9e3779b9 || 1;
  // random: drain probability 2^-1 .. 2^-7 (of 65536), fixed per execution by its seed.
  c[CB.DRAIN_Q] = 65536 >>> (1 + (fnv1a(String(cfg.seed)) % 7));
  c[CB.DEPTH] = cfg.depth ?? 2;
  c[CB.PCT_K] = Math.max(1, Math.min(cfg.stepsEstimate ?? 10_000, 0x7fffffff));
  c[CB.MAX_STEPS] = Math.min(cfg.maxSteps ?? DEFAULT_MAX_STEPS, 0x7fffffff);
  c[CB.BATON] = -1;
  c[CB.LAST] = -1;
  c[CB.DIGEST] = 0x811c9dc5 | 0;
  initStrategy(c);
  return sab;
}

/** PCT: distinct random initial priorities above every change-point priority; d-1 change points. */
function initStrategy(c: Int32Array): void {
  const n = c[CB.N]!;
  const d = c[CB.DEPTH]!;
  const rnd = () => xorshift(c);
  // Entities 0..n-1 are actors, n..2n-1 their store-buffer drains: a random permutation of
  // priorities d+1..d+2n, so every change-point priority (1..d-1) is below them all.
  const perm = Array.from({ length: 2 * n }, (_, i) => i);
  for (let i = perm.length - 1; i > 0; i--) {
    const j = rnd() % (i + 1);
    [perm[i], perm[j]] = [perm[j]!, perm[i]!];
  }
  for (let e = 0; e < 2 * n; e++) c[CB.pri(e)] = d + 1 + perm[e]!;
  // Every other execution keeps stores buffered as long as any actor makes progress (a drain
  // runs only when every enabled actor spins, waiting for a store to show), so store-buffering
  // outcomes need no extra change point; the others drain at random priorities.
  c[CB.PCT_DRAINS_LAST] = rnd() & 1;
  const k = c[CB.PCT_K]!;
  for (let i = 0; i < Math.min(d - 1, CB.MAX_CHANGE_POINTS); i++) c[CB.CHANGE + i] = 1 + (rnd() % k);
  c[CB.NEXT_LOW] = 0;
}

/** What an execution did, read from its control block after the actors returned. */
export interface ControlSummary {
  status: keyof typeof CtlStatus;
  /** Scheduling decisions taken. */
  steps: number;
  /** Decisions after a step that was not a spin (PCT's k counts these; see CB.PCT_STEPS). */
  pctSteps: number;
  /** Store-buffer entries drained as steps of their own. */
  drains: number;
  /** Decisions that switched away from an actor that could have continued. */
  preemptions: number;
  /** FNV-1a hash of the step sequence (actor, kind, label, word, value): equal iff the same run. */
  traceDigest: string;
  /** Logical time at the end (ms). */
  clockMs: number;
  /** The decisions, as far as logged (see {@link Decision}). */
  log: Decision[];
  /** More decisions were taken than the log holds. */
  logTruncated: boolean;
  /** The last steps (up to CB.STEP_RING), oldest first: who, what, which label, word and value. */
  tail: StepRecord[];
}

/** One step of an execution (entity: actor index, or n + actor for a drain of its buffer). */
export interface StepRecord {
  entity: number;
  kind: number;
  /** Label id (FNV-1a of the race point); 0 for drains. */
  label: number;
  addr: number;
  value: number;
}

/** Read the outcome of an execution (main thread, after every actor returned). */
export function readControlSummary(sab: SharedArrayBuffer): ControlSummary {
  const c = new Int32Array(sab);
  const f = new Float64Array(sab);
  const status = (Object.keys(CtlStatus) as (keyof typeof CtlStatus)[]).find((k) => CtlStatus[k] === c[CB.STATUS]) ?? 'RUNNING';
  const n = c[CB.N]!;
  const base = CB.logAt(n, c[CB.SB_CAP]!);
  const len = Math.min(c[CB.LOG_LEN]!, c[CB.LOG_CAP]!);
  const log: Decision[] = [];
  for (let i = 0; i < len; i++) log.push(unpackDecision(c[base + i]!));
  return {
    status,
    steps: c[CB.STEP]!,
    pctSteps: c[CB.PCT_STEPS]!,
    drains: c[CB.DRAINS]!,
    preemptions: c[CB.PREEMPTIONS]!,
    traceDigest: (c[CB.DIGEST]! >>> 0).toString(16).padStart(8, '0'),
    clockMs: f[CB.CLOCK >> 1]!,
    log,
    logTruncated: c[CB.LOG_LEN]! > c[CB.LOG_CAP]!,
    tail: readStepRing(c),
  };
}

function readStepRing(c: Int32Array): StepRecord[] {
  const count = c[CB.STEPREC_COUNT]!;
  const at = c[CB.STEPREC_AT]!;
  const out: StepRecord[] = [];
  for (let i = Math.max(0, count - CB.STEP_RING); i < count; i++) {
    const w = at + 4 * (i % CB.STEP_RING);
    out.push({ entity: c[w]! & 0xff, kind: (c[w]! >>> 8) & 0xff, label: c[w + 1]!, addr: c[w + 2]!, value: c[w + 3]! });
  }
  return out;
}

/** Ask every actor of a controlled execution to stop (watchdog, crashed peer): they throw EMU_ERR_ABORTED. */
export function abortControl(sab: SharedArrayBuffer): void {
  stopAll(new Int32Array(sab), CtlStatus.ABORTED);
}

/** Set a final status and wake every actor waiting for the baton (they throw EMU_ERR_ABORTED). */
function stopAll(c: Int32Array, status: number): void {
  Atomics.store(c, CB.STATUS, status);
  const n = c[CB.N]!;
  for (let i = 0; i < n; i++) {
    Atomics.store(c, CB.go(i), 1);
    Atomics.notify(c, CB.go(i));
  }
}

/** Who holds the baton and each actor's scheduler state, for a hang report (main thread). */
export function describeControl(sab: SharedArrayBuffer, names: readonly string[]): string {
  const c = new Int32Array(sab);
  const n = c[CB.N]!;
  const stateNames = Object.fromEntries(Object.entries(ActorState).map(([k, v]) => [v, k]));
  const baton = Atomics.load(c, CB.BATON);
  const parts: string[] = [];
  for (let a = 0; a < n; a++) {
    const st = Atomics.load(c, actorWord(n, a, CB.A_STATE));
    const sb = Atomics.load(c, actorWord(n, a, CB.A_SB_COUNT));
    parts.push(`${names[a] ?? `actor${a}`}: ${stateNames[st] ?? st}${st === ActorState.BLOCKED ? ` on word ${Atomics.load(c, actorWord(n, a, CB.A_WAIT_ADDR))}` : ''}, ${sb} buffered, GO=${Atomics.load(c, CB.go(a))}${Atomics.load(c, CB.sleeping(a)) ? ' (sleeping)' : ''}`);
  }
  return `baton: ${baton >= 0 ? (names[baton] ?? baton) : 'nobody'}; ${parts.join('; ')}`;
}

/** Decisions taken so far (the main thread's watchdog reads it to tell progress from a hang). */
export function controlSteps(sab: SharedArrayBuffer): number {
  return Atomics.load(new Int32Array(sab), CB.STEP);
}

/** Spins on a GO word before sleeping on it. */
const HANDOFF_SPINS = 2000;
/** Longest single sleep on a GO word (ms) before checking for an abort. */
const HANDOFF_SLICE_MS = 50;

/**
 * An actor's access layer in controlled mode: same API as {@link Access}, one labelled access at
 * a time, x86-TSO store buffers. `index` is the actor's number among the execution's actors.
 */
export class ControlledAccess extends Access {
  override readonly controlled = true;
  private readonly c: Int32Array;
  /** The control block as float64s: the logical clock and the wait deadlines. */
  private readonly f64: Float64Array;
  private readonly me: number;
  private readonly n: number;
  private readonly sbCap: number;
  /** PCT execution: keep the spin/epoch bookkeeping its drains-last policy reads (other strategies skip it). */
  private readonly pct: boolean;
  private readonly sbBase: number;
  private inControl = false;
  /** Index of this actor's current step in the step ring (its read value is noted there). */
  private myRecord = 0;

  constructor(mem: MachineMemory, opts: AccessOptions, control: SharedArrayBuffer, index: number) {
    // Window widening means nothing here: the scheduler chooses the interleaving.
    const { widen: _widen, ...rest } = opts;
    super(mem, rest);
    this.c = new Int32Array(control);
    this.f64 = new Float64Array(control);
    this.me = index;
    this.n = this.c[CB.N]!;
    this.sbCap = this.c[CB.SB_CAP]!;
    this.pct = this.c[CB.STRATEGY] === STRATEGY_IDS.pct;
    this.sbBase = CB.sbAt(this.n, this.sbCap, index);
    if (!Number.isInteger(index) || index < 0 || index >= this.n) throw new EmuError('EMU_ERR_BAD_PARAM', `invalid control index: ${index} (0..${this.n - 1})`, { detail: { param: 'index' } });
  }

  /**
   * Join the controlled execution: accesses before this run free (set-up, start gate). Scheduling
   * starts once every actor has joined; returns when this actor is first chosen.
   */
  enterControl(): void {
    const c = this.c;
    c[actorWord(this.n, this.me, CB.A_STATE)] = ActorState.RUNNABLE;
    this.inControl = true;
    if (Atomics.add(c, CB.ENTERED, 1) === this.n - 1) {
      // The last to join takes the baton; which thread that is does not matter: the first
      // decision depends only on the control block.
      Atomics.store(c, CB.BATON, this.me);
      this.decide(StepKind.ENTER);
    } else {
      this.awaitBaton();
    }
  }

  /** Leave the execution (at the end of the actor's task, also after an error): hands the baton on. */
  leaveControl(): void {
    if (!this.inControl) return;
    this.inControl = false;
    const c = this.c;
    c[actorWord(this.n, this.me, CB.A_STATE)] = ActorState.DONE;
    if (Atomics.load(c, CB.BATON) !== this.me || c[CB.STATUS] !== CtlStatus.RUNNING) return;
    this.decide(StepKind.LEAVE);
  }

  /**
   * The scheduling point before each labelled access: choose who goes next (drains are done in
   * place), hand the baton over if it is someone else, and return once this actor is chosen.
   * `kind` is this actor's pending step (StepKind.ENTER/LEAVE hand the baton on without a step).
   */
  private decide(kind: number): void {
    const c = this.c;
    for (;;) {
      if (c[CB.STATUS] !== CtlStatus.RUNNING) this.stopped();
      const next = chooseNext(c, this.f64, this.m);
      if (next === Entity.NONE) {
        // Every actor is done and every buffer drained: the execution is over.
        Atomics.store(c, CB.STATUS, CtlStatus.FINISHED);
        return;
      }
      if (next === Entity.STEP_LIMIT) {
        stopAll(c, CtlStatus.STEP_LIMIT);
        this.stopped();
      }
      if (next === Entity.DEADLOCK) {
        stopAll(c, CtlStatus.ABORTED);
        this.inControl = false;
        throw new EmuError('EMU_ERR_DEADLINE', `${this.name}: every remaining actor waits with no timeout and no store can drain (a deadlock)`, { actor: this.name });
      }
      if (next >= this.n) {
        this.drainOldest(next - this.n);
        continue;
      }
      if (next === this.me) return;
      this.handTo(next);
      if (kind === StepKind.LEAVE) return;
      this.awaitBaton();
      return;
    }
  }

  private stopped(): never {
    this.inControl = false;
    throw new EmuError('EMU_ERR_ABORTED', `${this.name}: the controlled execution was stopped`, { actor: this.name });
  }

  private handTo(next: number): void {
    const c = this.c;
    Atomics.store(c, CB.BATON, next);
    Atomics.store(c, CB.go(next), 1);
    if (Atomics.load(c, CB.sleeping(next)) !== 0) Atomics.notify(c, CB.go(next));
  }

  /** Wait for this actor's GO word: spin briefly, then sleep in slices (an abort ends the wait). */
  private awaitBaton(): void {
    const c = this.c;
    const go = CB.go(this.me);
    for (let i = 0; i < HANDOFF_SPINS; i++) {
      if (Atomics.load(c, go) !== 0) {
        c[go] = 0;
        return this.afterBaton();
      }
    }
    Atomics.store(c, CB.sleeping(this.me), 1);
    while (Atomics.load(c, go) === 0) Atomics.wait(c, go, 0, HANDOFF_SLICE_MS);
    Atomics.store(c, CB.sleeping(this.me), 0);
    c[go] = 0;
    this.afterBaton();
  }

  private afterBaton(): void {
    if (this.c[CB.STATUS] !== CtlStatus.RUNNING) this.stopped();
  }

  /** Fold one step into the trace digest (FNV-1a over five words) and the step ring. */
  private hash(entity: number, kind: number, label: number, addr: number, value: number): void {
    const c = this.c;
    let h = c[CB.DIGEST]!;
    h = Math.imul(h ^ entity, 0x01000193);
    h = Math.imul(h ^ kind, 0x01000193);
    h = Math.imul(h ^ label, 0x01000193);
    h = Math.imul(h ^ addr, 0x01000193);
    h = Math.imul(h ^ value, 0x01000193);
    c[CB.DIGEST] = h;
    const i = c[CB.STEPREC_COUNT]!;
    const w = c[CB.STEPREC_AT]! + 4 * (i % CB.STEP_RING);
    c[w] = (entity & 0xff) | ((kind & 0xff) << 8);
    c[w + 1] = label;
    c[w + 2] = addr;
    c[w + 3] = value;
    c[CB.STEPREC_COUNT] = i + 1;
  }

  // ---- store buffers ----

  private sbCount(actor: number): number {
    return this.c[actorWord(this.n, actor, CB.A_SB_COUNT)]!;
  }

  /** Drain the oldest entry of `actor`'s store buffer to memory (a step of its own). */
  private drainOldest(actor: number): void {
    const c = this.c;
    const countW = actorWord(this.n, actor, CB.A_SB_COUNT);
    const headW = actorWord(this.n, actor, CB.A_SB_HEAD);
    const head = c[headW]!;
    const base = CB.sbAt(this.n, this.sbCap, actor);
    const addr = c[base + 2 * head]!;
    const value = c[base + 2 * head + 1]!;
    this.m[addr] = value;
    c[headW] = (head + 1) % this.sbCap;
    c[countW] = c[countW]! - 1;
    c[CB.DRAINS] = c[CB.DRAINS]! + 1;
    c[CB.MEM_EPOCH] = c[CB.MEM_EPOCH]! + 1;
    this.hash(this.n + actor, StepKind.DRAIN, 0, addr, value);
  }

  /** Drain this actor's whole buffer (locked instruction, mfence, syscall). */
  private drainAll(): void {
    while (this.sbCount(this.me) > 0) this.drainOldest(this.me);
  }

  /** The newest buffered store of this actor to `addr`, or memory. */
  private load(addr: number): number {
    const c = this.c;
    const count = this.sbCount(this.me);
    let v = this.m[addr]!;
    if (count > 0) {
      const head = c[actorWord(this.n, this.me, CB.A_SB_HEAD)]!;
      for (let i = count - 1; i >= 0; i--) {
        const slot = (head + i) % this.sbCap;
        if (c[this.sbBase + 2 * slot] === addr) {
          v = c[this.sbBase + 2 * slot + 1]!;
          break;
        }
      }
    }
    if (this.pct) this.noteLoad(addr, v);
    return v;
  }

  /**
   * The scheduler's view of a load (see CB.A_SPINNING): which memory the actor has seen, and
   * whether a spinner saw something new (another word, or another value of its word) and so
   * stopped waiting.
   */
  private noteLoad(addr: number, v: number): void {
    const c = this.c;
    const n = this.n;
    const me = this.me;
    c[actorWord(n, me, CB.A_SEEN)] = c[CB.MEM_EPOCH]!;
    if (c[actorWord(n, me, CB.A_SPINNING)] !== 0 && (addr !== c[actorWord(n, me, CB.A_SPIN_ADDR)] || v !== c[actorWord(n, me, CB.A_SPIN_VAL)])) c[actorWord(n, me, CB.A_SPINNING)] = 0;
    c[actorWord(n, me, CB.A_LAST_ADDR)] = addr;
    c[actorWord(n, me, CB.A_LAST_VAL)] = v;
  }

  private store(addr: number, v: number): void {
    const c = this.c;
    if (this.sbCount(this.me) === this.sbCap) this.drainOldest(this.me);
    const countW = actorWord(this.n, this.me, CB.A_SB_COUNT);
    const head = c[actorWord(this.n, this.me, CB.A_SB_HEAD)]!;
    const slot = (head + c[countW]!) % this.sbCap;
    c[this.sbBase + 2 * slot] = addr;
    c[this.sbBase + 2 * slot + 1] = v | 0;
    c[countW] = c[countW]! + 1;
  }

  /** Put the value a step read (or found, for a read-modify-write) into its step-ring record. */
  private noteValue(v: number): number {
    const c = this.c;
    c[c[CB.STEPREC_AT]! + 4 * (this.myRecord % CB.STEP_RING) + 3] = v;
    return v;
  }

  /** The scheduling point of one labelled access (plus recording, as in free mode). */
  private step(kind: number, label: RacePoint, addr: number, value: number, fence = false): void {
    const id = this.labelId(label);
    this.decide(kind);
    // Anything but a load is progress: the actor no longer spins (see CB.A_SPINNING), and memory
    // may change (a load's view is noted in noteLoad).
    if (this.pct && kind !== StepKind.READ) {
      this.c[actorWord(this.n, this.me, CB.A_SPINNING)] = 0;
      this.c[CB.MEM_EPOCH] = this.c[CB.MEM_EPOCH]! + 1;
    }
    // Chosen. A locked instruction, mfence or syscall first drains this actor's store buffer.
    if (fence) this.drainAll();
    this.hash(this.me, kind, id, addr, value);
    this.myRecord = this.c[CB.STEPREC_COUNT]! - 1;
    if (this.hooked) this.point(label, addr, value);
  }

  // ---- the Access API (before enterControl and after leaveControl: the free-mode operations) ----

  override readOnce(addr: Addr, label: RacePoint): number {
    if (!this.inControl) return super.readOnce(addr, label);
    this.step(StepKind.READ, label, addr, 0);
    return this.noteValue(this.load(addr));
  }

  override writeOnce(addr: Addr, v: number, label: RacePoint): void {
    if (!this.inControl) return super.writeOnce(addr, v, label);
    this.step(StepKind.WRITE, label, addr, v);
    this.store(addr, v);
  }

  override xchg(addr: Addr, v: number, label: RacePoint): number {
    if (!this.inControl) return super.xchg(addr, v, label);
    this.step(StepKind.RMW, label, addr, v, true);
    const old = this.noteValue(this.m[addr]!);
    this.m[addr] = v;
    return old;
  }

  override cmpxchg(addr: Addr, expected: number, v: number, label: RacePoint): number {
    if (!this.inControl) return super.cmpxchg(addr, expected, v, label);
    this.step(StepKind.RMW, label, addr, v, true);
    const old = this.noteValue(this.m[addr]!);
    if (old === (expected | 0)) this.m[addr] = v;
    return old;
  }

  override atomicOr(addr: Addr, mask: number, label: RacePoint): number {
    if (!this.inControl) return super.atomicOr(addr, mask, label);
    this.step(StepKind.RMW, label, addr, mask, true);
    const old = this.noteValue(this.m[addr]!);
    this.m[addr] = old | mask;
    return old;
  }

  override atomicAnd(addr: Addr, mask: number, label: RacePoint): number {
    if (!this.inControl) return super.atomicAnd(addr, mask, label);
    this.step(StepKind.RMW, label, addr, mask, true);
    const old = this.noteValue(this.m[addr]!);
    this.m[addr] = old & mask;
    return old;
  }

  override atomicAdd(addr: Addr, delta: number, label: RacePoint): number {
    if (!this.inControl) return super.atomicAdd(addr, delta, label);
    this.step(StepKind.RMW, label, addr, delta, true);
    const old = this.noteValue(this.m[addr]!);
    this.m[addr] = (old + delta) | 0;
    return old;
  }

  override smpMb(label: RacePoint): void {
    if (!this.inControl) return super.smpMb(label);
    this.step(StepKind.FENCE, label, 0, 0, true);
  }

  /** A yield hint (not a step): PCT lowers a spinning actor's priority at its next decision. */
  override cpuRelax(label: RacePoint): void {
    if (!this.inControl) return super.cpuRelax(label);
    this.c[actorWord(this.n, this.me, CB.A_YIELD)] = 1;
    if (this.pct) markSpinning(this.c, this.n, this.me);
  }

  override wait(addr: Addr, expected: number, timeoutMs: number, label: RacePoint): WaitResult {
    if (!this.inControl) return super.wait(addr, expected, timeoutMs, label);
    this.step(StepKind.WAIT, label, addr, expected, true);
    if (this.m[addr] !== (expected | 0)) return 'not-equal';
    const c = this.c;
    const n = this.n;
    c[actorWord(n, this.me, CB.A_WAIT_ADDR)] = addr;
    c[actorWord(n, this.me, CB.A_WAIT_EXPECTED)] = expected | 0;
    const deadline = Number.isFinite(timeoutMs) ? this.f64[CB.CLOCK >> 1]! + Math.max(0, timeoutMs) : -1;
    this.f64[CB.waitDeadline(n, this.me) >> 1] = deadline;
    c[actorWord(n, this.me, CB.A_WAIT_RESULT)] = 0;
    c[actorWord(n, this.me, CB.A_STATE)] = ActorState.BLOCKED;
    // Block: the strategy picks this actor again only once the word differs or its timeout is
    // the earliest when nobody else can run; it sets A_STATE back to RUNNABLE and the result.
    this.decide(StepKind.WAIT);
    this.hash(this.me, StepKind.WAIT, this.labelId(label), addr, c[actorWord(n, this.me, CB.A_WAIT_RESULT)]!);
    return c[actorWord(n, this.me, CB.A_WAIT_RESULT)] === 2 ? 'timed-out' : 'ok';
  }

  override notify(addr: Addr, count: number, label: RacePoint): number {
    if (!this.inControl) return super.notify(addr, count, label);
    this.step(StepKind.NOTIFY, label, addr, count, true);
    // Waiters wake when the word differs, so a notify only reports how many wait on it.
    let woken = 0;
    for (let a = 0; a < this.n && woken < count; a++) {
      if (this.c[actorWord(this.n, a, CB.A_STATE)] === ActorState.BLOCKED && this.c[actorWord(this.n, a, CB.A_WAIT_ADDR)] === addr) woken++;
    }
    return woken;
  }

  /**
   * Bookkeeping reads are reads of shared memory too (scenario pacing polls them), so here they
   * are scheduling points: a loop that polls only bookkeeping words still lets others run. They
   * see this actor's own buffered stores, as its loads would.
   */
  override peek(addr: Addr): number {
    if (!this.inControl) return super.peek(addr);
    this.step(StepKind.READ, 'emu:peek', addr, 0);
    return this.noteValue(this.load(addr));
  }

  /** Bookkeeping writes are Atomics.store: on x86 an XCHG (a step that drains the buffer first). */
  override poke(addr: Addr, v: number): void {
    if (!this.inControl) return super.poke(addr, v);
    this.step(StepKind.RMW, 'emu:poke', addr, v, true);
    this.m[addr] = v;
  }

  override now(): number {
    return this.inControl ? this.f64[CB.CLOCK >> 1]! : super.now();
  }

}
