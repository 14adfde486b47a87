/**
 * hvemu benchmark suite (entry of `npm run bench`):
 *   1. IPI round trip through the posted-interrupt path vs a raw Atomics spin ping-pong;
 *   2. storm throughput with 2, 4, 8, 16 vCPUs on 2 pCPUs vs a raw Atomics channel;
 *   3. access-layer cost (single thread) vs raw Int32Array / Atomics operations;
 *   4. the targets, evaluated as PASS / MISS.
 * Prints tables, writes bench/results/latest.json and regenerates bench/README.md from it.
 *
 * Usage: node dist/bench/ipi.bench.js [--quick]   (or BENCH_QUICK=1)
 *   --quick  short runs for a smoke test; writes bench/results/quick.json, leaves README alone.
 * Exit code 1 if a benchmark failed or an hvemu run was not ok (MISSed targets do not fail it).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { Machine, type RunResult } from '../src/runtime/machine.js';
import { closeSharedPool } from '../src/runtime/pool.js';
import type { WorkloadSpec } from '../src/runtime/protocol.js';
import { measureAccessCost } from './access-cost.js';
import { RawPool, median, type RawTiming } from './harness.js';
import { renderReadme, renderText, type BenchResults, type StormRow, type Target } from './report.js';

const VENDOR = 'vmx' as const;
const PCPUS = 2;
const STORM_VCPUS = [2, 4, 8, 16] as const;
const STORM: WorkloadSpec = { kind: 'ipi-storm', storm: { burst: 0, vectorLo: 0x40, vectorHi: 0xdf } };
const PING_PONG: WorkloadSpec = { kind: 'ping-pong', pinger: 0, ponger: 1, pingVector: 0x40, pongVector: 0x41, spin: true };

interface Settings {
  ppReps: number;
  ppSeconds: number;
  stormReps: number;
  stormSeconds: number;
  raw: RawTiming;
  accessIterations: number;
  accessReps: number;
}

const FULL: Settings = {
  ppReps: 5,
  ppSeconds: 1,
  stormReps: 3,
  stormSeconds: 1,
  raw: { warmupMs: 200, measureMs: 1000, sampleMs: 100 },
  accessIterations: 1e7,
  accessReps: 3,
};
const QUICK: Settings = {
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

function parseArgs(argv: readonly string[]): { quick: boolean } {
  let quick = process.env['BENCH_QUICK'] === '1';
  for (const a of argv) {
    if (a === '--quick') quick = true;
    else if (a === '--help' || a === '-h') {
      process.stdout.write('usage: node dist/bench/ipi.bench.js [--quick]\n');
      process.exit(0);
    } else throw new Error(`unknown option ${a} (usage: ipi.bench.js [--quick])`);
  }
  return { quick };
}

async function runOurs(vcpus: number, seconds: number, workload: WorkloadSpec): Promise<RunResult> {
  const m = Machine.create({ vendor: VENDOR, vcpus, pcpus: PCPUS });
  return await m.run({ seconds, seed: 1, workload }).result;
}

const failureText = (r: RunResult): string =>
  r.failure ? `${r.failure.code}: ${r.failure.message}` : r.violations.length > 0 ? `${r.violations.length} invariant violation(s)` : 'not ok';

/** Alternate which side runs first, so slow drift of the machine does not favour one side. */
async function pair<A, B>(rep: number, raw: () => Promise<A>, ours: () => Promise<B>): Promise<[A, B]> {
  if (rep % 2 === 0) {
    const a = await raw();
    return [a, await ours()];
  }
  const b = await ours();
  return [await raw(), b];
}

