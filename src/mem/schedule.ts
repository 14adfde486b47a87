/**
 * The controlled runtime's scheduler: the control block's layout and the strategies behind one
 * function, {@link chooseNext}, which whoever holds the baton calls at each scheduling point.
 * Its whole state lives in the control block, so every worker continues the same schedule.
 *
 * Entities: 0..n-1 are the actors (run the actor's next labelled access), n..2n-1 the drains of
 * their store buffers (write the oldest entry of actor e-n's buffer to memory). The enabled list
 * at a decision is ordered: the actor that ran last (if it can continue), the other actors in
 * index order, then the drains — so choice 0 never preempts, which DFS's preemption bound uses.
 *
 * Strategies:
 * - `random`: a seeded uniform choice among the enabled actors; a drain instead with a probability
 *   q drawn per execution from 1/2 .. 1/128, so stores stay buffered for short or long windows.
 * - `pct`: probabilistic concurrency testing (Burckhardt, Kothari, Musuvathi, Nagarakatte, ASPLOS
 *   2010): random distinct priorities, the highest-priority enabled entity runs, and at d-1
 *   random steps (of an estimated k, counting the steps that are not spins) the running actor
 *   drops to priority 1..d-1. A schedule that
 *   needs d ordering constraints is found with probability >= 1/(n·k^(d-1)) per execution, with
 *   n entities. Store-buffer drains are entities too; in every other execution they come last
 *   instead: a drain runs only when every enabled actor spins (its last step was a cpu_relax, it
 *   waits for a store to show), so stores stay buffered while anyone makes progress and the
 *   store-buffering outcomes need no change point of their own. Spinning (a cpu_relax hint) and
 *   running more than {@link FAIRNESS_RUN} decisions
 *   in a row drop an actor below everyone, so busy-wait loops cannot livelock the schedule.
 * - `dfs`: follows a prefix of choices, then always choice 0 (the driver enumerates prefixes).
 * - any strategy first follows the control block's prefix (replay).
 */

/** Control block word indexes (see createControlBlock in ./controlled). */
export const CB = {
  N: 0,
  SB_CAP: 1,
  LOG_CAP: 2,
  PREFIX_LEN: 3,
  STRATEGY: 4,
  RNG: 5,
  DEPTH: 6,
  PCT_K: 7,
  MAX_STEPS: 8,
  BATON: 9,
  LAST: 10,
  DIGEST: 11,
  STATUS: 12,
  ENTERED: 13,
  STEP: 14,
  DRAINS: 15,
  PREEMPTIONS: 16,
  NEXT_LOW: 17,
  LOG_LEN: 18,
  RUNLEN: 19,
  /** PCT change points (steps), up to {@link CB.MAX_CHANGE_POINTS}. */
  CHANGE: 20,
  MAX_CHANGE_POINTS: 16,
  /** `random`: probability (of 65536) of choosing a drain when an actor could run instead. */
  DRAIN_Q: 36,
  /** Steps recorded in the step ring so far (it keeps the last {@link CB.STEP_RING}). */
  STEPREC_COUNT: 37,
  /** Word index of the step ring. */
  STEPREC_AT: 38,
  /** `pct`: 1 = this execution keeps stores buffered while any actor makes progress (drains last). */
  PCT_DRAINS_LAST: 39,
  /** Bumped by every step that may change memory (a drain, a locked or other non-load step). */
  MEM_EPOCH: 42,
  /** `pct`, drains last: decisions since the last drain (a drain is forced after {@link DRAIN_AT_LEAST_EVERY}). */
  SINCE_DRAIN: 43,
  /**
   * Decisions after a step of an actor that was not spinning: PCT's change points are drawn over
   * these, so the steps of busy-wait loops (most of an execution) do not dilute them.
   */
  PCT_STEPS: 44,
  /** Steps the ring keeps (4 words each: entity | kind << 8, label id, word, value). */
  STEP_RING: 4096,
  /** The logical clock (ms), a float64 at this (even) word index (float64 index CLOCK / 2). */
  CLOCK: 40,
  /** Priorities of the 2n entities. */
  pri: (e: number): number => 48 + e,
  /** Each actor's GO word (the baton hand-off) on its own 64-byte line. */
  go: (a: number): number => 176 + 32 * a,
  /** Each actor's "sleeping on GO" flag on its own line. */
  sleeping: (a: number): number => 176 + 32 * a + 16,
  actorBase: (n: number): number => 176 + 32 * n,
  A_STATE: 0,
  A_WAIT_ADDR: 1,
  A_WAIT_EXPECTED: 2,
  /** 1 = woken (word differs), 2 = timed out. */
  A_WAIT_RESULT: 3,
  A_YIELD: 4,
  A_SB_HEAD: 5,
  A_SB_COUNT: 6,
  /**
   * 1 from a cpu_relax (or a long run of steps) until the actor stores, or loads another word or
   * another value than the one it kept reading: it spins, waiting for someone else.
   */
  A_SPINNING: 7,
  /** Float64 (ms on the logical clock, -1 = none) at this even offset. */
  A_WAIT_DEADLINE: 8,
  /** {@link CB.MEM_EPOCH} at the actor's last load: a spinner that has seen the latest memory waits for someone else. */
  A_SEEN: 10,
  /** The word and value a spinner keeps reading (a load of another word or value ends the spin). */
  A_SPIN_ADDR: 11,
  A_SPIN_VAL: 12,
  /** The actor's last load: word and value. */
  A_LAST_ADDR: 13,
  A_LAST_VAL: 14,
  ACTOR_STRIDE: 16,
  waitDeadline: (n: number, a: number): number => 176 + 32 * n + 16 * a + 8,
  sbAt: (n: number, sbCap: number, a: number): number => 176 + 32 * n + 16 * n + 2 * sbCap * a,
  logAt: (n: number, sbCap: number): number => 176 + 32 * n + 16 * n + 2 * sbCap * n,
  prefixAt: (n: number, sbCap: number, logCap: number): number => 176 + 48 * n + 2 * sbCap * n + logCap,
  /** Words of a control block, rounded up to even so the whole block has a float64 view. */
  size: (n: number, sbCap: number, logCap: number, prefixLen: number): number => (176 + 48 * n + 2 * sbCap * n + logCap + prefixLen + 4 * 4096 + 1) & ~1,
} as const;

