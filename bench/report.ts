/**
 * The bench's result record (written as bench/results/latest.json) and its renderings: the
 * stdout tables (cli-table3) and bench/README.md, both generated from the record only.
 */
import Table from 'cli-table3';
import type { AccessCostResult, AccessMode } from './access-cost.js';
import { OP_CALLS } from './access-cost.js';

export interface Target {
  id: 'round-trip' | 'throughput-2' | 'no-collapse';
  text: string;
  value: number;
  threshold: number;
  comparison: '<=' | '>=';
  pass: boolean;
  /** Computed from pairs measured on a contended host only. */
  unreliable: boolean;
}

/** One raw + hvemu repetition pair, with the host contention measured during each side. */
export interface PairInfo {
  /** Raw figure of the pair (µs per round trip, or delivered/s). */
  raw: number;
  /** hvemu figure of the pair. */
  ours: number;
  /** CPU taken by other processes + steal during each side (cores; null: unknown). */
  rawExternalCores: number | null;
  oursExternalCores: number | null;
  /** Counted in the medians (false: discarded because the host was contended). */
  used: boolean;
}

/** How the pairs of one configuration were chosen. */
export interface PairSummary {
  pairs: PairInfo[];
  /** Pairs counted in the medians. */
  used: number;
  /** No uncontended pair: the medians use every pair and the figures are unreliable. */
  contended: boolean;
}

export interface StormRow {
  vcpus: number;
  pcpus: number;
  rawWorkers: number;
  ours: {
    /** Median over repetitions of RunResult.rate.deliveredPerSec. */
    deliveredPerSec: number;
    reps: number[];
    sentPerSec: number;
    /** Share of sent IPIs that coalesced into an already pending bit (all repetitions). */
    coalescedShare: number;
    /** Lost interrupts summed over repetitions (must be 0). */
    lost: number;
    ok: boolean;
    failures: string[];
  };
  raw: {
    /** Median over repetitions of the median of 100 ms samples. */
    deliveredPerSec: number;
    reps: number[];
    sentPerSec: number;
    coalescedShare: number;
  };
  /** ours / raw. */
  ratio: number;
  pairing: PairSummary;
}

export interface BenchResults {
  schema: 1;
  date: string;
  quick: boolean;
  command: string;
  durationSec: number;
  machine: { node: string; platform: string; arch: string; cpus: number; cpuModel: string; memGiB: number; loadAvgStart: number[]; loadAvgEnd: number[] };
  settings: {
    vendor: string;
    pingPong: { vcpus: number; pcpus: number; reps: number; seconds: number };
    storm: { pcpus: number; vcpus: number[]; reps: number; seconds: number; burst: number; defaultShape: string };
    raw: { warmupMs: number; sampleMs: number };
    /** A pair is discarded when other processes took more than this many cores during it. */
    contentionCores: number;
    access: { iterations: number; reps: number };
  };
  pingPong: {
    ours: { usPerRoundTrip: number; reps: number[]; roundTrips: number[]; ok: boolean; failures: string[] };
    raw: { usPerRoundTrip: number; reps: number[] };
    /** ours / raw (µs per round trip). */
    ratio: number;
    pairing: PairSummary;
  };
  storm: {
    rows: StormRow[];
    /** delivered/s with the most vCPUs over delivered/s with the fewest. */
    collapse: { from: number; to: number; ours: number; raw: number };
  };
  access: AccessCostResult;
  targets: Target[];
}

// ---------------------------------------------------------------------------------------------
// Number formatting

export function fmtRate(perSec: number): string {
  if (!Number.isFinite(perSec)) return 'n/a';
  if (perSec >= 1e6) return `${(perSec / 1e6).toFixed(2)} M/s`;
  if (perSec >= 1e3) return `${(perSec / 1e3).toFixed(1)} k/s`;
  return `${perSec.toFixed(0)} /s`;
}

