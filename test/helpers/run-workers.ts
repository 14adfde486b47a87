/**
 * Start one test worker per spec on a shared machine memory, wait for all of them with a
 * timeout, and terminate every worker in every case (success, failure, timeout).
 */
import { Worker } from 'node:worker_threads';
import type { MachineMemory } from '../../src/mem/access.js';
import type { SyncWorkerData, WorkerOutcome, WorkerSpec } from './sync-protocol.js';

/** The compiled fixture (tests run from dist/test/...). */
export const SYNC_WORKER_URL = new URL('../fixtures/sync-worker.js', import.meta.url);

export interface RunOptions {
  /** Give up (and terminate all workers) after this long. */
  timeoutMs?: number;
  /** Worker script; defaults to the sync fixture. */
  script?: URL;
}

/** Run the workers; resolves with their outcomes in spec order, rejects on crash or timeout. */
export async function runWorkers(mem: MachineMemory, specs: readonly WorkerSpec[], opts: RunOptions = {}): Promise<WorkerOutcome[]> {
  const timeoutMs = opts.timeoutMs ?? 20_000;
  const workers: Worker[] = [];
  let timer: NodeJS.Timeout | undefined;
  try {
    const outcomes = specs.map((spec) => {
      const data: SyncWorkerData = { ...spec, sab: mem.sab, layoutConfig: mem.layout.config, parties: specs.length };
      const w = new Worker(opts.script ?? SYNC_WORKER_URL, { workerData: data });
      workers.push(w);
      return new Promise<WorkerOutcome>((resolve, reject) => {
        w.once('message', (m: WorkerOutcome) => resolve(m));
        w.once('error', reject);
        w.once('exit', (code) => reject(new Error(`worker for actor ${spec.actor} (${spec.op}) exited with code ${code} before reporting`)));
      });
    });
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`workers did not finish within ${timeoutMs} ms`)), timeoutMs);
    });
    return await Promise.race([Promise.all(outcomes), timeout]);
  } finally {
    if (timer !== undefined) clearTimeout(timer);
    await Promise.all(workers.map((w) => w.terminate()));
  }
}

/** The results of successful outcomes; throws with the first worker error otherwise. */
export function expectOk(outcomes: readonly WorkerOutcome[]): Array<Record<string, number>> {
  return outcomes.map((o) => {
    if (!o.ok) throw new Error(`actor ${o.actor} failed: ${o.error.code}: ${o.error.message}`);
    return o.result;
  });
}