/** A word of actor `a`'s record. */
export function actorWord(n: number, a: number, off: number): number {
  return CB.actorBase(n) + CB.ACTOR_STRIDE * a + off;
}

/** Strategy names and their ids in the control block. */
export const STRATEGY_IDS = { random: 0, pct: 1, dfs: 2 } as const;
/** A scheduling strategy. */
export type StrategyName = keyof typeof STRATEGY_IDS;

/** Special results of {@link chooseNext}. */
export const Entity = {
  /** Every actor is done and every buffer drained. */
  NONE: -1,
  /** The decision budget is spent (a livelock guard). */
  STEP_LIMIT: -2,
  /** Actors remain, all blocked with no timeout and nothing can drain. */
  DEADLOCK: -3,
} as const;

/** PCT fairness: an actor chosen this many times in a row is dropped below everyone. */
export const FAIRNESS_RUN = 256;

const RUNNABLE = 1;
const BLOCKED = 2;

/**
 * Actor `a` spins from now on, on the word and value of its last load (see CB.A_SPINNING).
 * @emulator
 */
export function markSpinning(c: Int32Array, n: number, a: number): void {
  c[actorWord(n, a, CB.A_SPINNING)] = 1;
  c[actorWord(n, a, CB.A_SPIN_ADDR)] = c[actorWord(n, a, CB.A_LAST_ADDR)]!;
  c[actorWord(n, a, CB.A_SPIN_VAL)] = c[actorWord(n, a, CB.A_LAST_VAL)]!;
}

/** `pct` with drains last: a drain is forced when none ran for this many decisions (stores become visible eventually, x86's guarantee). */
export const DRAIN_AT_LEAST_EVERY = 4 * FAIRNESS_RUN;

/** The strategies' xorshift32 generator, its state in the control block. @emulator */
export function xorshift(c: Int32Array): number {
  let x = c[CB.RNG]!;
  x ^= x << 13;
  x ^= x >>> 17;
  x ^= x << 5;
  c[CB.RNG] = x;
  return x >>> 0;
}

/** Reused per thread (one decision at a time per thread). */
const enabled: number[] = [];

/** Actor `a` can take a step: runnable, or blocked on a word that now differs. */
function canRun(c: Int32Array, n: number, a: number, mem: Int32Array): boolean {
  const st = c[actorWord(n, a, CB.A_STATE)];
  if (st === RUNNABLE) return true;
  return st === BLOCKED && mem[c[actorWord(n, a, CB.A_WAIT_ADDR)]!] !== c[actorWord(n, a, CB.A_WAIT_EXPECTED)];
}

/**
 * Choose the next entity at a scheduling point: an actor index, `n + actor` for a drain, or an
 * {@link Entity} code. Updates the control block (state of a woken waiter, the logical clock when
 * a timeout fires, step/preemption counters, the decision log, PCT priorities).
 * `f64` is a float64 view of the whole control block (logical clock, wait deadlines); `mem` the
 * machine's memory (a blocked waiter may run once its word differs). Allocates nothing.
 * @emulator
 */