export function fmtUs(us: number): string {
  if (!Number.isFinite(us)) return 'n/a';
  return us >= 100 ? `${us.toFixed(0)} µs` : us >= 10 ? `${us.toFixed(1)} µs` : `${us.toFixed(3)} µs`;
}

export function fmtNs(ns: number): string {
  return Number.isFinite(ns) ? `${ns.toFixed(2)} ns` : 'n/a';
}

export function fmtRatio(r: number): string {
  if (!Number.isFinite(r)) return 'n/a';
  return r >= 100 ? `${r.toFixed(0)}x` : r >= 10 ? `${r.toFixed(1)}x` : `${r.toFixed(2)}x`;
}

const pct = (x: number): string => (Number.isFinite(x) ? `${(x * 100).toFixed(1)}%` : 'n/a');

const MODE_TEXT: Record<AccessMode, string> = {
  raw: 'raw',
  off: 'access, instrumentation off',
  'widen-p0': 'access, widening p=0 (hooked)',
  record: 'access, record: true',
};

export function targetLine(t: Target): string {
  const note = t.unreliable ? ' [unreliable: host contended in every pair]' : '';
  return `${t.pass ? 'PASS' : 'MISS'}  ${t.text}: ${fmtRatio(t.value)} (target ${t.comparison} ${fmtRatio(t.threshold)})${note}`;
}

// ---------------------------------------------------------------------------------------------
// Table rows (shared by stdout and README)

interface Grid {
  title: string;
  head: string[];
  rows: string[][];
}

function grids(r: BenchResults): Grid[] {
  const pp = r.pingPong;
  const s = r.settings;
  const ppGrid: Grid = {
    title: `IPI round trip (ping-pong, ${s.pingPong.vcpus} vCPUs / ${s.pingPong.pcpus} pCPUs, median of ${s.pingPong.reps} x ${s.pingPong.seconds} s)`,
    head: ['path', 'µs / round trip', 'round trips / s', 'spread (min..max µs)', 'pairs used'],
    rows: [
      ['raw Atomics spin ping-pong (2 workers)', fmtUs(pp.raw.usPerRoundTrip), fmtRate(1e6 / pp.raw.usPerRoundTrip), spread(pp.raw.reps, fmtUs), pairsText(pp.pairing)],
      [`hvemu posted-interrupt path${pp.ours.ok ? '' : ' (FAILED runs)'}`, fmtUs(pp.ours.usPerRoundTrip), fmtRate(1e6 / pp.ours.usPerRoundTrip), spread(pp.ours.reps, fmtUs), ''],
      ['ratio hvemu / raw', fmtRatio(pp.ratio), '', '', ''],
    ],
  };
  const stormGrid: Grid = {
    title: `IPI storm throughput (interrupts delivered / s, ${s.storm.pcpus} pCPUs, median of ${s.storm.reps} x ${s.storm.seconds} s; default machine shape: ${s.storm.defaultShape})`,
    head: ['vCPUs', 'hvemu delivered/s', 'hvemu sent/s', 'coalesced', 'lost', 'ok', 'raw delivered/s', 'ratio hvemu/raw', 'pairs used'],
    rows: r.storm.rows.map((row) => [
      `${row.vcpus} on ${row.pcpus}`,
      fmtRate(row.ours.deliveredPerSec),
      fmtRate(row.ours.sentPerSec),
      pct(row.ours.coalescedShare),
      String(row.ours.lost),
      row.ours.ok ? 'yes' : 'NO',
      fmtRate(row.raw.deliveredPerSec),
      fmtRatio(row.ratio),
      pairsText(row.pairing),
    ]),
  };
  const c = r.storm.collapse;
  stormGrid.rows.push([`${c.to} / ${c.from}`, fmtRatio(c.ours), '', '', '', '', fmtRatio(c.raw), '', '']);
  const accGrid: Grid = {
    title: `Access-layer cost (single thread, ${r.access.iterations.toExponential(0)} ops per cell, median of ${r.access.reps}; ns/op incl. loop)`,
    head: ['variant', 'store (writeOnce)', 'load (readOnce)', 'or (atomicOr)'],
    rows: (['raw', 'off', 'widen-p0', 'record'] as const).map((mode) => {
      const cell = (op: 'store' | 'load' | 'or') => {
        const x = r.access.cells.find((c2) => c2.op === op && c2.mode === mode);
        if (!x) return 'n/a';
        return mode === 'raw' ? `${fmtNs(x.nsPerOp)} (${OP_CALLS[op].raw})` : `${fmtNs(x.nsPerOp)} (${fmtRatio(x.ratio)})`;
      };
      return [MODE_TEXT[mode], cell('store'), cell('load'), cell('or')];
    }),
  };
  return [ppGrid, stormGrid, accGrid];
}

