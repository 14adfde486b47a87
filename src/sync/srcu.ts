/**
 * Sleepable RCU (tree SRCU, Linux 6.16) at the level of domain notes §5.2.
 *
 * State: a header line (current counter index, grace-period sequence, grace-period state, GP
 * mutex) and, per actor, counters locks[2] / unlocks[2] written only by their owner. Readers
 * never write shared state; the updater sums everyone's counters.
 *
 * ```
 *  header (hdr + SRCU_HDR.x)          per actor (s.counter(actor, SRCU_CTR.x))
 *  0 CTR_IDX   0 or 1 (srcu_ctrp)     0 LOCKS0    1 LOCKS1
 *  1 GP_SEQ    completed GPs          2 UNLOCKS0  3 UNLOCKS1
 *  2 GP_MUTEX  mutex state  ┐ srcu_gp_mutex     (unsigned 32-bit, wrap-safe sums)
 *  3           mutex owner  ┘
 *  4 GP_STATE  SRCU_GP.IDLE / SCAN1 / SCAN2
 * ```
 *
 * Fences (letters as in srcutree.c's comments and §5.2):
 *  B read_lock: locks[idx]++ → smp_mb        C read_unlock: smp_mb → unlocks[idx]++
 *  A idle(idx): Σunlocks → smp_mb → Σlocks    E/D flip: smp_mb → ctrIdx ^= 1 → smp_mb
 * Grace period: SCAN1 waits until idle(1 − ctrIdx) (stragglers that sampled the old index
 * late), flips, SCAN2 waits until idle(the index current when the GP began), then GP_SEQ++.
 */
import { SRCU_CTR, SRCU_HDR, VM, type ActorId, type Addr, type Layout } from '../mem/layout.js';
import type { Access } from '../mem/access.js';
import { EmuError } from '../errors.js';
import { mutexLock, mutexUnlock } from './mutex.js';
import { pollUntil } from './wait.js';
import { actorLabel, wordAt } from './owner.js';

/**
 * Grace-period states.
 * @kvm include/linux/srcutree.h SRCU_STATE_IDLE, SRCU_STATE_SCAN1, SRCU_STATE_SCAN2
 */
export const SRCU_GP = { IDLE: 0, SCAN1: 1, SCAN2: 2 } as const;

/**
 * Where one srcu_struct lives in machine memory.
 * @kvm include/linux/srcutree.h struct srcu_struct (srcu_usage + per-CPU srcu_data)
 */
export interface SrcuStruct {
  /** Header line ({@link SRCU_HDR}). */
  readonly hdr: Addr;
  /** Actor `actor`'s counter `field` ({@link SRCU_CTR}). */
  counter(actor: ActorId, field: number): Addr;
  /** Number of actors with counters (all are summed). */
  readonly actors: number;
  /** Name in reports, e.g. `kvm->srcu`. */
  readonly name?: string;
}

/**
 * The descriptor of kvm->srcu: header at {@link VM.KVM_SRCU}, counters in the srcu region.
 * @kvm include/linux/kvm_host.h struct kvm.srcu
 */
export function kvmSrcu(layout: Layout): SrcuStruct {
  return {
    hdr: layout.vm(VM.KVM_SRCU),
    counter: (actor, field) => layout.srcu(actor, field),
    actors: layout.actors,
    name: 'kvm->srcu',
  };
}

const GP_MUTEX_WHAT = 'srcu_gp_mutex';
const nameOf = (s: SrcuStruct): string => s.name ?? 'srcu';

/** Owner-only increment of a per-actor counter: a plain load and a plain (buffered) store. */
function bumpOwn(acc: Access, addr: Addr, label: string): void {
  acc.writeOnce(addr, (acc.readOnce(addr, label) + 1) | 0, label);
}

/**
 * Enter a read-side critical section; returns the index to pass to {@link srcuReadUnlock}.
 * @kvm kernel/rcu/srcutree.c __srcu_read_lock
 */
export function srcuReadLock(acc: Access, s: SrcuStruct): number {
  const idx = acc.readOnce(wordAt(s.hdr, SRCU_HDR.CTR_IDX), 'srcu:read-lock-idx') & 1;
  bumpOwn(acc, s.counter(acc.actor, SRCU_CTR.LOCKS0 + idx), 'srcu:read-lock-inc');
  acc.smpMb('srcu:read-lock-mb-B');
  return idx;
}

/**
 * Leave a read-side critical section entered with index `idx`.
 * @kvm kernel/rcu/srcutree.c __srcu_read_unlock
 */
export function srcuReadUnlock(acc: Access, s: SrcuStruct, idx: number): void {
  acc.smpMb('srcu:read-unlock-mb-C');
  bumpOwn(acc, s.counter(acc.actor, SRCU_CTR.UNLOCKS0 + (idx & 1)), 'srcu:read-unlock-inc');
}

/**
 * Readers currently inside sections that used index `idx` (Σlocks − Σunlocks, unsigned 32-bit,
 * unlocks summed first with fence A between); 0 means idle.
 * @kvm kernel/rcu/srcutree.c srcu_readers_active_idx_check (srcu_readers_lock_idx / srcu_readers_unlock_idx)
 */
export function srcuReadersIdx(acc: Access, s: SrcuStruct, idx: number): number {
  let unlocks = 0;
  for (let a = 0; a < s.actors; a++) unlocks = (unlocks + acc.readOnce(s.counter(a, SRCU_CTR.UNLOCKS0 + idx), 'srcu:idle-unlocks')) | 0;
  acc.smpMb('srcu:idle-mb-A');
  let locks = 0;
  for (let a = 0; a < s.actors; a++) locks = (locks + acc.readOnce(s.counter(a, SRCU_CTR.LOCKS0 + idx), 'srcu:idle-locks')) | 0;
  return (locks - unlocks) | 0;
}