export function chooseNext(c: Int32Array, f64: Float64Array, mem: Int32Array): number {
  const n = c[CB.N]!;
  const step = c[CB.STEP]!;
  if (step >= c[CB.MAX_STEPS]!) return Entity.STEP_LIMIT;
  const last = c[CB.LAST]!;
  const sbCap = c[CB.SB_CAP]!;
  enabled.length = 0;
  // An actor that yielded (cpu_relax in a spin loop) or ran FAIRNESS_RUN decisions in a row is
  // not "the one that continues": switching away from it is not a preemption (CHESS's fairness),
  // so spin loops cannot starve the others under DFS's default choice or PCT's priorities.
  const yielded = last >= 0 && (c[actorWord(n, last, CB.A_YIELD)] !== 0 || c[CB.RUNLEN]! >= FAIRNESS_RUN);
  // A long run of loads without a hint is a spin too (a raw busy-wait loop).
  if (last >= 0 && c[CB.RUNLEN]! >= FAIRNESS_RUN) markSpinning(c, n, last);
  const lastCanRun = last >= 0 && !yielded && canRun(c, n, last, mem);
  if (lastCanRun) enabled.push(last);
  for (let a = 0; a < n; a++) if (a !== last && canRun(c, n, a, mem)) enabled.push(a);
  // A yielded actor comes after the others (choice 0 lets someone else run).
  if (yielded) {
    c[CB.RUNLEN] = 0;
    if (canRun(c, n, last, mem)) enabled.push(last);
  }
  for (let a = 0; a < n; a++) if (c[actorWord(n, a, CB.A_SB_COUNT)]! > 0) enabled.push(n + a);

  let choice: number;
  let e: number;
  if (enabled.length === 0) {
    // Nobody can run: time passes, to the earliest timeout of a blocked actor.
    let best = -1;
    let bestAt = Infinity;
    for (let a = 0; a < n; a++) {
      if (c[actorWord(n, a, CB.A_STATE)] !== BLOCKED) continue;
      const at = f64[CB.waitDeadline(n, a) >> 1]!;
      if (at >= 0 && at < bestAt) {
        best = a;
        bestAt = at;
      }
    }
    if (best < 0) {
      for (let a = 0; a < n; a++) if (c[actorWord(n, a, CB.A_STATE)] === BLOCKED) return Entity.DEADLOCK;
      return Entity.NONE;
    }
    f64[CB.CLOCK >> 1] = Math.max(f64[CB.CLOCK >> 1]!, bestAt);
    c[actorWord(n, best, CB.A_STATE)] = RUNNABLE;
    c[actorWord(n, best, CB.A_WAIT_RESULT)] = 2;
    enabled.push(best);
    choice = 0;
    e = best;
  } else {
    choice = pick(c, n, step, last, yielded);
    if (last >= 0) c[actorWord(n, last, CB.A_YIELD)] = 0;
    e = enabled[choice]!;
    if (e < n && c[actorWord(n, e, CB.A_STATE)] === BLOCKED) {
      c[actorWord(n, e, CB.A_STATE)] = RUNNABLE;
      c[actorWord(n, e, CB.A_WAIT_RESULT)] = 1;
    }
  }
  const preempted = lastCanRun && e < n && e !== last;
  if (e < n) {
    c[CB.RUNLEN] = e === last ? c[CB.RUNLEN]! + 1 : 1;
    c[CB.LAST] = e;
  }
  const logLen = c[CB.LOG_LEN]!;
  if (logLen < c[CB.LOG_CAP]!) {
    let actors = 0;
    while (actors < enabled.length && enabled[actors]! < n) actors++;
    c[CB.logAt(n, sbCap) + logLen] = packDecision(choice, enabled.length, preempted, lastCanRun, actors);
  }
  c[CB.LOG_LEN] = logLen + 1;
  c[CB.STEP] = step + 1;
  if (preempted) c[CB.PREEMPTIONS] = c[CB.PREEMPTIONS]! + 1;
  return e;
}