function pairsText(p: PairSummary): string {
  return p.contended ? `0/${p.pairs.length} (contended)` : `${p.used}/${p.pairs.length}`;
}

function spread(xs: readonly number[], f: (x: number) => string): string {
  if (xs.length === 0) return 'n/a';
  return `${f(Math.min(...xs))} .. ${f(Math.max(...xs))}`;
}

// ---------------------------------------------------------------------------------------------
// stdout

export function renderText(r: BenchResults, tty: boolean): string {
  const out: string[] = [];
  out.push(`hvemu bench — ${r.date} — node ${r.machine.node}, ${r.machine.cpus} CPUs (${r.machine.cpuModel}), load avg ${r.machine.loadAvgStart[0]?.toFixed(2) ?? '?'}${r.quick ? ' — QUICK run' : ''}`);
  for (const g of grids(r)) {
    const t = new Table(tty ? { head: g.head } : { head: g.head, style: { head: [], border: [] } });
    for (const row of g.rows) t.push(row);
    out.push('', g.title, t.toString());
  }
  out.push('', 'Targets:');
  for (const t of r.targets) out.push(targetLine(t));
  out.push('', `(${r.durationSec.toFixed(0)} s)`);
  return out.join('\n');
}

// ---------------------------------------------------------------------------------------------
// README

function mdTable(g: Grid): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|');
  const lines = [`| ${g.head.map(esc).join(' | ')} |`, `|${g.head.map(() => '---').join('|')}|`];
  for (const row of g.rows) lines.push(`| ${row.map(esc).join(' | ')} |`);
  return lines.join('\n');
}