/**
 * Whether any reader is inside a read section of `s` (either index).
 * @kvm kernel/rcu/srcutree.c srcu_readers_active
 */
export function srcuReadersActive(acc: Access, s: SrcuStruct): boolean {
  return srcuReadersIdx(acc, s, 0) !== 0 || srcuReadersIdx(acc, s, 1) !== 0;
}

/**
 * Read sections actor `actor` has open on index `idx`, from its own counters (bookkeeping for
 * checkers and reports, not a race point: exact when each actor unlocks what it locked).
 * @kvm include/linux/srcu.h srcu_read_lock_held
 */
export function srcuHeldBy(acc: Access, s: SrcuStruct, actor: ActorId, idx: number): number {
  return (acc.peek(s.counter(actor, SRCU_CTR.LOCKS0 + idx)) - acc.peek(s.counter(actor, SRCU_CTR.UNLOCKS0 + idx))) | 0;
}

/**
 * Completed grace periods of `s`.
 * @kvm kernel/rcu/srcutree.c srcu_batches_completed (rcu_seq_current(&srcu_gp_seq))
 */
export function srcuGpSeq(acc: Access, s: SrcuStruct): number {
  return acc.readOnce(wordAt(s.hdr, SRCU_HDR.GP_SEQ), 'srcu:gp-seq');
}

function readersOf(acc: Access, s: SrcuStruct, idx: number): string[] {
  const names: string[] = [];
  for (let a = 0; a < s.actors; a++) if (srcuHeldBy(acc, s, a, idx) !== 0) names.push(actorLabel(acc.layout, a));
  return names;
}

function holdersOf(acc: Access, s: SrcuStruct, idx: number): string {
  const names: string[] = [];
  for (let a = 0; a < s.actors; a++) {
    const n = srcuHeldBy(acc, s, a, idx);
    if (n !== 0) names.push(n === 1 ? actorLabel(acc.layout, a) : `${actorLabel(acc.layout, a)} (${n})`);
  }
  return names.length > 0 ? names.join(', ') : 'none visible';
}

function selfDeadlockError(acc: Access, s: SrcuStruct, idx: number): EmuError {
  const what = `synchronize_srcu(${nameOf(s)}) waiting for readers of idx ${idx}`;
  return new EmuError(
    'EMU_ERR_DEADLINE',
    `${acc.name}: ${what} would wait forever: ${acc.name} itself holds an SRCU read lock on idx ${idx} of ${nameOf(s)} ` +
      `(lockdep: Illegal synchronize_srcu() in same-type SRCU read-side critical section)`,
    { actor: acc.name, detail: { what, idx, selfDeadlock: true, waitsFor: [acc.name] } },
  );
}

/** Wait until no reader uses `idx`; EMU_ERR_DEADLINE names the readers still inside. */
function waitIdle(acc: Access, s: SrcuStruct, idx: number, phase: string, deadlineMs: number): void {
  pollUntil(
    acc,
    wordAt(s.hdr, SRCU_HDR.GP_SEQ),
    `srcu:gp-${phase}`,
    () => srcuReadersIdx(acc, s, idx) === 0,
    () => `synchronize_srcu(${nameOf(s)}) waiting for readers of idx ${idx} (${phase}); readers inside: ${holdersOf(acc, s, idx)}`,
    deadlineMs,
    () => readersOf(acc, s, idx),
  );
}

/**
 * Wait for a full grace period: every read section that began before this call has ended when
 * it returns. Serialized on the GP mutex. Calling it inside a read section of the same `s`
 * throws EMU_ERR_DEADLINE at once (self-deadlock); readers that never leave make it throw
 * EMU_ERR_DEADLINE after `deadlineMs` naming them; EMU_ERR_ABORTED if the run aborts.
 * @kvm kernel/rcu/srcutree.c synchronize_srcu (srcu_gp_start, srcu_advance_state, srcu_flip)
 */
export function synchronizeSrcu(acc: Access, s: SrcuStruct, deadlineMs = acc.deadlineMs): void {
  for (const idx of [0, 1]) if (srcuHeldBy(acc, s, acc.actor, idx) !== 0) throw selfDeadlockError(acc, s, idx);
  const ctrIdx = wordAt(s.hdr, SRCU_HDR.CTR_IDX);
  const gpState = wordAt(s.hdr, SRCU_HDR.GP_STATE);
  mutexLock(acc, wordAt(s.hdr, SRCU_HDR.GP_MUTEX), GP_MUTEX_WHAT, deadlineMs);
  try {
    acc.writeOnce(gpState, SRCU_GP.SCAN1, 'srcu:gp-start');
    const idx = acc.readOnce(ctrIdx, 'srcu:gp-idx') & 1;
    waitIdle(acc, s, 1 - idx, 'SCAN1', deadlineMs);
    acc.smpMb('srcu:flip-mb-E');
    acc.writeOnce(ctrIdx, 1 - idx, 'srcu:flip');
    acc.smpMb('srcu:flip-mb-D');
    acc.writeOnce(gpState, SRCU_GP.SCAN2, 'srcu:gp-scan2');
    waitIdle(acc, s, idx, 'SCAN2', deadlineMs);
    acc.smpMb('srcu:gp-end-mb');
    acc.atomicAdd(wordAt(s.hdr, SRCU_HDR.GP_SEQ), 1, 'srcu:gp-end');
  } finally {
    acc.writeOnce(gpState, SRCU_GP.IDLE, 'srcu:gp-idle');
    mutexUnlock(acc, wordAt(s.hdr, SRCU_HDR.GP_MUTEX), GP_MUTEX_WHAT);
  }
}
