/**
 * The host scheduler, reduced to what interrupt virtualization needs: each pCPU runs one task at
 * a time. vCPU threads (and the pCPU's idle task) take a pCPU through a FIFO ticket lock
 * (RUN_NEXT / RUN_SERVING), hold it for a time slice or until they block, and hand it on.
 * Waiters spin briefly, then sleep (bounded spinning), so 16 vCPUs on 2 pCPUs stay responsive.
 */
import { PCPU, type PcpuId } from '../mem/layout.js';
import type { Access } from '../mem/access.js';
import { spinThenWait } from '../sync/wait.js';

/** Take pCPU p (sched-in); waits behind earlier tickets. */
export function pcpuRunLock(acc: Access, p: PcpuId): void {
  const L = acc.layout;
  const ticket = acc.atomicAdd(L.pcpu(p, PCPU.RUN_NEXT), 1, 'sched:ticket');
  const serving = L.pcpu(p, PCPU.RUN_SERVING);
  for (;;) {
    const s = acc.readOnce(serving, 'sched:serving-read');
    if (s === ticket) return;
    spinThenWait(acc, serving, s, 'sched:run-queue', `pCPU ${p} (run queue: serving ticket ${s}, waiting with ${ticket})`);
  }
}

/** Take pCPU p only if nobody holds or waits for it. */
export function pcpuRunTryLock(acc: Access, p: PcpuId): boolean {
  const L = acc.layout;
  const s = acc.readOnce(L.pcpu(p, PCPU.RUN_SERVING), 'sched:serving-read');
  return acc.cmpxchg(L.pcpu(p, PCPU.RUN_NEXT), s, s + 1, 'sched:ticket-try') === s;
}

/** Release pCPU p (sched-out) to the next ticket. */
export function pcpuRunUnlock(acc: Access, p: PcpuId): void {
  const serving = acc.layout.pcpu(p, PCPU.RUN_SERVING);
  acc.atomicAdd(serving, 1, 'sched:serve-next');
  acc.notify(serving, Infinity, 'sched:wake-queue');
}

/** Tasks queued behind the holder of pCPU p. */
export function pcpuRunWaiters(acc: Access, p: PcpuId): number {
  const L = acc.layout;
  return acc.readOnce(L.pcpu(p, PCPU.RUN_NEXT), 'sched:next-read') - acc.readOnce(L.pcpu(p, PCPU.RUN_SERVING), 'sched:serving-read') - 1;
}

/** Let the worker's event loop run (RPC, timers) without giving up the pCPU. */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
