/**
 * hvemu benchmark suite (entry of `npm run bench`):
 *   1. IPI round trip through the posted-interrupt path vs a raw Atomics spin ping-pong;
 *   2. storm throughput with 2, 4, 8, 16 vCPUs on 2 pCPUs vs a raw Atomics channel;
 *   3. access-layer cost (single thread) vs raw Int32Array / Atomics operations;
 *   4. the targets, evaluated as PASS / MISS.
 * Prints tables, writes bench/results/latest.json and regenerates bench/README.md from it.
 *
 * Usage: node dist/bench/ipi.bench.js [--quick | --readme]
 *   --quick   short runs for a smoke test (or BENCH_QUICK=1); writes bench/results/quick.json,
 *             leaves README alone.
 *   --readme  only regenerate bench/README.md from bench/results/latest.json.
 * Exit code 1 if a benchmark failed or an hvemu run was not ok (MISSed targets do not fail it).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { writeSection } from './readme-sections.js';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { Machine, type RunResult } from '../src/runtime/machine.js';
import { closeSharedPool } from '../src/runtime/pool.js';
import type { WorkloadSpec } from '../src/runtime/protocol.js';
import { measureAccessCost } from './access-cost.js';
import { RawPool, median, type RawRunResult, type RawTiming } from './harness.js';
import { probeHostLoad, waitForQuietHost, type HostLoad } from './hostload.js';
import { renderReadme, renderText, type BenchResults, type PairSummary, type StormRow, type Target } from './report.js';

const VENDOR = 'vmx' as const;
const PCPUS = 2;
/** A pair is discarded when other processes (plus steal) took more than this many cores. */
const CONTENTION_CORES = 0.25;
/** Longest wait for a quiet host before one pair (only while the time budget lasts). */
const QUIET_WAIT_MS = 3000;
const STORM_VCPUS = [2, 4, 8, 16] as const;
const STORM: WorkloadSpec = { kind: 'ipi-storm', storm: { burst: 0, vectorLo: 0x40, vectorHi: 0xdf } };
const PING_PONG: WorkloadSpec = { kind: 'ping-pong', pinger: 0, ponger: 1, pingVector: 0x40, pongVector: 0x41, spin: true };

interface Settings {
  /** Extra pairs (re-runs of contended ones) start only before this many seconds. */
  budgetSec: number;
  ppReps: number;
  ppSeconds: number;
  stormReps: number;
  stormSeconds: number;
  raw: RawTiming;
  accessIterations: number;
  accessReps: number;
}

const FULL: Settings = {
  budgetSec: 90,
  ppReps: 5,
  ppSeconds: 1,
  stormReps: 3,
  stormSeconds: 1,
  raw: { warmupMs: 200, measureMs: 1000, sampleMs: 100 },
  accessIterations: 1e7,
  accessReps: 3,
};
const QUICK: Settings = {
  budgetSec: 10,
  ppReps: 2,
  ppSeconds: 0.25,
  stormReps: 1,
  stormSeconds: 0.25,
  raw: { warmupMs: 50, measureMs: 250, sampleMs: 50 },
  accessIterations: 1e6,
  accessReps: 1,
};

const log = (msg: string): void => {
  process.stderr.write(`[bench] ${msg}\n`);
};

const USAGE = 'usage: node dist/bench/ipi.bench.js [--quick | --readme]';

function parseArgs(argv: readonly string[]): { quick: boolean; readmeOnly: boolean } {
  let quick = process.env['BENCH_QUICK'] === '1';
  let readmeOnly = false;
  for (const a of argv) {
    if (a === '--quick') quick = true;
    else if (a === '--readme') readmeOnly = true;
    else if (a === '--help' || a === '-h') {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    } else throw new Error(`unknown option ${a} (${USAGE})`);
  }
  return { quick, readmeOnly };
}

async function runOurs(vcpus: number, seconds: number, workload: WorkloadSpec): Promise<RunResult> {
  const m = Machine.create({ vendor: VENDOR, vcpus, pcpus: PCPUS });
  return await m.run({ seconds, seed: 1, workload }).result;
}

