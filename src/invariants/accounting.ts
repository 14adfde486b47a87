/**
 * Interrupt accounting over all actors' counters: per (vCPU, vector) sent, coalesced,
 * delivered and lost. Pure: the same function serves tests, the CLI and benchmarks.
 *
 * Once the machine is quiescent every interrupt sent is either delivered to the guest or
 * coalesced with one already pending, so lost = sent - delivered - coalesced must be 0.
 */
import type { ActorCounters } from '../kvm/stats.js';

/** Totals of one row. */
export interface Tally {
  sent: number;
  coalesced: number;
  delivered: number;
  /** sent - delivered - coalesced (0 when nothing was lost; negative would mean over-delivery). */
  lost: number;
}

/** Accounting of one run. */
export interface Accounting {
  totals: Tally;
  perVcpu: (Tally & { vcpu: number })[];
  /** Only vectors with any activity. */
  perVector: (Tally & { vector: number })[];
  /** Only (vCPU, vector) cells with lost != 0. */
  unbalanced: (Tally & { vcpu: number; vector: number })[];
  /** Summed misc counters of all actors. */
  misc: Record<string, number>;
}

function tally(sent: number, coalesced: number, delivered: number): Tally {
  return { sent, coalesced, delivered, lost: sent - delivered - coalesced };
}

/** Sum the counters of every actor of a machine with `nrVcpus` vCPUs. */
export function aggregateCounters(all: readonly ActorCounters[], nrVcpus: number): Accounting {
  const n = nrVcpus * 256;
  const sent = new Float64Array(n);
  const coalesced = new Float64Array(n);
  const delivered = new Float64Array(n);
  const misc: Record<string, number> = {};
  for (const c of all) {
    for (let i = 0; i < n; i++) {
      sent[i]! += c.sent[i] ?? 0;
      coalesced[i]! += c.coalesced[i] ?? 0;
      delivered[i]! += c.delivered[i] ?? 0;
    }
    for (const [k, v] of Object.entries(c.misc)) misc[k] = (misc[k] ?? 0) + v;
  }
  const perVcpu: Accounting['perVcpu'] = [];
  const vecS = new Float64Array(256);
  const vecC = new Float64Array(256);
  const vecD = new Float64Array(256);
  const unbalanced: Accounting['unbalanced'] = [];
  let ts = 0;
  let tc = 0;
  let td = 0;
  for (let v = 0; v < nrVcpus; v++) {
    let s = 0;
    let co = 0;
    let d = 0;
    for (let vec = 0; vec < 256; vec++) {
      const i = v * 256 + vec;
      s += sent[i]!;
      co += coalesced[i]!;
      d += delivered[i]!;
      vecS[vec]! += sent[i]!;
      vecC[vec]! += coalesced[i]!;
      vecD[vec]! += delivered[i]!;
      const t = tally(sent[i]!, coalesced[i]!, delivered[i]!);
      if (t.lost !== 0) unbalanced.push({ vcpu: v, vector: vec, ...t });
    }
    perVcpu.push({ vcpu: v, ...tally(s, co, d) });
    ts += s;
    tc += co;
    td += d;
  }
  const perVector: Accounting['perVector'] = [];
  for (let vec = 0; vec < 256; vec++) {
    if (vecS[vec] || vecC[vec] || vecD[vec]) perVector.push({ vector: vec, ...tally(vecS[vec]!, vecC[vec]!, vecD[vec]!) });
  }
  return { totals: tally(ts, tc, td), perVcpu, perVector, unbalanced, misc };
}