export function renderReadme(r: BenchResults): string {
  const [pp, storm, acc] = grids(r);
  const s = r.settings;
  const m = r.machine;
  return `# hvemu benchmarks

<!-- Generated by bench/ipi.bench.ts from bench/results/latest.json. Do not edit: rerun \`npm run bench\`. -->

Run with:

\`\`\`sh
npm run bench                           # build, then node dist/bench/ipi.bench.js
node dist/bench/ipi.bench.js --quick    # short smoke run; writes bench/results/quick.json, leaves this file alone
node dist/bench/ipi.bench.js --readme   # only regenerate this file from bench/results/latest.json
\`\`\`

A full run takes about a minute on a quiet 2-core host (up to about two when other processes
compete for the CPUs and pairs are re-run). It prints the tables on stdout, writes every
figure to \`bench/results/latest.json\` and regenerates this file from that JSON, so the
numbers below always come from a real run.

## Why every figure is a ratio

The machine these figures come from has ${m.cpus} cores, shared with other work; the absolute
throughput of one configuration varies several-fold between runs. Every hvemu figure is
therefore measured next to a **raw baseline** in the same process run (raw and hvemu
repetitions alternate), and the report gives the ratio. Raw baselines run on persistent
\`node:worker_threads\` workers (\`bench/raw-worker.ts\`) with a ready count, a start flag,
per-worker counters on separate 64-byte lines, a ${s.raw.warmupMs} ms warm-up, and the median of
${s.raw.sampleMs} ms samples as the figure of a repetition. hvemu runs use the public
\`Machine\` API on the warm actor pool (a warm-up run first pays thread start-up); the figure of
a repetition is what \`RunResult\` reports. Each table gives the median over repetitions.

A raw repetition and an hvemu repetition form a *pair*. During each side the bench reads
\`/proc/stat\` and subtracts the process's own CPU time: the CPU taken by other processes plus
steal time. Before each pair the bench waits up to a few seconds for the host to go quiet; a
pair in which others still took more than ${s.contentionCores} cores is discarded and re-run
(within a time budget): on 2 cores, one foreign busy thread can put both spinning
workers on the same core, and the raw ping-pong then costs a time slice per round trip
(milliseconds instead of a fraction of a µs), which measures the neighbours, not the code.
"pairs used" gives the pairs counted over the pairs run; every pair, discarded or not, is in
\`bench/results/latest.json\`. If no pair was clean, all are used and the figures and
targets are marked unreliable.

## What is measured

1. **IPI round trip.** The \`ping-pong\` workload on ${s.pingPong.vcpus} vCPUs / ${s.pingPong.pcpus} pCPUs
   (${s.vendor}): vCPU 0 sends a fixed IPI (x2APIC ICR write) to vCPU 1, whose handler answers
   with another IPI; both guests spin between interrupts. Every IPI takes the full emulated
   posted-interrupt path (PIR bit + ON in the descriptor, notification or wake-up of the
   target, PIR to vIRR sync, virtual-interrupt delivery, handler, virtual EOI). Figure:
   \`elapsedMs * 1000 / roundTrips\` µs. Raw baseline: two workers spinning on one word with
   \`Atomics.load\` and answering with \`Atomics.store\`.
2. **Storm throughput.** The \`ipi-storm\` workload with \`burst: 0\` (never HLT), vectors
   0x40..0xdf, on ${s.storm.vcpus.join(', ')} vCPUs, always ${s.storm.pcpus} pCPUs (vCPUs share pCPUs
   round-robin, so more vCPUs than pCPUs is an overcommitted host; the default machine shape
   is ${s.storm.defaultShape}). Figure: \`rate.deliveredPerSec\`; \`lost\` must stay 0. Raw baseline,
   with as many workers as vCPUs: each worker in a loop \`Atomics.or\`s a random bit (of 32)
   into a random other worker's inbox word and drains its own inbox with
   \`Atomics.exchange(inbox, 0)\`, counting the popcount as delivered.
   The last row divides the figure with ${r.storm.collapse.to} vCPUs by the figure with ${r.storm.collapse.from} ("no collapse" check).
3. **Access-layer cost.** One thread, no workers: ns per operation of raw \`Int32Array\` store,
   \`Atomics.load\`, \`Atomics.or\` versus \`Access.writeOnce\` / \`readOnce\` / \`atomicOr\`
   (\`src/mem/access.ts\`) with instrumentation off, with window widening on at probability 0
   (the hooked path: label lookup and a PRNG draw, never a delay), and with \`record: true\`
   (every access appended to the actor's event ring; the ring is emptied between chunks of
   1024 operations so the drop path is never measured). Ratios are against the raw operation.

## Latest run

${r.quick ? '**QUICK run (shortened; figures are rough).**\n\n' : ''}- date: ${r.date}
- node ${m.node}, ${m.platform}/${m.arch}, ${m.cpus} CPUs (${m.cpuModel}), ${m.memGiB.toFixed(1)} GiB
- duration: ${r.durationSec.toFixed(0)} s; 1-minute load average ${m.loadAvgStart[0]?.toFixed(2) ?? '?'} at the start, ${m.loadAvgEnd[0]?.toFixed(2) ?? '?'} at the end

### ${pp!.title}

${mdTable(pp!)}

### ${storm!.title}

${mdTable(storm!)}

### ${acc!.title}

${mdTable(acc!)}

## Targets

${r.targets.map((t) => `- ${targetLine(t)}`).join('\n')}
`;
}
