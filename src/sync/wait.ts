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
/** Spin iterations before a waiter falls back to Atomics.wait (bounded spinning). */
export const SPIN_LIMIT = 200;

/** Thrown when the run was aborted while an actor waited. */
export function abortedError(acc: Access, what: string): EmuError {
  return new EmuError('EMU_ERR_ABORTED', `${acc.name}: run aborted while waiting for ${what}`, { actor: acc.name, detail: { what } });
}

/** True once any actor or the main thread aborted the run. */
export function runAborted(acc: Access): boolean {
  return acc.peek(acc.layout.vm(VM.ABORT)) !== 0;
}

/**
 * Sleep until *addr != expected (re-checked by the caller), or throw:
 * EMU_ERR_DEADLINE after `deadlineMs` (default: the actor's), EMU_ERR_ABORTED if the run aborts.
 * `what` names the thing waited for in the report ("slots_lock held by vcpu2").
 */
export function waitWhileEqual(acc: Access, addr: Addr, expected: number, label: RacePoint, what: string, deadlineMs = acc.deadlineMs): void {
  const L = acc.layout;
  const start = performance.now();
  acc.poke(L.actor(acc.actor, ACTOR.WAIT_LABEL), acc.labelId(label));
  acc.poke(L.actor(acc.actor, ACTOR.WAIT_ADDR), addr);
  const prevStatus = acc.peek(L.actor(acc.actor, ACTOR.STATUS));
  acc.poke(L.actor(acc.actor, ACTOR.STATUS), ActorStatus.BLOCKED);
  try {
    for (;;) {
      if (runAborted(acc)) throw abortedError(acc, what);
      const left = deadlineMs - (performance.now() - start);
      if (left <= 0) {
        throw new EmuError('EMU_ERR_DEADLINE', `${acc.name} stuck for ${deadlineMs} ms waiting for ${what} (at ${label}, word ${addr} == ${expected})`, {
          actor: acc.name,
          detail: { what, label, addr, expected },
        });
      }
      const r = acc.wait(addr, expected, Math.min(SLICE_MS, left), label);
      if (r !== 'timed-out') return;
      if (acc.readOnce(addr, label) !== expected) return;
    }
  } finally {
    acc.poke(L.actor(acc.actor, ACTOR.WAIT_LABEL), 0);
    acc.poke(L.actor(acc.actor, ACTOR.STATUS), prevStatus);
  }
}

/**
 * Spin up to {@link SPIN_LIMIT} times while *addr == expected, then sleep with
 * {@link waitWhileEqual}. Returns once the word differs (the caller re-checks its condition).
 */
export function spinThenWait(acc: Access, addr: Addr, expected: number, label: RacePoint, what: string, deadlineMs = acc.deadlineMs): void {
  for (let i = 0; i < SPIN_LIMIT; i++) {
    if (acc.readOnce(addr, label) !== expected) return;
    acc.cpuRelax(label);
  }
  waitWhileEqual(acc, addr, expected, label, what, deadlineMs);
}
