/**
 * Read-write semaphore (struct rw_semaphore), e.g. kvm->arch.apicv_update_lock.
 * Writer preference: once a writer waits, new readers wait too, so a stream of readers cannot
 * starve writers (the kernel gets the same effect from its wait queue and handoff bit).
 *
 * Uses the first three words of the 64-byte line at `addr`:
 * ```
 *  addr + 0  STATE     31    28 27              17 16  15               0
 *                      +-------+------------------+---+-----------------+
 *                      |   0   | waiting writers  | W |  active readers |
 *                      +-------+------------------+---+-----------------+
 *                      W = held for write. Every transition is one cmpxchg / atomic add.
 *  addr + 1  SLEEPERS  number of actors registered to sleep on STATE
 *  addr + 2  OWNER     writer's actor id + 1 (0 = no writer); for reports
 * ```
 * Waiters sleep on STATE with the value they saw. Releases that can unblock someone (last
 * reader leaving, writer leaving, downgrade, a waiting writer giving up) notify all sleepers.
 * No lost wake-up (Dekker pair):
 *   waiter:   atomic_inc(SLEEPERS) [full fence] → READ_ONCE(STATE) → sleep while == seen
 *   releaser: atomic RMW on STATE  [full fence] → READ_ONCE(SLEEPERS) → notify if > 0
 */
import type { Addr } from '../mem/layout.js';
import type { Access, RacePoint } from '../mem/access.js';
import { spinLimit, waitWhileEqual } from './wait.js';
import { notOwnerError, ownerLabel, ownerTag, recursiveLockError, wordAt } from './owner.js';

/**
 * Word offsets of an rw-semaphore inside its line.
 * @kvm include/linux/rwsem.h struct rw_semaphore (count, owner)
 */
export const RWSEM = { STATE: 0, SLEEPERS: 1, OWNER: 2 } as const;
/**
 * Bit fields of {@link RWSEM.STATE}.
 * @kvm kernel/locking/rwsem.c RWSEM_WRITER_LOCKED, RWSEM_FLAG_WAITERS, RWSEM_READER_SHIFT
 */
export const RWSEM_STATE = {
  READER_MASK: 0xffff,
  WRITER: 1 << 16,
  WAITING_WRITER_ONE: 1 << 17,
  WAITING_WRITER_MASK: 0x7ff << 17,
} as const;

const { READER_MASK, WRITER, WAITING_WRITER_ONE, WAITING_WRITER_MASK } = RWSEM_STATE;
const DEFAULT_WHAT = 'rwsem';
const ALL = Number.POSITIVE_INFINITY;

function label(what: string): string {
  return `lock:${what}`;
}

function describe(acc: Access, addr: Addr, s: number, what: string): string {
  const readers = s & READER_MASK;
  const writers = (s & WAITING_WRITER_MASK) >>> 17;
  if (s & WRITER) return `${what} held for write by ${ownerLabel(acc.layout, acc.peek(wordAt(addr, RWSEM.OWNER)))}`;
  const parts = [`${what} held for read by ${readers} reader(s)`];
  if (writers > 0) parts.push(`${writers} writer(s) waiting`);
  return parts.join(', ');
}

function wakeSleepers(acc: Access, addr: Addr, lbl: string): void {
  if (acc.readOnce(wordAt(addr, RWSEM.SLEEPERS), lbl) !== 0) acc.notify(addr, ALL, lbl);
}

/** Sleep while STATE still reads `seen`, registered in SLEEPERS. */
function sleepOn(acc: Access, addr: Addr, seen: number, lbl: string, what: string, deadlineMs: number, blocked: (s: number) => boolean): void {
  const sleepers = wordAt(addr, RWSEM.SLEEPERS);
  acc.atomicAdd(sleepers, 1, lbl);
  try {
    const s = acc.readOnce(addr, lbl);
    if (s !== seen || !blocked(s)) return;
    waitWhileEqual(acc, addr, s, lbl, describe(acc, addr, s, what), deadlineMs);
  } finally {
    acc.atomicAdd(sleepers, -1, lbl);
  }
}

function checkNotWriter(acc: Access, addr: Addr, s: number, lbl: string, what: string): void {
  if ((s & WRITER) !== 0 && acc.readOnce(wordAt(addr, RWSEM.OWNER), lbl) === ownerTag(acc.actor)) {
    throw recursiveLockError(acc.name, `${what} (held for write)`);
  }
}

const readerBlocked = (s: number): boolean => (s & (WRITER | WAITING_WRITER_MASK)) !== 0;
const writerBlocked = (s: number): boolean => (s & (WRITER | READER_MASK)) !== 0;

/**
 * Try once to take the semaphore for read; fails if a writer holds it or waits for it.
 * @kvm kernel/locking/rwsem.c down_read_trylock
 */
export function downReadTrylock(acc: Access, addr: Addr, what = DEFAULT_WHAT): boolean {
  const lbl = label(what);
  for (;;) {
    const s = acc.readOnce(addr, lbl);
    if (readerBlocked(s)) return false;
    if (acc.cmpxchg(addr, s, s + 1, lbl) === s) return true;
  }
}

/**
 * Take the semaphore for read, waiting while a writer holds it or waits for it. Throws
 * EMU_ERR_DEADLINE (naming the writer) if one wait outlasts `deadlineMs`, at once if the caller
 * holds it for write, and EMU_ERR_ABORTED when the run aborts.
 * @kvm kernel/locking/rwsem.c down_read (rwsem_down_read_slowpath)
 */
