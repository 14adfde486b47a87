/**
 * Owner bookkeeping shared by the lock primitives: how an owner is encoded in a lock word
 * (actor id + 1, so 0 means "nobody") and how an owner is named in a stuck report.
 */
import type { ActorId, Addr, Layout } from '../mem/layout.js';
import { EmuError } from '../errors.js';

/**
 * Word `i` of a multi-word primitive that starts at `addr` (lock word, then its companions).
 * @kvm none: address arithmetic inside one kernel struct (e.g. &lock->owner next to &lock->count)
 */
export function wordAt(addr: Addr, i: number): Addr {
  return (addr + i) as Addr;
}

/**
 * The owner encoding stored in lock words: actor id + 1 (0 = unowned).
 * @kvm kernel/locking/mutex.c __mutex_owner (owner task pointer stored in the lock)
 */
export function ownerTag(actor: ActorId): number {
  return actor + 1;
}

/**
 * Name of an actor as reports use it: `vcpuN`, `pcpuN`, an extra actor's name (a scenario role,
 * `extraN` when unnamed) or `main`.
 * @kvm kernel/locking/lockdep.c print_lock_name (names the task in a lock report)
 */
export function actorLabel(layout: Layout, actor: ActorId): string {
  const { vcpus, pcpus } = layout.config;
  if (actor === layout.mainActor) return 'main';
  if (!Number.isInteger(actor) || actor < 0 || actor >= layout.actors) return `actor${actor}`;
  if (actor < vcpus) return `vcpu${actor}`;
  if (actor < vcpus + pcpus) return `pcpu${actor - vcpus}`;
  const k = actor - vcpus - pcpus;
  return layout.config.extraActorNames[k] ?? `extra${k}`;
}

/**
 * Name of the owner encoded in a lock word ({@link ownerTag}); "nobody" for 0.
 * @kvm kernel/locking/lockdep.c print_lock (the holder line of a hung-lock report)
 */
export function ownerLabel(layout: Layout, tag: number): string {
  return tag === 0 ? 'nobody' : actorLabel(layout, tag - 1);
}

/**
 * The error for an actor re-acquiring a lock it already holds: reported at once (lockdep's
 * "possible recursive locking detected") instead of spinning until the deadline.
 * @kvm kernel/locking/lockdep.c print_deadlock_bug
 */
export function recursiveLockError(actorName: string, what: string): EmuError {
  return new EmuError('EMU_ERR_DEADLINE', `${actorName}: recursive locking of ${what}, which ${actorName} already holds: it would wait for itself forever (lockdep: possible recursive locking detected)`, {
    actor: actorName,
    detail: { what, selfDeadlock: true },
  });
}

/**
 * The error for releasing a lock the caller does not hold.
 * @kvm kernel/locking/mutex.c __mutex_unlock_slowpath (DEBUG_LOCKS_WARN_ON(__owner_task(owner) != current))
 */
export function notOwnerError(actorName: string, what: string, holder: string): EmuError {
  return new EmuError('EMU_ERR_INTERNAL', `${actorName}: unlock of ${what}, which is held by ${holder}, not by ${actorName}`, {
    actor: actorName,
    detail: { what, holder },
  });
}