const failureText = (r: RunResult): string =>
  r.failure ? `${r.failure.code}: ${r.failure.message}` : r.violations.length > 0 ? `${r.violations.length} invariant violation(s)` : 'not ok';

interface Attempt<A, B> {
  raw: A;
  ours: B;
  rawLoad: HostLoad;
  oursLoad: HostLoad;
  contended: boolean;
}

/**
 * Run raw/hvemu pairs until `reps` uncontended pairs were measured, at most 2 x reps pairs, and
 * pairs beyond `reps` only while the time budget lasts; while it lasts, each pair first waits
 * (briefly) for other processes to go quiet. The side that runs first alternates,
 * so slow drift of the machine does not favour one side.
 */
async function measurePairs<A, B>(
  what: string,
  reps: number,
  raw: () => Promise<A>,
  ours: () => Promise<B>,
  describe: (a: Attempt<A, B>) => string,
  budgetLeft: () => boolean,
): Promise<{ used: Attempt<A, B>[]; all: Attempt<A, B>[]; contended: boolean }> {
  const all: Attempt<A, B>[] = [];
  const timed = async <T>(f: () => Promise<T>): Promise<[T, HostLoad]> => {
    const end = probeHostLoad();
    const v = await f();
    return [v, end()];
  };
  while (all.filter((a) => !a.contended).length < reps && all.length < 2 * reps && (all.length < reps || budgetLeft())) {
    if (budgetLeft()) {
      const q = await waitForQuietHost(CONTENTION_CORES, QUIET_WAIT_MS);
      if (q.waitedMs > 500) log(`${what}: waited ${(q.waitedMs / 1000).toFixed(1)} s for other processes to quiet down${q.quiet ? '' : ' (they did not)'}`);
    }
    let r: [A, HostLoad];
    let o: [B, HostLoad];
    if (all.length % 2 === 0) {
      r = await timed(raw);
      o = await timed(ours);
    } else {
      o = await timed(ours);
      r = await timed(raw);
    }
    const busy = (l: HostLoad) => l.externalCores !== null && l.externalCores > CONTENTION_CORES;
    const a: Attempt<A, B> = { raw: r[0], rawLoad: r[1], ours: o[0], oursLoad: o[1], contended: busy(r[1]) || busy(o[1]) };
    all.push(a);
    const ext = (l: HostLoad) => (l.externalCores === null ? '?' : l.externalCores.toFixed(2));
    log(`${what} pair ${all.length}: ${describe(a)}; others used ${ext(a.rawLoad)} / ${ext(a.oursLoad)} cores${a.contended ? ' -> contended, discarded' : ''}`);
  }
  const clean = all.filter((a) => !a.contended);
  return clean.length > 0 ? { used: clean, all, contended: false } : { used: all, all, contended: true };
}

function pairing<A, B>(m: { used: Attempt<A, B>[]; all: Attempt<A, B>[]; contended: boolean }, rawFig: (a: A) => number, oursFig: (b: B) => number): PairSummary {
  return {
    pairs: m.all.map((a) => ({
      raw: rawFig(a.raw),
      ours: oursFig(a.ours),
      rawExternalCores: a.rawLoad.externalCores,
      oursExternalCores: a.oursLoad.externalCores,
      used: m.used.includes(a),
    })),
    used: m.used.length,
    contended: m.contended,
  };
}