/** The strategy's choice: an index into `enabled`. */
function pick(c: Int32Array, n: number, step: number, last: number, yielded: boolean): number {
  const prefixLen = c[CB.PREFIX_LEN]!;
  if (step < prefixLen) {
    const at = CB.prefixAt(n, c[CB.SB_CAP]!, c[CB.LOG_CAP]!) + step;
    return Math.min(c[at]!, enabled.length - 1);
  }
  const strategy = c[CB.STRATEGY]!;
  if (strategy === 0) {
    // Actors first in the list, then drains. A drain is taken with the execution's own
    // probability q, so some executions drain at once (nearly SC) and others keep stores
    // buffered for a long time (the store-buffering outcomes).
    let actors = 0;
    while (actors < enabled.length && enabled[actors]! < n) actors++;
    const drains = enabled.length - actors;
    if (actors === 0) return xorshift(c) % drains;
    if (drains > 0 && (xorshift(c) & 0xffff) < c[CB.DRAIN_Q]!) return actors + (xorshift(c) % drains);
    return xorshift(c) % actors;
  }
  if (strategy === 2) return 0;
  // PCT. Change points lower the running actor to 1..d-1; a yield hint or a long run drops an
  // actor below everything. Steps are counted without the spinning ones (CB.PCT_STEPS).
  if (last >= 0) {
    const d = c[CB.DEPTH]!;
    if (c[actorWord(n, last, CB.A_SPINNING)] === 0) {
      const k = c[CB.PCT_STEPS]! + 1;
      c[CB.PCT_STEPS] = k;
      for (let i = 0; i < Math.min(d - 1, CB.MAX_CHANGE_POINTS); i++) if (c[CB.CHANGE + i] === k) c[CB.pri(last)] = i + 1;
    }
    if (yielded) {
      c[CB.NEXT_LOW] = c[CB.NEXT_LOW]! - 1;
      c[CB.pri(last)] = c[CB.NEXT_LOW]!;
    }
  }
  if (c[CB.PCT_DRAINS_LAST] !== 0) {
    // Stores stay buffered while any actor makes progress: the highest-priority actor that is not
    // spinning runs; a drain only when every enabled actor spins and has already seen the latest
    // memory (it can only be waiting for a store to show).
    let bestActor = -1;
    let bestDrain = -1;
    let bestSpinner = -1;
    for (let i = 0; i < enabled.length; i++) {
      const e = enabled[i]!;
      const p = c[CB.pri(e)]!;
      if (e >= n) {
        if (bestDrain < 0 || p > c[CB.pri(enabled[bestDrain]!)]!) bestDrain = i;
      } else if (c[actorWord(n, e, CB.A_SPINNING)] !== 0 && c[actorWord(n, e, CB.A_SEEN)] === c[CB.MEM_EPOCH]) {
        if (bestSpinner < 0 || p > c[CB.pri(enabled[bestSpinner]!)]!) bestSpinner = i;
      } else if (bestActor < 0 || p > c[CB.pri(enabled[bestActor]!)]!) bestActor = i;
    }
    const forced = bestDrain >= 0 && c[CB.SINCE_DRAIN]! >= DRAIN_AT_LEAST_EVERY;
    const i = bestActor >= 0 && !forced ? bestActor : bestDrain >= 0 ? bestDrain : bestSpinner;
    c[CB.SINCE_DRAIN] = i === bestDrain ? 0 : c[CB.SINCE_DRAIN]! + 1;
    return i;
  }
  let best = 0;
  for (let i = 1; i < enabled.length; i++) if (c[CB.pri(enabled[i]!)]! > c[CB.pri(enabled[best]!)]!) best = i;
  return best;
}

/** One logged decision. */
export interface Decision {
  /** Index chosen in the enabled list. */
  choice: number;
  /** Entities that were enabled. */
  enabled: number;
  /** The choice switched away from an actor that could have continued. */
  preempted: boolean;
  /** The actor that ran last could continue (then choice 0 is that actor). */
  lastCanRun: boolean;
  /** Enabled actors (the first entries of the list; the rest are drains). */
  actors: number;
}

/** Pack a decision into one log word. */
export function packDecision(choice: number, enabledCount: number, preempted: boolean, lastCanRun: boolean, actors: number): number {
  return (choice & 0xff) | (Math.min(enabledCount, 255) << 8) | (preempted ? 1 << 16 : 0) | (lastCanRun ? 1 << 17 : 0) | ((actors & 0xff) << 18);
}

/** Unpack a log word. */
export function unpackDecision(w: number): Decision {
  return { choice: w & 0xff, enabled: (w >>> 8) & 0xff, preempted: (w & (1 << 16)) !== 0, lastCanRun: (w & (1 << 17)) !== 0, actors: (w >>> 18) & 0xff };
}

/**
 * Bounded DFS over schedules (stateless, as CHESS does it): after an execution with decision log
 * `log`, the prefix of the next one — the deepest decision that still has an untried alternative
 * whose preemptions stay within `bound` — or null when every schedule within the bound was run.
 * @emulator
 */
export function nextDfsPrefix(log: readonly Decision[], bound: number): number[] | null {
  const before: number[] = [];
  let p = 0;
  for (const d of log) {
    before.push(p);
    if (d.preempted) p++;
  }
  for (let j = log.length - 1; j >= 0; j--) {
    const d = log[j]!;
    for (let k = d.choice + 1; k < d.enabled; k++) {
      const preempts = d.lastCanRun && k !== 0 && k < d.actors;
      if (before[j]! + (preempts ? 1 : 0) > bound) continue;
      return [...log.slice(0, j).map((x) => x.choice), k];
    }
  }
  return null;
}