async function main(): Promise<void> {
  const { quick } = parseArgs(process.argv.slice(2));
  const S = quick ? QUICK : FULL;
  const started = performance.now();
  const loadAvgStart = os.loadavg();
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
    const ppRaw: number[] = [];
    const ppOurs: number[] = [];
    const ppTrips: number[] = [];
    const ppFailures: string[] = [];
    for (let rep = 0; rep < S.ppReps; rep++) {
      const [rr, or] = await pair(
        rep,
        () => raw.run('pingpong', 2, S.raw),
        () => runOurs(2, S.ppSeconds, PING_PONG),
      );
      const trips = or.figures['roundTrips'] ?? 0;
      const rawUs = 1e6 / rr.medianPerSec;
      const oursUs = trips > 0 ? (or.elapsedMs * 1000) / trips : Infinity;
      ppRaw.push(rawUs);
      ppOurs.push(oursUs);
      ppTrips.push(trips);
      if (!or.ok) ppFailures.push(failureText(or));
      log(`ping-pong ${rep + 1}/${S.ppReps}: raw ${rawUs.toFixed(3)} µs, hvemu ${oursUs.toFixed(1)} µs (${trips} round trips, ok=${or.ok})`);
    }
    const ppRawMed = median(ppRaw);
    const ppOursMed = median(ppOurs);

    // 2. Storm throughput.
    const rows: StormRow[] = [];
    for (const n of STORM_VCPUS) {
      const oursRate: number[] = [];
      const rawRate: number[] = [];
      let oSent = 0;
      let oCoal = 0;
      let oSecs = 0;
      let lost = 0;
      let rSent = 0;
      let rCoal = 0;
      let rSecs = 0;
      const failures: string[] = [];
      for (let rep = 0; rep < S.stormReps; rep++) {
        const [rr, or] = await pair(
          rep,
          () => raw.run('channel', n, S.raw),
          () => runOurs(n, S.stormSeconds, STORM),
        );
        rawRate.push(rr.medianPerSec);
        rSent += rr.window.sent;
        rCoal += rr.window.coalesced;
        rSecs += rr.window.ms / 1000;
        oursRate.push(or.rate.deliveredPerSec);
        const t = or.accounting.totals;
        oSent += t.sent;
        oCoal += t.coalesced;
        oSecs += or.elapsedMs / 1000;
        lost += t.lost;
        if (!or.ok) failures.push(failureText(or));
        log(`storm ${n} vCPUs ${rep + 1}/${S.stormReps}: raw ${(rr.medianPerSec / 1e6).toFixed(2)} M/s, hvemu ${(or.rate.deliveredPerSec / 1e6).toFixed(3)} M/s (lost ${t.lost}, ok=${or.ok})`);
      }
      const oursMed = median(oursRate);
      const rawMed = median(rawRate);
      rows.push({
        vcpus: n,
        pcpus: PCPUS,
        rawWorkers: n,
        ours: { deliveredPerSec: oursMed, reps: oursRate, sentPerSec: oSent / oSecs, coalescedShare: oSent > 0 ? oCoal / oSent : 0, lost, ok: failures.length === 0 && lost === 0, failures },
        raw: { deliveredPerSec: rawMed, reps: rawRate, sentPerSec: rSent / rSecs, coalescedShare: rSent > 0 ? rCoal / rSent : 0 },
        ratio: oursMed / rawMed,
      });
    }

    // 3. Access-layer cost (no workers running: the raw workers idle on their message port).
    log(`access-layer cost (${S.accessIterations.toExponential(0)} ops x ${S.accessReps})`);
    const access = measureAccessCost({ iterations: S.accessIterations, reps: S.accessReps });

    // 4. Targets.
    const first = rows[0]!;
    const last = rows[rows.length - 1]!;
    const ppRatio = ppOursMed / ppRawMed;
    const collapse = { from: first.vcpus, to: last.vcpus, ours: last.ours.deliveredPerSec / first.ours.deliveredPerSec, raw: last.raw.deliveredPerSec / first.raw.deliveredPerSec };
    const target = (id: Target['id'], text: string, value: number, comparison: Target['comparison'], threshold: number): Target => ({
      id,
      text,
      value,
      threshold,
      comparison,
      pass: comparison === '<=' ? value <= threshold : value >= threshold,
    });
    const targets: Target[] = [
      target('round-trip', 'IPI round trip within 2x of the raw ping-pong (hvemu / raw)', ppRatio, '<=', 2),
      target('throughput-2', `storm throughput >= 50% of the raw channel with ${first.vcpus} actors (hvemu / raw)`, first.ratio, '>=', 0.5),
      target('no-collapse', `storm throughput with ${last.vcpus} actors >= 50% of the ${first.vcpus}-actor figure`, collapse.ours, '>=', 0.5),
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
        access: { iterations: access.iterations, reps: access.reps },
      },
      pingPong: {
        ours: { usPerRoundTrip: ppOursMed, reps: ppOurs, roundTrips: ppTrips, ok: ppFailures.length === 0, failures: ppFailures },
        raw: { usPerRoundTrip: ppRawMed, reps: ppRaw },
        ratio: ppRatio,
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

  const benchDir = fileURLToPath(new URL('../../bench/', import.meta.url));
  const resultsDir = `${benchDir}results/`;
  mkdirSync(resultsDir, { recursive: true });
  const jsonPath = `${resultsDir}${quick ? 'quick' : 'latest'}.json`;
  writeFileSync(jsonPath, JSON.stringify(results, null, 2) + '\n');
  log(`wrote ${jsonPath}`);
  if (!quick) {
    writeFileSync(`${benchDir}README.md`, renderReadme(results));
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
