/**
 * Multi-thread benchmark harness for the raw baselines: persistent workers, a ready count, a
 * start flag, per-worker counters on separate 64-byte lines, a warm-up, then periodic samples
 * (the figure of one repetition is the median of its samples).
 */
import { Worker } from 'node:worker_threads';
import { RAW, type RawTask } from './raw-protocol.js';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Median (mean of the two middle values for an even count); NaN for no values. */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Timing of one raw repetition. */
export interface RawTiming {
  /** Warm-up after the start flag, not measured (ms). */
  warmupMs: number;
  /** Measured window (ms). */
  measureMs: number;
  /** Sampling period (ms). */
  sampleMs: number;
  seed?: number;
}

/** One raw repetition's figures. */
export interface RawRunResult {
  kind: RawTask['kind'];
  workers: number;
  /** Events per second of each sample (round trips, or delivered bits). */
  samples: number[];
  /** Median of the samples: the repetition's figure. */
  medianPerSec: number;
  /** Whole-window average, for reference. */
  windowPerSec: number;
  /** Totals over the measured window (channel: sent / coalesced too). */
  window: { events: number; sent: number; coalesced: number; ms: number };
}

interface Slot {
  worker: Worker;
  pending: { resolve: () => void; reject: (e: Error) => void } | undefined;
}

/** A fixed set of persistent raw baseline workers. Call {@link RawPool.close} at the end. */
export class RawPool {
  private constructor(private readonly slots: Slot[]) {}

  /** Start `n` workers and wait until each is online. */
  static async create(n: number): Promise<RawPool> {
    const url = new URL('./raw-worker.js', import.meta.url);
    const slots: Slot[] = [];
    const online: Promise<void>[] = [];
    for (let i = 0; i < n; i++) {
      const worker = new Worker(url);
      const slot: Slot = { worker, pending: undefined };
      worker.on('message', () => {
        const p = slot.pending;
        slot.pending = undefined;
        p?.resolve();
      });
      worker.on('error', (err: Error) => {
        const p = slot.pending;
        slot.pending = undefined;
        p?.reject(err);
      });
      online.push(new Promise((resolve, reject) => {
        worker.once('online', () => resolve());
        worker.once('error', reject);
      }));
      slots.push(slot);
    }
    const pool = new RawPool(slots);
    try {
      await Promise.all(online);
    } catch (e) {
      await pool.close();
      throw e;
    }
    return pool;
  }

  get size(): number {
    return this.slots.length;
  }

  /** Run one repetition of `kind` on the first `n` workers. */
  async run(kind: RawTask['kind'], n: number, t: RawTiming): Promise<RawRunResult> {
    if (n < 2 || n > this.slots.length) throw new RangeError(`raw run needs 2..${this.slots.length} workers, got ${n}`);
    const sab = new SharedArrayBuffer(RAW.bytes(n));
    const m = new Int32Array(sab);
    const done = this.slots.slice(0, n).map(
      (slot, index) =>
        new Promise<void>((resolve, reject) => {
          slot.pending = { resolve, reject };
          const task: RawTask = { kind, sab, index, n, seed: t.seed ?? 1 };
          slot.worker.postMessage(task);
        }),
    );
    // Handled below through Promise.all; this keeps an early worker error from going unhandled.
    for (const p of done) p.catch(() => undefined);
    const stop = () => {
      Atomics.store(m, RAW.STOP, 1);
      Atomics.notify(m, RAW.START, Infinity);
    };
    try {
      const readyBy = performance.now() + 10_000;
      while (Atomics.load(m, RAW.READY) < n) {
        if (performance.now() > readyBy) throw new Error(`raw ${kind}: only ${Atomics.load(m, RAW.READY)} of ${n} workers became ready`);
        await sleep(1);
      }
      Atomics.store(m, RAW.START, 1);
      Atomics.notify(m, RAW.START, Infinity);
      await sleep(t.warmupMs);

      const read = () => {
        let events = 0;
        let sent = 0;
        let coalesced = 0;
        // Counters are int32 words written with plain stores; read them as uint32.
        if (kind === 'pingpong') events = Atomics.load(m, RAW.counters(0)) >>> 0;
        else {
          for (let i = 0; i < n; i++) {
            const c = RAW.counters(i);
            events += Atomics.load(m, c + RAW.C_DELIVERED) >>> 0;
            sent += Atomics.load(m, c + RAW.C_SENT) >>> 0;
            coalesced += Atomics.load(m, c + RAW.C_COALESCED) >>> 0;
          }
        }
        return { t: performance.now(), events, sent, coalesced };
      };
      const first = read();
      let prev = first;
      const samples: number[] = [];
      while (prev.t - first.t < t.measureMs) {
        await sleep(Math.min(t.sampleMs, Math.max(1, t.measureMs - (prev.t - first.t))));
        const cur = read();
        const dt = cur.t - prev.t;
        if (dt > 0) samples.push(((cur.events - prev.events) * 1000) / dt);
        prev = cur;
      }
      stop();
      await withTimeout(Promise.all(done), 10_000, `raw ${kind} workers did not stop`);
      const ms = prev.t - first.t;
      return {
        kind,
        workers: n,
        samples,
        medianPerSec: median(samples),
        windowPerSec: ((prev.events - first.events) * 1000) / ms,
        window: { events: prev.events - first.events, sent: prev.sent - first.sent, coalesced: prev.coalesced - first.coalesced, ms },
      };
    } finally {
      stop();
    }
  }

  /** Terminate every worker (also ones still spinning). */
  async close(): Promise<void> {
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
