/**
 * Chrome Trace Event JSON (what Perfetto and chrome://tracing open): one track per actor, one
 * slice per recorded access (`ts` = the access's global sequence number, so order is exact and
 * the time axis counts accesses), and flow arrows from an actor's access of a shared word to the
 * next access of that word by another actor.
 */
import { describeAddr, type Layout } from '../mem/layout.js';
import { writeFileAtomic } from '../util/output-file.js';

/** One recorded access, as drained from the rings. */
export interface AccessRecord {
  /** Track (actor) index. */
  tid: number;
  /** Label id (FNV-1a of the race-point label). */
  label: number;
  /** Machine word. */
  addr: number;
  /** Global sequence number. */
  seq: number;
  /** Low 24 bits of the value written / expected, if any. */
  value: number;
}

interface TraceEvent {
  ph: string;
  name: string;
  pid: number;
  tid: number;
  ts?: number;
  dur?: number;
  cat?: string;
  id?: number;
  bp?: string;
  args?: Record<string, unknown>;
}

/**
 * Build the trace document. `names[tid]` names the tracks, `labels` maps label ids to names.
 * @emulator
 */
export function chromeTrace(records: readonly AccessRecord[], names: readonly string[], labels: ReadonlyMap<number, string>, layout: Pick<Layout, 'regions'>): { traceEvents: TraceEvent[] } {
  const ev: TraceEvent[] = [{ ph: 'M', name: 'process_name', pid: 1, tid: 0, args: { name: 'hvemu' } }];
  const tids = new Set(records.map((r) => r.tid));
  for (const tid of tids) ev.push({ ph: 'M', name: 'thread_name', pid: 1, tid, args: { name: names[tid] ?? `actor${tid}` } });
  const sorted = [...records].sort((a, b) => a.seq - b.seq);
  const last = new Map<number, AccessRecord>();
  let flow = 1;
  for (const r of sorted) {
    const name = labels.get(r.label) ?? `label#${r.label.toString(16)}`;
    ev.push({ ph: 'X', name, cat: name.split(':')[0] ?? 'access', pid: 1, tid: r.tid, ts: r.seq, dur: 1, args: { word: describeAddr(layout, r.addr), value: r.value } });
    const prev = last.get(r.addr);
    if (prev && prev.tid !== r.tid) {
      ev.push({ ph: 's', name: 'shared word', cat: 'flow', id: flow, pid: 1, tid: prev.tid, ts: prev.seq, bp: 'e' });
      ev.push({ ph: 'f', name: 'shared word', cat: 'flow', id: flow, pid: 1, tid: r.tid, ts: r.seq, bp: 'e' });
      flow++;
    }
    last.set(r.addr, r);
  }
  return { traceEvents: ev };
}

/** Write a trace document to a file, atomically (temp file + rename). @emulator */
export function writeChromeTrace(file: string, doc: { traceEvents: unknown[] }): void {
  writeFileAtomic(file, JSON.stringify(doc));
}