async function main(): Promise<void> {
  const { quick, readmeOnly } = parseArgs(process.argv.slice(2));
  const benchDir = fileURLToPath(new URL('../../bench/', import.meta.url));
  if (readmeOnly) {
    const latest = JSON.parse(readFileSync(`${benchDir}results/latest.json`, 'utf8')) as BenchResults;
    writeSection(`${benchDir}README.md`, 'ipi', renderReadme(latest));
    log(`wrote ${benchDir}README.md from results/latest.json (${latest.date})`);
    return;
  }
  const S = quick ? QUICK : FULL;
  const started = performance.now();
  const loadAvgStart = os.loadavg();
  const budgetLeft = () => performance.now() - started < S.budgetSec * 1000;
  const maxVcpus = Math.max(...STORM_VCPUS);
  let allOk: boolean;

  log(`starting ${maxVcpus} raw workers`);
  const raw = await RawPool.create(maxVcpus);
  let results: BenchResults;
  try {
    // Warm-up: the biggest machine first, so the shared actor pool is created once at full size.
    log('warm-up');
    await runOurs(maxVcpus, 0.2, STORM);
    await runOurs(2, 0.2, PING_PONG);
    const warmRaw: RawTiming = { warmupMs: 50, measureMs: 100, sampleMs: 50 };
    await raw.run('pingpong', 2, warmRaw);
    await raw.run('channel', maxVcpus, warmRaw);

    // 1. Round trip.
    const ppUs = (o: RunResult) => {
      const trips = o.figures['roundTrips'] ?? 0;
      return trips > 0 ? (o.elapsedMs * 1000) / trips : Infinity;
    };
    const rawUs = (r: RawRunResult) => 1e6 / r.medianPerSec;
    const pp = await measurePairs(
      'ping-pong',
      S.ppReps,
      () => raw.run('pingpong', 2, S.raw),
      () => runOurs(2, S.ppSeconds, PING_PONG),
      (a) => `raw ${rawUs(a.raw).toFixed(3)} µs, hvemu ${ppUs(a.ours).toFixed(1)} µs (${a.ours.figures['roundTrips'] ?? 0} round trips, ok=${a.ours.ok})`,
      budgetLeft,
    );
    const ppRaw = pp.used.map((a) => rawUs(a.raw));
    const ppOurs = pp.used.map((a) => ppUs(a.ours));
    const ppFailures = pp.all.filter((a) => !a.ours.ok).map((a) => failureText(a.ours));
    const ppRawMed = median(ppRaw);
    const ppOursMed = median(ppOurs);

    // 2. Storm throughput.
    const rows: StormRow[] = [];
    for (const n of STORM_VCPUS) {
      const st = await measurePairs(
        `storm ${n} vCPUs`,
        S.stormReps,
        () => raw.run('channel', n, S.raw),
        () => runOurs(n, S.stormSeconds, STORM),
        (a) => `raw ${(a.raw.medianPerSec / 1e6).toFixed(2)} M/s, hvemu ${(a.ours.rate.deliveredPerSec / 1e6).toFixed(3)} M/s (lost ${a.ours.accounting.totals.lost}, ok=${a.ours.ok})`,
        budgetLeft,
      );
      const sum = (xs: number[]) => xs.reduce((x, y) => x + y, 0);
      const oSent = sum(st.used.map((a) => a.ours.accounting.totals.sent));
      const oCoal = sum(st.used.map((a) => a.ours.accounting.totals.coalesced));
      const oSecs = sum(st.used.map((a) => a.ours.elapsedMs / 1000));
      const rSent = sum(st.used.map((a) => a.raw.window.sent));
      const rCoal = sum(st.used.map((a) => a.raw.window.coalesced));
      const rSecs = sum(st.used.map((a) => a.raw.window.ms / 1000));
      // Correctness is judged over every run, used or discarded.
      const lost = sum(st.all.map((a) => a.ours.accounting.totals.lost));
      const failures = st.all.filter((a) => !a.ours.ok).map((a) => failureText(a.ours));
      const oursRate = st.used.map((a) => a.ours.rate.deliveredPerSec);
      const rawRate = st.used.map((a) => a.raw.medianPerSec);
      const oursMed = median(oursRate);
      const rawMed = median(rawRate);
      rows.push({
        vcpus: n,
        pcpus: PCPUS,
        rawWorkers: n,
        ours: { deliveredPerSec: oursMed, reps: oursRate, sentPerSec: oSent / oSecs, coalescedShare: oSent > 0 ? oCoal / oSent : 0, lost, ok: failures.length === 0 && lost === 0, failures },
        raw: { deliveredPerSec: rawMed, reps: rawRate, sentPerSec: rSent / rSecs, coalescedShare: rSent > 0 ? rCoal / rSent : 0 },
        ratio: oursMed / rawMed,
        pairing: pairing(st, (r) => r.medianPerSec, (o) => o.rate.deliveredPerSec),
      });
    }

    // 3. Access-layer cost (no workers running: the raw workers idle on their message port).
    if (budgetLeft()) await waitForQuietHost(CONTENTION_CORES, QUIET_WAIT_MS);
    log(`access-layer cost (${S.accessIterations.toExponential(0)} ops x ${S.accessReps})`);
    const access = measureAccessCost({ iterations: S.accessIterations, reps: S.accessReps });

    // 4. Targets.
    const first = rows[0]!;
    const last = rows[rows.length - 1]!;
    const ppRatio = ppOursMed / ppRawMed;
    const collapse = { from: first.vcpus, to: last.vcpus, ours: last.ours.deliveredPerSec / first.ours.deliveredPerSec, raw: last.raw.deliveredPerSec / first.raw.deliveredPerSec };
    const target = (id: Target['id'], text: string, value: number, comparison: Target['comparison'], threshold: number, unreliable: boolean): Target => ({
      id,
      text,
      value,
      threshold,
      comparison,
      pass: comparison === '<=' ? value <= threshold : value >= threshold,
      unreliable,
    });
    const targets: Target[] = [
      target('round-trip', 'IPI round trip within 2x of the raw ping-pong (hvemu / raw)', ppRatio, '<=', 2, pp.contended),
      target('throughput-2', `storm throughput >= 50% of the raw channel with ${first.vcpus} actors (hvemu / raw)`, first.ratio, '>=', 0.5, first.pairing.contended),
      target('no-collapse', `storm throughput with ${last.vcpus} actors >= 50% of the ${first.vcpus}-actor figure`, collapse.ours, '>=', 0.5, first.pairing.contended || last.pairing.contended),
    ];

    allOk = ppFailures.length === 0 && rows.every((r) => r.ours.ok);
    const cpus = os.cpus();
    results = {
      schema: 1,
      date: new Date().toISOString(),
      quick,
      command: quick ? 'node dist/bench/ipi.bench.js --quick' : 'npm run bench',
      durationSec: (performance.now() - started) / 1000,
      machine: {
        node: process.versions.node,
        platform: process.platform,
        arch: process.arch,
        cpus: cpus.length,
        cpuModel: cpus[0]?.model.trim() ?? 'unknown',
        memGiB: os.totalmem() / 2 ** 30,
        loadAvgStart,
        loadAvgEnd: os.loadavg(),
      },
      settings: {
        vendor: VENDOR,
        pingPong: { vcpus: 2, pcpus: PCPUS, reps: S.ppReps, seconds: S.ppSeconds },
        storm: { pcpus: PCPUS, vcpus: [...STORM_VCPUS], reps: S.stormReps, seconds: S.stormSeconds, burst: 0, defaultShape: '4 vCPUs on 2 pCPUs' },
        raw: { warmupMs: S.raw.warmupMs, sampleMs: S.raw.sampleMs },
        contentionCores: CONTENTION_CORES,
        access: { iterations: access.iterations, reps: access.reps },
      },
      pingPong: {
        ours: { usPerRoundTrip: ppOursMed, reps: ppOurs, roundTrips: pp.used.map((a) => a.ours.figures['roundTrips'] ?? 0), ok: ppFailures.length === 0, failures: ppFailures },
        raw: { usPerRoundTrip: ppRawMed, reps: ppRaw },
        ratio: ppRatio,
        pairing: pairing(pp, rawUs, ppUs),
      },
      storm: { rows, collapse },
      access,
      targets,
    };
  } finally {
    await raw.close();
    await closeSharedPool();
  }

  process.stdout.write(renderText(results, process.stdout.isTTY === true) + '\n');

  const resultsDir = `${benchDir}results/`;
  mkdirSync(resultsDir, { recursive: true });
  const jsonPath = `${resultsDir}${quick ? 'quick' : 'latest'}.json`;
  writeFileSync(jsonPath, JSON.stringify(results, null, 2) + '\n');
  log(`wrote ${jsonPath}`);
  if (!quick) {
    writeSection(`${benchDir}README.md`, 'ipi', renderReadme(results));
    log(`wrote ${benchDir}README.md`);
  }
  if (!allOk) {
    log('an hvemu run was not ok (see failures in the JSON)');
    process.exitCode = 1;
  }
}

main().catch(async (err: unknown) => {
  process.stderr.write(`[bench] failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
  await closeSharedPool().catch(() => undefined);
});
