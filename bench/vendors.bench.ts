/**
 * Per-vendor figures of the interrupt path (`npm run bench` runs this after ipi.bench):
 * for every machine vendor, the IPI round trip (ping-pong, 2 vCPUs / 2 pCPUs) and the storm
 * throughput (4 vCPUs on 2 pCPUs, never HLT), each as a ratio to a raw baseline measured in the
 * same process (bare Atomics ping-pong between 2 workers; the Atomics.or / exchange channel between
 * 4 workers). Writes bench/results/vendors.json and the "vendors" section of bench/README.md.
 * Options: --quick (short; writes vendors-quick.json, leaves README alone).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import Table from 'cli-table3';
import { Machine } from '../src/runtime/machine.js';
import { closeSharedPool } from '../src/runtime/pool.js';
import { VENDORS } from '../src/kvm/vendors.js';
import { RawPool, median } from './harness.js';
import { writeSection } from './readme-sections.js';

interface VendorRow {
  vendor: string;
  roundTripUs: number;
  rawRoundTripUs: number;
  rtRatio: number;
  deliveredPerSec: number;
  rawDeliveredPerSec: number;
  stormRatio: number;
  lost: number;
  ok: boolean;
}

async function main(): Promise<void> {
  const quick = process.argv.includes('--quick');
  const reps = quick ? 1 : 3;
  const seconds = quick ? 0.25 : 1;
  const raw = await RawPool.create(4);
  const rows: VendorRow[] = [];
  const started = performance.now();
  try {
    for (const vendor of VENDORS) {
      const rt: number[] = [];
      const rawRt: number[] = [];
      const thr: number[] = [];
      const rawThr: number[] = [];
      let lost = 0;
      let ok = true;
      for (let i = 0; i < reps; i++) {
        const timing = { warmupMs: 100, measureMs: seconds * 1000, sampleMs: 100, seed: i + 1 };
        const rp = await raw.run('pingpong', 2, timing);
        rawRt.push(1e6 / rp.medianPerSec);
        const pp = await Machine.create({ vendor, vcpus: 2, pcpus: 2 })
          .run({ seconds, seed: i + 1, workload: { kind: 'ping-pong', pinger: 0, ponger: 1, pingVector: 0x40, pongVector: 0x41, spin: true } })
          .result;
        rt.push((pp.elapsedMs * 1000) / Math.max(1, pp.figures.roundTrips ?? 0));
        ok &&= pp.ok;
        const rc = await raw.run('channel', 4, timing);
        rawThr.push(rc.medianPerSec);
        const st = await Machine.create({ vendor, vcpus: 4, pcpus: 2 })
          .run({ seconds, seed: i + 1, workload: { kind: 'ipi-storm', storm: { burst: 0, vectorLo: 0x40, vectorHi: 0xdf } } })
          .result;
        thr.push(st.rate.deliveredPerSec);
        lost += st.accounting.totals.lost;
        ok &&= st.ok;
      }
      const r: VendorRow = {
        vendor,
        roundTripUs: median(rt),
        rawRoundTripUs: median(rawRt),
        rtRatio: median(rt) / median(rawRt),
        deliveredPerSec: median(thr),
        rawDeliveredPerSec: median(rawThr),
        stormRatio: median(thr) / median(rawThr),
        lost,
        ok,
      };
      rows.push(r);
    }
  } finally {
    await raw.close();
    await closeSharedPool();
  }
  const secs = (performance.now() - started) / 1000;
  const tty = process.stdout.isTTY === true;
  const head = ['vendor', 'µs / round trip', 'raw µs', 'ratio', 'storm delivered/s (4 vCPUs)', 'raw channel/s (4 workers)', 'ratio', 'lost', 'ok'];
  const t = new Table(tty ? { head } : { head, style: { head: [], border: [] } });
  const k = (n: number) => (n >= 1e6 ? `${(n / 1e6).toFixed(2)} M` : `${(n / 1e3).toFixed(1)} k`);
  for (const r of rows) t.push([r.vendor, r.roundTripUs.toFixed(2), r.rawRoundTripUs.toFixed(3), `${r.rtRatio.toFixed(1)}x`, k(r.deliveredPerSec), k(r.rawDeliveredPerSec), `${r.stormRatio.toFixed(2)}x`, String(r.lost), r.ok ? 'yes' : 'NO']);
  process.stdout.write(`${t.toString()}\n(${secs.toFixed(0)} s)\n`);
  const benchDir = fileURLToPath(new URL('../../bench/', import.meta.url));
  mkdirSync(`${benchDir}results`, { recursive: true });
  const machine = { node: process.version, cpus: os.cpus().length, date: new Date().toISOString(), seconds: +secs.toFixed(1) };
  writeFileSync(`${benchDir}results/${quick ? 'vendors-quick' : 'vendors'}.json`, JSON.stringify({ machine, reps, seconds, rows }, null, 2) + '\n');
  if (!quick) {
    const md = [
      '## Per vendor (`npm run bench`, bench/vendors.bench.ts)',
      '',
      `Generated on ${machine.date} (node ${machine.node}, ${machine.cpus} CPUs, ${machine.seconds} s): median of ${reps} x ${seconds} s per cell; raw baselines run in the same process.`,
      '',
      '| vendor | µs / round trip | raw ping-pong µs | ratio | storm delivered/s (4 vCPUs, 2 pCPUs) | raw channel/s (4 workers) | ratio | lost |',
      '|---|---|---|---|---|---|---|---|',
      ...rows.map((r) => `| ${r.vendor} | ${r.roundTripUs.toFixed(2)} | ${r.rawRoundTripUs.toFixed(3)} | ${r.rtRatio.toFixed(1)}x | ${k(r.deliveredPerSec)} | ${k(r.rawDeliveredPerSec)} | ${r.stormRatio.toFixed(2)}x | ${r.lost} |`),
    ];
    writeSection(`${benchDir}README.md`, 'vendors', md.join('\n'));
  }
  if (!rows.every((r) => r.ok)) process.exitCode = 1;
}

await main();
