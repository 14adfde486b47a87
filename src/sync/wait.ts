/**
 * Bounded waiting: every blocking wait in hvemu has a deadline and gives up when the run is
 * aborted, so a lost wake-up or a deadlock ends the run with a report instead of a hang.
 *
 * While blocked, an actor publishes what it waits on (label hash and address) in its actor
 * region, so the main thread can name stuck actors even if they never return.
 */
import { ACTOR, ActorStatus, VM, type Addr } from '../mem/layout.js';
import type { Access, RacePoint } from '../mem/access.js';
import { EmuError } from '../errors.js';

/** Longest single futex sleep; between sleeps the abort word and the deadline are checked. */
const SLICE_MS = 20;
/**
 * Spin iterations before a waiter falls back to Atomics.wait (bounded spinning).
 * @kvm kernel/locking/mutex.c mutex_optimistic_spin (bounded here by a count)
 */
export const SPIN_LIMIT = 200;

/**
 * Attempts before a waiter sleeps: {@link SPIN_LIMIT} spins on real threads; one attempt in
 * controlled mode, where more spins only add scheduling steps (the wait itself is a scheduling
 * point). Never 0: the spin loops also make the attempt.
 * @emulator
 */
export function spinLimit(acc: Access): number {
  return acc.controlled ? 1 : SPIN_LIMIT;
}

/**
 * Per-thread wait diagnostics (each worker has its own copy of this module).
 * `lateWakeups` counts slices that timed out although the word had changed: the change came
 * without a notify. For a protocol that notifies on every change (the doorbell), a non-zero
 * count is a lost wake-up that the slice timeout papered over.
 * @kvm none: emulator diagnostics (cf. kernel/hung_task.c for what a lost wake-up looks like)
 */
export const waitStats = { sleeps: 0, lateWakeups: 0, polls: 0 };

/**
 * Reset {@link waitStats} (tests).
 * @kvm none: emulator diagnostics
 */
export function resetWaitStats(): void {
  waitStats.sleeps = 0;
  waitStats.lateWakeups = 0;
  waitStats.polls = 0;
}

/**
 * Thrown when the run was aborted while an actor waited.
 * @kvm include/linux/sched/signal.h fatal_signal_pending (a killed task leaves its wait)
 */
export function abortedError(acc: Access, what: string, waitsFor?: () => string[]): EmuError {
  return new EmuError('EMU_ERR_ABORTED', `${acc.name}: run aborted while waiting for ${what}`, { actor: acc.name, detail: { what, ...(waitsFor ? { waitsFor: waitsFor() } : {}) } });
}

/**
 * True once any actor or the main thread aborted the run.
 * @kvm include/linux/sched/signal.h fatal_signal_pending
 */
export function runAborted(acc: Access): boolean {
  return acc.peek(acc.layout.vm(VM.ABORT)) !== 0;
}

/** Publish what this actor is about to wait on (for stuck reports); returns its previous status. */
function publishWait(acc: Access, label: RacePoint, addr: Addr): number {
  const L = acc.layout;
  acc.poke(L.actor(acc.actor, ACTOR.WAIT_LABEL), acc.labelId(label));
  acc.poke(L.actor(acc.actor, ACTOR.WAIT_ADDR), addr);
  const prev = acc.peek(L.actor(acc.actor, ACTOR.STATUS));
  acc.poke(L.actor(acc.actor, ACTOR.STATUS), ActorStatus.BLOCKED);
  return prev;
}

/** Undo {@link publishWait}. */
function endWait(acc: Access, prevStatus: number): void {
  acc.poke(acc.layout.actor(acc.actor, ACTOR.WAIT_LABEL), 0);
  acc.poke(acc.layout.actor(acc.actor, ACTOR.STATUS), prevStatus);
}

/**
 * Sleep until *addr != expected (re-checked by the caller), or throw:
 * EMU_ERR_DEADLINE after `deadlineMs` (default: the actor's), EMU_ERR_ABORTED if the run aborts.
 * `what` names the thing waited for in the report ("slots_lock held by vcpu2"); `waitsFor`, if
 * given, names the actors whose progress would end the wait (the report's wait-for edges, from
 * which a deadlock finding names its cycle).
 * @kvm kernel/futex/waitwake.c futex_wait (bounded like kernel/hung_task.c check_hung_task)
 */
