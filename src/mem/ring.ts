/**
 * Consumer side of the per-actor event rings (the producer side is {@link Access.emitRaw}).
 *
 * Ring diagram (one per actor, single producer, single consumer = the main thread):
 *
 *   line 0: HEAD (producer index, monotonic)      line 1: TAIL (consumer index) | DROPPED
 *   records[R]: w0 = kind (7:0) | extra (31:8) · w1 = a · w2 = b · w3 = c
 *
 * The producer never blocks: when HEAD - TAIL == R the event is dropped and DROPPED counted.
 */
import { RING, type ActorId } from './layout.js';
import type { MachineMemory } from './access.js';

/** One raw ring record, decoded into numbers. */
export interface RawRecord {
  actor: ActorId;
  kind: number;
  extra: number;
  a: number;
  b: number;
  c: number;
}

/** Reads every actor's ring from one thread (the main thread). */
export class RingReader {
  private readonly m: Int32Array;
  constructor(private readonly mem: MachineMemory) {
    this.m = new Int32Array(mem.sab, 0, mem.layout.totalBytes >> 2);
  }

  /** Drain all pending records of one actor into `out`; returns how many were read. */
  drain(actor: ActorId, out: RawRecord[]): number {
    const L = this.mem.layout;
    const cap = L.config.ringRecords;
    const tailAddr = L.ring(actor, RING.TAIL);
    const head = Atomics.load(this.m, L.ring(actor, RING.HEAD));
    let tail = this.m[tailAddr]!;
    const n = head - tail;
    for (; tail !== head; tail++) {
      const rec = L.ring(actor, RING.RECORDS + (tail & (cap - 1)) * RING.RECORD_WORDS);
      const w0 = this.m[rec]!;
      out.push({ actor, kind: w0 & 0xff, extra: w0 >>> 8, a: this.m[rec + 1]!, b: this.m[rec + 2]!, c: this.m[rec + 3]! });
    }
    Atomics.store(this.m, tailAddr, head);
    return n;
  }

  /**
   * The newest records of a flight-recorder ring (at most its capacity), oldest first. Only
   * meaningful once the producer has stopped.
   */
  readLast(actor: ActorId, out: RawRecord[]): number {
    const L = this.mem.layout;
    const cap = L.config.ringRecords;
    const head = Atomics.load(this.m, L.ring(actor, RING.HEAD));
    const from = Math.max(0, head - cap);
    for (let i = from; i < head; i++) {
      const rec = L.ring(actor, RING.RECORDS + (i & (cap - 1)) * RING.RECORD_WORDS);
      const w0 = this.m[rec]!;
      out.push({ actor, kind: w0 & 0xff, extra: w0 >>> 8, a: this.m[rec + 1]!, b: this.m[rec + 2]!, c: this.m[rec + 3]! });
    }
    return head - from;
  }

  /** Events dropped so far by an actor because its ring was full. */
  dropped(actor: ActorId): number {
    return Atomics.load(this.m, this.mem.layout.ring(actor, RING.DROPPED));
  }
}
