/**
 * Sleeping mutex (struct mutex) as a three-state futex (Drepper, "Futexes are tricky", mutex3),
 * plus an owner word for reports.
 *
 * ```
 *  addr + 0  STATE  0 = unlocked | 1 = locked, no waiters | 2 = locked, maybe waiters
 *  addr + 1  OWNER  owner actor id + 1 (0 = none); written by the owner, read by reports
 * ```
 *
 * lock:   cmpxchg(STATE, 0 → 1); on failure spin a little (TTAS); then c = xchg(STATE, 2) and,
 *         while c != 0, sleep while STATE == 2 and retry xchg(STATE, 2). A thread that slept
 *         always leaves STATE = 2, so the next unlock wakes whoever else may sleep.
 * unlock: clear OWNER; if xchg(STATE, 0) returned 2, notify one sleeper.
 * The wake-up cannot be lost: a sleeper only sleeps while STATE == 2 (the futex compares
 * atomically), and every unlock that moves STATE away from 2 notifies.
 */
import type { Addr } from '../mem/layout.js';
import type { Access } from '../mem/access.js';
import { spinLimit, waitWhileEqual } from './wait.js';
import { notOwnerError, ownerLabel, ownerTag, recursiveLockError, wordAt } from './owner.js';

/**
 * Word offsets of a mutex.
 * @kvm include/linux/mutex_types.h struct mutex (owner, wait_lock/wait_list folded into STATE)
 */
export const MUTEX = { STATE: 0, OWNER: 1 } as const;
/**
 * Values of {@link MUTEX.STATE}.
 * @kvm kernel/locking/mutex.c MUTEX_FLAG_WAITERS (CONTENDED plays its role)
 */
export const MutexState = { UNLOCKED: 0, LOCKED: 1, CONTENDED: 2 } as const;

const DEFAULT_WHAT = 'mutex';

function label(what: string): string {
  return `lock:${what}`;
}

function setOwner(acc: Access, addr: Addr, lbl: string): void {
  acc.writeOnce(wordAt(addr, MUTEX.OWNER), ownerTag(acc.actor), lbl);
}

/**
 * Try once to take the mutex; true if taken. `what` names it in reports and race-point labels
 * (`lock:<what>`).
 * @kvm kernel/locking/mutex.c mutex_trylock
 */
export function mutexTryLock(acc: Access, addr: Addr, what = DEFAULT_WHAT): boolean {
  const lbl = label(what);
  if (acc.cmpxchg(addr, MutexState.UNLOCKED, MutexState.LOCKED, lbl) !== MutexState.UNLOCKED) return false;
  setOwner(acc, addr, lbl);
  return true;
}

/**
 * Take the mutex, sleeping while it is held. Throws EMU_ERR_DEADLINE naming the holder if one
 * wait lasts longer than `deadlineMs`, at once if the caller already holds it, and
 * EMU_ERR_ABORTED when the run aborts.
 * @kvm kernel/locking/mutex.c mutex_lock (__mutex_lock_slowpath, mutex_optimistic_spin)
 */
export function mutexLock(acc: Access, addr: Addr, what = DEFAULT_WHAT, deadlineMs = acc.deadlineMs): void {
  const lbl = label(what);
  if (acc.cmpxchg(addr, MutexState.UNLOCKED, MutexState.LOCKED, lbl) === MutexState.UNLOCKED) {
    setOwner(acc, addr, lbl);
    return;
  }
  const me = ownerTag(acc.actor);
  const ownerAddr = wordAt(addr, MUTEX.OWNER);
  if (acc.readOnce(ownerAddr, lbl) === me) throw recursiveLockError(acc.name, what);
  for (let i = 0, n = spinLimit(acc); i < n; i++) {
    if (acc.readOnce(addr, lbl) === MutexState.UNLOCKED && acc.cmpxchg(addr, MutexState.UNLOCKED, MutexState.LOCKED, lbl) === MutexState.UNLOCKED) {
      setOwner(acc, addr, lbl);
      return;
    }
    acc.cpuRelax(lbl);
  }
  let c = acc.xchg(addr, MutexState.CONTENDED, lbl);
  while (c !== MutexState.UNLOCKED) {
    waitWhileEqual(acc, addr, MutexState.CONTENDED, lbl, `${what} held by ${ownerLabel(acc.layout, acc.peek(ownerAddr))}`, deadlineMs, () => {
      const o = acc.peek(ownerAddr);
      return o === 0 ? [] : [ownerLabel(acc.layout, o)];
    });
    c = acc.xchg(addr, MutexState.CONTENDED, lbl);
  }
  setOwner(acc, addr, lbl);
}

/**
 * Release the mutex and wake one sleeper if the state said there may be one. Throws
 * EMU_ERR_INTERNAL (and leaves the mutex alone) if the caller is not the owner.
 * @kvm kernel/locking/mutex.c mutex_unlock (__mutex_unlock_slowpath)
 */
export function mutexUnlock(acc: Access, addr: Addr, what = DEFAULT_WHAT): void {
  const lbl = label(what);
  const ownerAddr = wordAt(addr, MUTEX.OWNER);
  const owner = acc.readOnce(ownerAddr, lbl);
  if (owner !== ownerTag(acc.actor)) throw notOwnerError(acc.name, what, ownerLabel(acc.layout, owner));
  acc.writeOnce(ownerAddr, 0, lbl);
  if (acc.xchg(addr, MutexState.UNLOCKED, lbl) === MutexState.CONTENDED) acc.notify(addr, 1, lbl);
}

/**
 * The owner's actor id, -1 when unlocked or not yet recorded (bookkeeping, not a race point).
 * @kvm kernel/locking/mutex.c __mutex_owner
 */
export function mutexOwner(acc: Access, addr: Addr): number {
  return acc.peek(wordAt(addr, MUTEX.OWNER)) - 1;
}

/**
 * Whether the mutex is held (a racy snapshot).
 * @kvm include/linux/mutex.h mutex_is_locked
 */
export function mutexIsLocked(acc: Access, addr: Addr, what = DEFAULT_WHAT): boolean {
  return acc.readOnce(addr, label(what)) !== MutexState.UNLOCKED;
}
