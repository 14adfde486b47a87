/**
 * Spinlock (spinlock_t) on two words of machine memory.
 *
 * ```
 *  addr + 0  LOCK      31                                   0
 *                      +-------------------------------------+
 *                      |  owner actor id + 1  (0 = unlocked) |
 *                      +-------------------------------------+
 *  addr + 1  SLEEPERS  number of waiters registered to sleep on LOCK
 * ```
 *
 * Acquire is test-and-test-and-set: READ_ONCE until the word reads 0, then cmpxchg(0 → owner).
 * A kernel spinlock never sleeps, but here 16 actors may share 2 host cores, and a waiter that
 * spins while the holder's thread is descheduled would burn the holder's time slice. So after
 * {@link SPIN_LIMIT} spins a waiter registers in SLEEPERS and futex-waits on LOCK. Unlock is an
 * xchg to 0 and a notify only when SLEEPERS is non-zero. No lost wake-up (Dekker pair):
 *   waiter:   atomic_inc(SLEEPERS) [locked, full fence] → READ_ONCE(LOCK) → sleep while == seen
 *   unlocker: xchg(LOCK, 0)        [locked, full fence] → READ_ONCE(SLEEPERS) → notify if > 0
 * Either the waiter sees the lock free, or the unlocker sees the waiter registered; and the
 * futex wait itself re-compares LOCK atomically before sleeping.
 */
import type { Addr } from '../mem/layout.js';
import type { Access, RacePoint } from '../mem/access.js';
import { spinLimit, waitWhileEqual } from './wait.js';
import { notOwnerError, ownerLabel, ownerTag, recursiveLockError, wordAt } from './owner.js';

/**
 * Word offsets of a spinlock.
 * @kvm include/asm-generic/qspinlock_types.h struct qspinlock (locked byte; SLEEPERS stands in for the MCS queue)
 */
export const SPINLOCK = { LOCK: 0, SLEEPERS: 1 } as const;

/** Default race-point label (and report name) of a spinlock. */
const DEFAULT_LABEL = 'lock:spin';

/**
 * Try once to take the lock; true if taken.
 * @kvm include/linux/spinlock.h spin_trylock (queued_spin_trylock)
 */
export function spinTryLock(acc: Access, addr: Addr, label: RacePoint = DEFAULT_LABEL): boolean {
  if (acc.readOnce(addr, label) !== 0) return false;
  return acc.cmpxchg(addr, 0, ownerTag(acc.actor), label) === 0;
}

/**
 * Take the lock: spin (test-and-test-and-set), then sleep until it is free. Throws
 * EMU_ERR_DEADLINE naming the holder if one wait lasts longer than `deadlineMs`, at once if the
 * caller already holds the lock, and EMU_ERR_ABORTED when the run aborts.
 * @kvm kernel/locking/spinlock.c _raw_spin_lock (queued_spin_lock_slowpath)
 */
export function spinLock(acc: Access, addr: Addr, label: RacePoint = DEFAULT_LABEL, deadlineMs = acc.deadlineMs): void {
  const me = ownerTag(acc.actor);
  const found = acc.cmpxchg(addr, 0, me, label);
  if (found === 0) return;
  if (found === me) throw recursiveLockError(acc.name, `spinlock ${label}`);
  const sleepers = wordAt(addr, SPINLOCK.SLEEPERS);
  for (;;) {
    for (let i = 0, n = spinLimit(acc); i < n; i++) {
      if (acc.readOnce(addr, label) === 0 && acc.cmpxchg(addr, 0, me, label) === 0) return;
      acc.cpuRelax(label);
    }
    acc.atomicAdd(sleepers, 1, label);
    try {
      const holder = acc.readOnce(addr, label);
      if (holder === 0) continue;
      if (holder === me) throw recursiveLockError(acc.name, `spinlock ${label}`);
      waitWhileEqual(acc, addr, holder, label, `spinlock ${label} held by ${ownerLabel(acc.layout, holder)}`, deadlineMs);
    } finally {
      acc.atomicAdd(sleepers, -1, label);
    }
  }
}

/**
 * Release the lock: xchg to 0 (a full fence, so the critical section's stores are visible
 * first), then wake one sleeper if any registered. Throws EMU_ERR_INTERNAL if the caller was
 * not the holder (the lock is released anyway).
 * @kvm include/linux/spinlock.h spin_unlock (queued_spin_unlock)
 */
export function spinUnlock(acc: Access, addr: Addr, label: RacePoint = DEFAULT_LABEL): void {
  const me = ownerTag(acc.actor);
  const old = acc.xchg(addr, 0, label);
  if (acc.readOnce(wordAt(addr, SPINLOCK.SLEEPERS), label) !== 0) acc.notify(addr, 1, label);
  if (old !== me) throw notOwnerError(acc.name, `spinlock ${label}`, ownerLabel(acc.layout, old));
}

/**
 * Whether anyone holds the lock (a racy snapshot).
 * @kvm include/linux/spinlock.h spin_is_locked
 */
export function spinIsLocked(acc: Access, addr: Addr, label: RacePoint = DEFAULT_LABEL): boolean {
  return acc.readOnce(addr, label) !== 0;
}

/**
 * The holder's actor id, -1 when free (bookkeeping for reports, not a race point).
 * @kvm kernel/locking/spinlock_debug.c spin_dump (lock->owner_cpu)
 */
export function spinOwner(acc: Access, addr: Addr): number {
  return acc.peek(addr) - 1;
}
