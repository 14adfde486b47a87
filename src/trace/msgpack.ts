/**
 * Event files: a stream of msgpack documents. The first is a header
 * `{ format: 'hvemu-events', version: 1, fields }`; each further document is a batch (array) of
 * event tuples `[type, actor, a, b, t, extra]` (tuples, not keyed objects: ~4x smaller and faster).
 */
import { createReadStream, createWriteStream, renameSync, type WriteStream } from 'node:fs';
import { Encoder, decodeMultiStream } from '@msgpack/msgpack';
import type { HvEvent } from './events.js';
import { releaseTemp, removeQuietly, resolveOutputTarget, tempPathFor, trackTemp } from '../util/output-file.js';

/** Tuple field order in event files. */
export const EVENT_TUPLE_FIELDS = ['type', 'actor', 'a', 'b', 't', 'extra'] as const;

/**
 * Writes events to a msgpack file in batches, atomically: the events stream into a temp file
 * next to `path` (`<path>.tmp-<pid>-<random>`) that {@link close} renames to `path`. A failed
 * write never leaves a partial file at `path`: the temp file is removed and `close` rejects.
 */
export class MsgpackEventWriter {
  private readonly out: WriteStream;
  private readonly enc = new Encoder();
  private readonly target: string;
  /** The temp file the events go to until {@link close}. */
  readonly tempPath: string;
  private readonly streamClosed: Promise<void>;
  private failure: Error | undefined;
  private closing: Promise<number> | undefined;
  private batch: unknown[][] = [];
  private count = 0;

  constructor(
    readonly path: string,
    private readonly batchSize = 4096,
  ) {
    this.target = resolveOutputTarget(path);
    this.tempPath = tempPathFor(this.target);
    this.out = createWriteStream(this.tempPath, { flags: 'wx', flush: true });
    trackTemp(this.tempPath);
    // A write error (directory gone, disk full) is kept for close(), never an unhandled 'error'.
    this.out.on('error', (e) => (this.failure ??= e));
    this.streamClosed = new Promise((resolve) => this.out.once('close', () => resolve()));
    this.out.write(this.enc.encode({ format: 'hvemu-events', version: 1, fields: EVENT_TUPLE_FIELDS }));
  }

  /** Queue one event (ignored once a write has failed: close() then rejects). */
  write(e: HvEvent): void {
    if (this.failure) return;
    this.batch.push([e.type, e.actor, e.a, e.b, e.t, e.extra]);
    this.count++;
    if (this.batch.length >= this.batchSize) this.flush();
  }

  private flush(): void {
    if (this.batch.length === 0 || this.failure) return;
    this.out.write(this.enc.encode(this.batch));
    this.batch = [];
  }

  /**
   * Flush, close and rename the temp file to `path`; resolves with the number of events
   * written. On failure the temp file is removed and the write error is thrown.
   */
  close(): Promise<number> {
    this.closing ??= (async () => {
      this.flush();
      if (!this.failure) this.out.end();
      await this.streamClosed;
      try {
        if (this.failure) throw this.failure;
        renameSync(this.tempPath, this.target);
      } catch (e) {
        removeQuietly(this.tempPath);
        throw e;
      } finally {
        releaseTemp(this.tempPath);
      }
      return this.count;
    })();
    return this.closing;
  }

  /** Give up (e.g. on a forced exit): close the stream and remove the temp file, synchronously. */
  abort(): void {
    this.failure ??= new Error(`${this.path}: aborted`);
    this.out.destroy();
    removeQuietly(this.tempPath);
    releaseTemp(this.tempPath);
  }
}

/** Read an event file back (throws if the header is not an hvemu event file). */
export async function readEventsMsgpack(path: string): Promise<HvEvent[]> {
  const out: HvEvent[] = [];
  let first = true;
  for await (const doc of decodeMultiStream(createReadStream(path))) {
    if (first) {
      first = false;
      const h = doc as { format?: string };
      if (h?.format !== 'hvemu-events') throw new Error(`${path} is not an hvemu event file`);
      continue;
    }
    for (const t of doc as [string, string, number, number, number, number][]) {
      out.push({ type: t[0], actor: t[1], a: t[2], b: t[3], t: t[4], extra: t[5] });
    }
  }
  return out;
}