export function waitWhileEqual(acc: Access, addr: Addr, expected: number, label: RacePoint, what: string, deadlineMs = acc.deadlineMs, waitsFor?: () => string[]): void {
  const start = acc.now();
  const prevStatus = publishWait(acc, label, addr);
  try {
    for (;;) {
      if (runAborted(acc)) throw abortedError(acc, what, waitsFor);
      const left = deadlineMs - (acc.now() - start);
      if (left <= 0) {
        throw new EmuError('EMU_ERR_DEADLINE', `${acc.name} stuck for ${deadlineMs} ms waiting for ${what} (at ${label}, word ${addr} == ${expected})`, {
          actor: acc.name,
          detail: { what, label, addr, expected, ...(waitsFor ? { waitsFor: waitsFor() } : {}) },
        });
      }
      waitStats.sleeps++;
      const r = acc.wait(addr, expected, Math.min(SLICE_MS, left), label);
      if (r !== 'timed-out') return;
      if (acc.readOnce(addr, label) !== expected) {
        waitStats.lateWakeups++;
        return;
      }
    }
  } finally {
    endWait(acc, prevStatus);
  }
}

/**
 * Spin up to {@link SPIN_LIMIT} times while *addr == expected, then sleep with
 * {@link waitWhileEqual}. Returns once the word differs (the caller re-checks its condition).
 * @kvm include/linux/wait.h wait_event (spin then sleep)
 */
export function spinThenWait(acc: Access, addr: Addr, expected: number, label: RacePoint, what: string, deadlineMs = acc.deadlineMs): void {
  for (let i = 0, n = spinLimit(acc); i < n; i++) {
    if (acc.readOnce(addr, label) !== expected) return;
    acc.cpuRelax(label);
  }
  waitWhileEqual(acc, addr, expected, label, what, deadlineMs);
}

/** Longest single sleep of {@link pollUntil} (ms). */
const POLL_MAX_SLEEP_MS = 1;
/** First sleep of {@link pollUntil} after its spin phase (ms); doubles up to the maximum. */
const POLL_MIN_SLEEP_MS = 0.05;

/**
 * Poll `done()` until it returns true, for conditions no single word expresses (sums over
 * per-actor counters): {@link SPIN_LIMIT} spins, then sleeps on `addr` with a timeout that backs
 * off from 0.05 ms to 1 ms. Throws EMU_ERR_DEADLINE after `deadlineMs` with the message built by
 * `what()` (evaluated only then, so it may name the culprits), EMU_ERR_ABORTED if the run aborts.
 * `addr` only provides something to sleep on; a change of it ends a sleep early.
 * @kvm kernel/rcu/srcutree.c srcu_advance_state → try_check_zero polling with srcu_get_delay backoff
 */
export function pollUntil(acc: Access, addr: Addr, label: RacePoint, done: () => boolean, what: () => string, deadlineMs = acc.deadlineMs, waitsFor?: () => string[]): void {
  if (done()) return;
  const start = acc.now();
  const prevStatus = publishWait(acc, label, addr);
  try {
    for (let i = 0, n = spinLimit(acc); i < n; i++) {
      acc.cpuRelax(label);
      if (done()) return;
    }
    let sleepMs = POLL_MIN_SLEEP_MS;
    for (;;) {
      if (runAborted(acc)) throw abortedError(acc, what(), waitsFor);
      const left = deadlineMs - (acc.now() - start);
      if (left <= 0) {
        const w = what();
        throw new EmuError('EMU_ERR_DEADLINE', `${acc.name} stuck for ${deadlineMs} ms waiting for ${w} (at ${label})`, {
          actor: acc.name,
          detail: { what: w, label, addr, ...(waitsFor ? { waitsFor: waitsFor() } : {}) },
        });
      }
      waitStats.polls++;
      acc.wait(addr, acc.readOnce(addr, label), Math.min(sleepMs, left), label);
      sleepMs = Math.min(sleepMs * 2, POLL_MAX_SLEEP_MS);
      if (done()) return;
    }
  } finally {
    endWait(acc, prevStatus);
  }
}
