/**
 * What the sync test worker (test/fixtures/sync-worker.ts) and the tests agree on: the layout
 * of the machine, the scratch words each operation uses, and the message shapes.
 */
import type { LayoutConfig } from '../../src/mem/layout.js';
import type { WireError } from '../../src/errors.js';

/** Machine for the sync tests: actors 0-3 are vcpu0-3 (the workers), 4 is pcpu0, 5 is main. */
export const SYNC_LAYOUT: LayoutConfig = { vcpus: 4, pcpus: 1, extraActors: 0, ringRecords: 16, scratchWords: 512 };

/** Scratch word index of the start of 64-byte line n (contended words get a line each). */
const line = (n: number): number => n * 16;

/** Scratch word indexes (pass to `layout.scratch`). */
export const S = {
  LOCK: line(0),
  COUNTER: line(1),
  RWSEM: line(2),
  W1: line(3),
  W2: line(4),
  DONE: line(5),
  DOORBELL_A: line(6),
  DOORBELL_B: line(7),
  PUBLISHED: line(8),
  INUSE: (slot: number): number => line(9 + slot),
  FREED: (slot: number): number => line(13 + slot),
  LITMUS_X: line(17),
  LITMUS_Y: line(18),
  ARRIVE: (role: number): number => line(19 + role),
  RESULT: (role: number): number => line(21 + role),
  WRITERS_DONE: line(23),
  SLEEPING: (role: number): number => line(24 + role),
  LITMUS_STOP: line(26),
  /** SRCU test: readers that have completed their first read section. */
  READERS_STARTED: line(27),
} as const;

/** Readers of the SRCU grace-period test: the writer starts once all of them are reading. */
export const SRCU_TEST_READERS = 3;

/** Slots the SRCU test cycles through. */
export const SRCU_SLOTS = 4;

/** Operations the worker knows. */
export type SyncOp =
  | 'spin-inc'
  | 'mutex-inc'
  | 'nolock-inc'
  | 'rwsem-writer'
  | 'rwsem-reader'
  | 'srcu-reader'
  | 'srcu-writer'
  | 'srcu-self-deadlock'
  | 'srcu-sync'
  | 'doorbell-ping'
  | 'doorbell-pong'
  | 'doorbell-wait'
  | 'spin-lock'
  | 'mutex-lock'
  | 'down-write'
  | 'down-read'
  | 'sb-litmus';

/** One worker's job. */
export interface WorkerSpec {
  actor: number;
  op: SyncOp;
  iterations: number;
  /** Per-wait deadline of the worker's Access (ms). */
  deadlineMs?: number;
  /** Op-specific numbers (e.g. litmus role and fence variant, number of writers). */
  params?: Record<string, number>;
}

/** workerData of the fixture. */
export interface SyncWorkerData extends WorkerSpec {
  sab: SharedArrayBuffer;
  layoutConfig: LayoutConfig;
  /** How many workers meet at the start gate. */
  parties: number;
}

/** Litmus fence variants (params.fence). */
export const FENCE = { NONE: 0, MB: 1, XCHG: 2 } as const;

/** What a worker posts back. */
export type WorkerOutcome =
  | { ok: true; actor: number; result: Record<string, number>; waitStats: { sleeps: number; lateWakeups: number; polls: number } }
  | { ok: false; actor: number; error: WireError };
