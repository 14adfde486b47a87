/**
 * Shared-memory layout and task message of the raw baseline workers (see raw-worker.ts).
 * Every word a thread writes in its hot loop sits on its own 64-byte line.
 *
 *   line 0            START, STOP, READY (control, written by main / once by workers)
 *   line 1            PINGPONG (the ping-pong word)
 *   line 2 + 2i       inbox of worker i (raw channel)
 *   line 2 + 2i + 1   counters of worker i: delivered (or round trips), sent, coalesced
 */

const LINE = 16;

/** One task for a raw worker. */
export interface RawTask {
  kind: 'pingpong' | 'channel';
  sab: SharedArrayBuffer;
  /** This worker's index, 0..n-1. */
  index: number;
  /** Workers taking part. */
  n: number;
  seed: number;
}

/** Word offsets of the raw baseline's shared memory. */
export const RAW = {
  START: 0,
  STOP: 1,
  READY: 2,
  PINGPONG: LINE,
  /** Counter words, relative to {@link RAW.counters}. */
  C_DELIVERED: 0,
  C_SENT: 1,
  C_COALESCED: 2,
  inbox: (i: number): number => (2 + 2 * i) * LINE,
  counters: (i: number): number => (3 + 2 * i) * LINE,
  bytes: (n: number): number => (2 + 2 * n) * LINE * 4,
} as const;
