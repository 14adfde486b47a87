/**
 * The host scheduler, reduced to what interrupt virtualization needs: each pCPU runs one task at
 * a time. vCPU threads (and the pCPU's idle task) take a pCPU through a FIFO ticket lock
 * (RUN_NEXT / RUN_SERVING), hold it for a time slice or until they block, and hand it on.
 *
 * Hand-off without a thundering herd: a waiter publishes itself in the run-queue slot of its
 * ticket, then sleeps on its own RUNQ_WAKE word (bounded spin, then Atomics.wait); the releaser
 * advances RUN_SERVING and wakes only the owner of the next ticket.
 *
 *   waiter                                   releaser
 *   t = fetch_add(RUN_NEXT)                  fetch_add(RUN_SERVING)      (locked: full fence)
 *   xchg(slot[t], me + 1)  (full fence)      w = xchg(slot[t + 1], 0)
 *   while RUN_SERVING != t: sleep on wake    if w: RUNQ_WAKE[w - 1] = 1; notify
 *
 * Either the releaser sees the slot, or the waiter sees the new RUN_SERVING (Dekker pair).
 */
import { ACTOR, PCPU, type PcpuId } from '../mem/layout.js';
import type { Access } from '../mem/access.js';
import { spinThenWait } from '../sync/wait.js';

/** Take pCPU p (sched-in); waits behind earlier tickets. @emulator */
export function pcpuRunLock(acc: Access, p: PcpuId): void {
  const L = acc.layout;
  const ticket = acc.atomicAdd(L.pcpu(p, PCPU.RUN_NEXT), 1, 'sched:ticket');
  const serving = L.pcpu(p, PCPU.RUN_SERVING);
  if (acc.readOnce(serving, 'sched:serving-read') === ticket) return;
  const wake = L.actor(acc.actor, ACTOR.RUNQ_WAKE);
  acc.writeOnce(wake, 0, 'sched:wake-reset');
  acc.xchg(L.runqSlot(p, ticket), acc.actor + 1, 'sched:enqueue');
  for (;;) {
    const s = acc.readOnce(serving, 'sched:serving-read');
    if (s === ticket) break;
    spinThenWait(acc, wake, 0, 'sched:run-queue', `pCPU ${p} (run queue: serving ticket ${s}, waiting with ${ticket})`);
    acc.writeOnce(wake, 0, 'sched:wake-reset');
  }
  // Served without the releaser's help: take our slot back so a later lap cannot find it.
  acc.xchg(L.runqSlot(p, ticket), 0, 'sched:dequeue');
}

/** Take pCPU p only if nobody holds or waits for it. @emulator */
export function pcpuRunTryLock(acc: Access, p: PcpuId): boolean {
  const L = acc.layout;
  const s = acc.readOnce(L.pcpu(p, PCPU.RUN_SERVING), 'sched:serving-read');
  return acc.cmpxchg(L.pcpu(p, PCPU.RUN_NEXT), s, s + 1, 'sched:ticket-try') === s;
}

/** Release pCPU p (sched-out) to the next ticket, waking only its owner. @emulator */
export function pcpuRunUnlock(acc: Access, p: PcpuId): void {
  const L = acc.layout;
  const next = acc.atomicAdd(L.pcpu(p, PCPU.RUN_SERVING), 1, 'sched:serve-next') + 1;
  const w = acc.xchg(L.runqSlot(p, next), 0, 'sched:dequeue-next');
  if (w !== 0) {
    const wake = L.actor(w - 1, ACTOR.RUNQ_WAKE);
    acc.xchg(wake, 1, 'sched:hand-off');
    acc.notify(wake, 1, 'sched:hand-off');
  }
}

/** Tasks queued behind the holder of pCPU p. @emulator */
export function pcpuRunWaiters(acc: Access, p: PcpuId): number {
  const L = acc.layout;
  return acc.readOnce(L.pcpu(p, PCPU.RUN_NEXT), 'sched:next-read') - acc.readOnce(L.pcpu(p, PCPU.RUN_SERVING), 'sched:serving-read') - 1;
}

/** Let the worker's event loop run (RPC, timers) without giving up the pCPU. @emulator */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
