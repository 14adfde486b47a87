/**
 * The actor pool: piscina threads kept warm across runs (minThreads = maxThreads, no idle
 * timeout), one long-running task per actor. A run needs one thread per actor at once; with
 * fewer, mutually waiting actors would queue behind each other and deadlock, so a run refuses
 * to start instead (EMU_ERR_POOL_TOO_SMALL).
 */
import { Piscina } from 'piscina';
import { EmuError } from '../errors.js';
import type { ActorResult, ActorTask } from './protocol.js';

const WORKER_URL = new URL('../../workers/actor-worker.js', import.meta.url).href;
const SCENARIO_WORKER_URL = new URL('../../workers/scenario-worker.js', import.meta.url).href;

/** Hard upper bound of pool threads (256 vCPUs + 256 pCPUs would be silly on 2 cores). */
export const MAX_POOL_THREADS = 600;

/** A warm pool of actor threads. */
export class ActorPool {
  readonly threads: number;
  private readonly piscina: Piscina;
  private destroyed = false;

  constructor(threads: number) {
    if (!Number.isInteger(threads) || threads < 1 || threads > MAX_POOL_THREADS) {
      throw new EmuError('EMU_ERR_BAD_PARAM', `invalid threads: ${threads} (must be an integer in 1..${MAX_POOL_THREADS})`, { detail: { param: 'threads' } });
    }
    this.threads = threads;
    this.piscina = new Piscina({
      filename: WORKER_URL,
      minThreads: threads,
      maxThreads: threads,
      idleTimeout: Infinity,
      concurrentTasksPerWorker: 1,
      atomics: 'disabled',
      recordTiming: false,
    });
  }

  /** Throw EMU_ERR_POOL_TOO_SMALL unless `actors` tasks can run at once. */
  ensureCapacity(actors: number): void {
    if (this.destroyed) throw new EmuError('EMU_ERR_POOL_TOO_SMALL', 'the actor pool was destroyed');
    if (actors > this.threads) {
      throw new EmuError(
        'EMU_ERR_POOL_TOO_SMALL',
        `the run needs ${actors} actor threads at once but the pool has ${this.threads}; actors waiting on each other would deadlock (create the pool with at least ${actors} threads)`,
        { detail: { actors, threads: this.threads } },
      );
    }
  }

  /** Start one actor task. */
  run(task: ActorTask): Promise<ActorResult> {
    return this.piscina.run(task, { transferList: [task.port as never] }) as Promise<ActorResult>;
  }

  /** Start one race-scenario actor task (workers/scenario-worker.ts) on the same threads. */
  runScenario<T, R>(task: T): Promise<R> {
    return this.piscina.run(task, { filename: SCENARIO_WORKER_URL }) as Promise<R>;
  }

  /** Threads currently alive. */
  get liveThreads(): number {
    return this.piscina.threads.length;
  }

  /** Terminate every thread now, even ones blocked in Atomics.wait. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    await this.piscina.destroy();
  }

  get isDestroyed(): boolean {
    return this.destroyed;
  }
}

let shared: ActorPool | undefined;

/**
 * The process-wide warm pool, grown (re-created) when a run needs more threads than it has.
 * Call {@link closeSharedPool} before exit.
 */
export async function sharedPool(minThreads: number): Promise<ActorPool> {
  if (shared && !shared.isDestroyed && shared.threads >= minThreads) return shared;
  if (shared) await shared.destroy();
  shared = new ActorPool(minThreads);
  return shared;
}

/** Destroy the shared pool (lets the process exit). */
export async function closeSharedPool(): Promise<void> {
  const p = shared;
  shared = undefined;
  if (p) await p.destroy();
}