export function downRead(acc: Access, addr: Addr, what = DEFAULT_WHAT, deadlineMs = acc.deadlineMs): void {
  const lbl = label(what);
  for (;;) {
    let s = 0;
    for (let i = 0, n = spinLimit(acc); i < n; i++) {
      s = acc.readOnce(addr, lbl);
      if (!readerBlocked(s)) {
        if (acc.cmpxchg(addr, s, s + 1, lbl) === s) return;
        continue;
      }
      checkNotWriter(acc, addr, s, lbl, what);
      acc.cpuRelax(lbl);
    }
    if (readerBlocked(s)) sleepOn(acc, addr, s, lbl, what, deadlineMs, readerBlocked);
  }
}

/**
 * Release a read hold; the last reader out wakes sleepers (a writer may be waiting).
 * @kvm kernel/locking/rwsem.c up_read
 */
export function upRead(acc: Access, addr: Addr, what = DEFAULT_WHAT): void {
  const lbl = label(what);
  const old = acc.atomicAdd(addr, -1, lbl);
  if ((old & READER_MASK) === 0) {
    acc.atomicAdd(addr, 1, lbl);
    throw notOwnerError(acc.name, `${what} (read)`, 'no reader');
  }
  if ((old & READER_MASK) === 1) wakeSleepers(acc, addr, lbl);
}

/**
 * Try once to take the semaphore for write; fails if anyone holds it.
 * @kvm kernel/locking/rwsem.c down_write_trylock
 */
export function downWriteTrylock(acc: Access, addr: Addr, what = DEFAULT_WHAT): boolean {
  const lbl = label(what);
  const s = acc.readOnce(addr, lbl);
  if (writerBlocked(s)) return false;
  if (acc.cmpxchg(addr, s, s | WRITER, lbl) !== s) return false;
  acc.writeOnce(wordAt(addr, RWSEM.OWNER), ownerTag(acc.actor), lbl);
  return true;
}

/**
 * Take the semaphore for write. The writer first announces itself (waiting-writers count), which
 * holds back new readers, then waits until readers and any writer are gone. Throws
 * EMU_ERR_DEADLINE naming the holders if one wait outlasts `deadlineMs` (the announcement is
 * withdrawn first), at once if the caller holds it for write, EMU_ERR_ABORTED on abort.
 * @kvm kernel/locking/rwsem.c down_write (rwsem_down_write_slowpath)
 */
export function downWrite(acc: Access, addr: Addr, what = DEFAULT_WHAT, deadlineMs = acc.deadlineMs): void {
  const lbl = label(what);
  const ownerAddr = wordAt(addr, RWSEM.OWNER);
  const first = acc.cmpxchg(addr, 0, WRITER, lbl);
  if (first === 0) {
    acc.writeOnce(ownerAddr, ownerTag(acc.actor), lbl);
    return;
  }
  checkNotWriter(acc, addr, first, lbl, what);
  acc.atomicAdd(addr, WAITING_WRITER_ONE, lbl);
  try {
    for (;;) {
      let s = 0;
      for (let i = 0, n = spinLimit(acc); i < n; i++) {
        s = acc.readOnce(addr, lbl);
        if (!writerBlocked(s)) {
          if (acc.cmpxchg(addr, s, s - WAITING_WRITER_ONE + WRITER, lbl) === s) {
            acc.writeOnce(ownerAddr, ownerTag(acc.actor), lbl);
            return;
          }
          continue;
        }
        acc.cpuRelax(lbl);
      }
      if (writerBlocked(s)) sleepOn(acc, addr, s, lbl, what, deadlineMs, writerBlocked);
    }
  } catch (e) {
    acc.atomicAdd(addr, -WAITING_WRITER_ONE, lbl);
    wakeSleepers(acc, addr, lbl);
    throw e;
  }
}

/** Check the caller holds the write side (EMU_ERR_INTERNAL otherwise), then clear the owner. */
function dropWriteOwner(acc: Access, addr: Addr, what: string, lbl: RacePoint): void {
  const ownerAddr = wordAt(addr, RWSEM.OWNER);
  const owner = acc.readOnce(ownerAddr, lbl);
  if (owner !== ownerTag(acc.actor) || (acc.readOnce(addr, lbl) & WRITER) === 0) {
    throw notOwnerError(acc.name, `${what} (write)`, ownerLabel(acc.layout, owner));
  }
  acc.writeOnce(ownerAddr, 0, lbl);
}

/**
 * Release the write hold and wake all sleepers. Throws EMU_ERR_INTERNAL (leaving the semaphore
 * alone) if the caller is not the writer.
 * @kvm kernel/locking/rwsem.c up_write
 */
export function upWrite(acc: Access, addr: Addr, what = DEFAULT_WHAT): void {
  const lbl = label(what);
  dropWriteOwner(acc, addr, what, lbl);
  acc.atomicAdd(addr, -WRITER, lbl);
  wakeSleepers(acc, addr, lbl);
}

/**
 * Turn the caller's write hold into a read hold atomically (no writer can slip in between).
 * @kvm kernel/locking/rwsem.c downgrade_write
 */
export function downgradeWrite(acc: Access, addr: Addr, what = DEFAULT_WHAT): void {
  const lbl = label(what);
  dropWriteOwner(acc, addr, what, lbl);
  acc.atomicAdd(addr, 1 - WRITER, lbl);
  wakeSleepers(acc, addr, lbl);
}

/**
 * The writer's actor id, -1 if not held for write (bookkeeping, not a race point).
 * @kvm kernel/locking/rwsem.c rwsem_owner
 */
export function rwsemOwner(acc: Access, addr: Addr): number {
  return acc.peek(wordAt(addr, RWSEM.OWNER)) - 1;
}

/**
 * Number of active readers (bookkeeping snapshot, not a race point).
 * @kvm kernel/locking/rwsem.c rwsem_is_locked (reader count part of sem->count)
 */
export function rwsemReaders(acc: Access, addr: Addr): number {
  return acc.peek(addr) & READER_MASK;
}
