/**
 * `npm run bench:races`: the race catalogue as a benchmark.
 * - every buggy variant: time to first violation over 10 seeds (median, p90, how many found);
 * - every fixed variant: rounds per second and violations over a fixed time budget;
 * - `--long`: every fixed variant for 10^6 rounds or 10 minutes, whichever comes first.
 * Prints a table, writes bench/results/races.json and the "races" section of bench/README.md.
 * Options: --quick (3 seeds, short budgets; writes races-quick.json, leaves README alone);
 * --only id[,id...] (measure only these scenarios; the rows of every other scenario are carried
 * over from the existing bench/results/races.json, each keeping the date it was measured on).
 * Every row names the host CPU it was measured on; without --long the 10^6-round rows of the
 * previous run are carried over (with their date and host).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import Table from 'cli-table3';
import { SCENARIOS } from '../src/scenarios/index.js';
import { runRace } from '../src/scenarios/runner.js';
import { closeSharedPool } from '../src/runtime/pool.js';
import { median } from './harness.js';
import { writeSection } from './readme-sections.js';

interface BuggyRow {
  scenario: string;
  variant: string;
  seeds: number;
  found: number;
  medianMs: number | null;
  p90Ms: number | null;
  invariants: string[];
  /** When the row was measured (ISO date). */
  measured?: string;
  /** The host CPU it was measured on (time to find depends on the microarchitecture and load). */
  host?: string;
}
interface FixedRow {
  scenario: string;
  variant: string;
  iterations: number;
  seconds: number;
  roundsPerSec: number;
  violations: number;
  failure: string | null;
  /** When the row was measured (ISO date). */
  measured?: string;
  /** The host CPU it was measured on. */
  host?: string;
}

interface RacesDoc {
  buggy: BuggyRow[];
  fixed: FixedRow[];
  long: FixedRow[];
  machine: { date: string; host?: string };
}

/** Rows measured before hosts were recorded. */
const HOST_NOT_RECORDED = 'not recorded';

/** The scenario ids of `--only a,b` (validated against the catalogue), or null. */
function onlyIds(argv: string[]): Set<string> | null {
  const i = argv.indexOf('--only');
  if (i < 0) return null;
  const ids = (argv[i + 1] ?? '').split(',').filter(Boolean);
  const known = new Set(SCENARIOS.map((d) => d.id));
  const bad = ids.filter((id) => !known.has(id));
  if (ids.length === 0 || bad.length) {
    process.stderr.write(`races.bench: --only needs scenario ids from: ${[...known].join(', ')}${bad.length ? ` (unknown: ${bad.join(', ')})` : ''}\n`);
    process.exit(2);
  }
  return new Set(ids);
}

function p90(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(0.9 * s.length) - 1)]!;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const quick = argv.includes('--quick');
  const long = argv.includes('--long');
  const only = onlyIds(argv);
  const seeds = quick ? 3 : 10;
  const buggyBudgetS = quick ? 5 : 30;
  const fixedBudgetS = quick ? 1 : 5;
  const started = performance.now();
  const buggy: BuggyRow[] = [];
  const fixed: FixedRow[] = [];
  const longRows: FixedRow[] = [];
  try {
    for (const def of SCENARIOS) {
      if (only && !only.has(def.id)) continue;
      for (const v of def.variants) {
        if (v.buggy) {
          const times: number[] = [];
          const invariants = new Set<string>();
          for (let seed = 1; seed <= seeds; seed++) {
            const r = await runRace(def.id, { variant: v.name, seconds: buggyBudgetS, seed, deadlineMs: 300 });
            if (r.first) {
              times.push(r.first.elapsedMs);
              invariants.add(r.first.invariant);
            }
          }
          buggy.push({ scenario: def.id, variant: v.name, seeds, found: times.length, medianMs: times.length ? median(times) : null, p90Ms: times.length ? p90(times) : null, invariants: [...invariants] });
        } else {
          const runs = long ? [{ rows: longRows, opts: { iterations: 1_000_000 } }] : [];
          runs.unshift({ rows: fixed, opts: { seconds: fixedBudgetS } as never });
          for (const { rows, opts } of runs) {
            const ac = new AbortController();
            const timer = long && rows === longRows ? setTimeout(() => ac.abort(), 600_000) : undefined;
            const r = await runRace(def.id, { variant: v.name, seed: 1, signal: ac.signal, ...(opts as { seconds?: number; iterations?: number }) });
            clearTimeout(timer);
            rows.push({ scenario: def.id, variant: v.name, iterations: r.iterations, seconds: r.elapsedMs / 1000, roundsPerSec: r.iterations / (r.elapsedMs / 1000), violations: r.violations, failure: r.failure ? `${r.failure.code}: ${r.failure.message}` : null });
          }
        }
      }
    }
  } finally {
    await closeSharedPool();
  }
  const seconds = (performance.now() - started) / 1000;
  const host = `${os.cpus()[0]?.model.trim() ?? 'unknown CPU'} (${os.cpus().length} CPUs)`;
  const machine = { node: process.version, cpus: os.cpus().length, host, date: new Date().toISOString(), seconds: +seconds.toFixed(1) };
  for (const r of [...buggy, ...fixed, ...longRows]) {
    r.measured = machine.date;
    r.host = host;
  }
  const benchDir = fileURLToPath(new URL('../../bench/', import.meta.url));
  const prevFile = `${benchDir}results/races.json`;
  if (!quick && existsSync(prevFile)) {
    // Carry over the rows not measured now (other scenarios with --only; the 10^6-round rows
    // without --long), in catalogue order, each with the date and host it was measured on.
    const prev = JSON.parse(readFileSync(prevFile, 'utf8')) as RacesDoc;
    const order = (id: string) => SCENARIOS.findIndex((d) => d.id === id);
    const carry = <R extends { scenario: string; measured?: string; host?: string }>(now: R[], old: R[], keep: (r: R) => boolean) =>
      [...now, ...old.filter(keep).map((r) => ({ ...r, measured: r.measured ?? prev.machine.date, host: r.host ?? prev.machine.host ?? HOST_NOT_RECORDED }))].sort((a, b) => order(a.scenario) - order(b.scenario));
    const notMeasured = (r: { scenario: string }) => only !== null && !only.has(r.scenario);
    buggy.splice(0, buggy.length, ...carry(buggy, prev.buggy, notMeasured));
    fixed.splice(0, fixed.length, ...carry(fixed, prev.fixed, notMeasured));
    longRows.splice(0, longRows.length, ...carry(longRows, prev.long ?? [], (r) => !long || notMeasured(r)));
  }
  const day = (r: { measured?: string }) => (r.measured ?? machine.date).slice(0, 10);
  const tty = process.stdout.isTTY === true;
  const mk = (head: string[]) => new Table(tty ? { head } : { head, style: { head: [], border: [] } });
  const t1 = mk(['scenario', 'buggy variant', 'found', 'median ms to 1st violation', 'p90 ms', 'invariant']);
  for (const b of buggy) t1.push([b.scenario, b.variant, `${b.found}/${b.seeds}`, b.medianMs?.toFixed(1) ?? '-', b.p90Ms?.toFixed(1) ?? '-', b.invariants.join(', ')]);
  const t2 = mk(['scenario', 'fixed variant', 'rounds', 'seconds', 'rounds/s', 'violations']);
  for (const f of [...fixed, ...longRows]) t2.push([f.scenario, f.variant, f.iterations.toLocaleString('en-US'), f.seconds.toFixed(1), Math.round(f.roundsPerSec).toLocaleString('en-US'), String(f.violations) + (f.failure ? ` (${f.failure})` : '')]);
  process.stdout.write(`${t1.toString()}\n${t2.toString()}\n(${seconds.toFixed(0)} s)\n`);
  mkdirSync(`${benchDir}results`, { recursive: true });
  const doc = { machine, seeds, buggyBudgetS, fixedBudgetS, buggy, fixed, long: longRows };
  writeFileSync(`${benchDir}results/${quick ? 'races-quick' : 'races'}.json`, JSON.stringify(doc, null, 2) + '\n');
  if (!quick) {
    const md: string[] = [
      '## Race catalogue (`npm run bench:races`)',
      '',
      `Generated by bench/races.bench.ts on ${machine.date} (node ${machine.node}, ${machine.host}, ${machine.seconds} s). Every buggy variant runs ${seeds} seeds (1..${seeds}) with the scenario's window widening and a ${buggyBudgetS} s budget each; every fixed variant runs ${fixedBudgetS} s${longRows.length ? ', then 10^6 rounds or 10 minutes (`npm run bench:races -- --long`)' : ''}.`,
      '',
      'Time to first violation is a property of the host as much as of the race: store-buffering windows differ by CPU microarchitecture, and a loaded host runs fewer rounds per second. Each row names the host CPU it was measured on; expect other figures elsewhere.',
      '',
      '| scenario | buggy variant | found | median ms to first violation | p90 ms | invariant | measured | host CPU |',
      '|---|---|---|---|---|---|---|---|',
      ...buggy.map((b) => `| ${b.scenario} | ${b.variant} | ${b.found}/${b.seeds} | ${b.medianMs?.toFixed(1) ?? '-'} | ${b.p90Ms?.toFixed(1) ?? '-'} | ${b.invariants.join(', ')} | ${day(b)} | ${b.host ?? host} |`),
      '',
      '| scenario | fixed variant | rounds | seconds | rounds/s | violations | measured | host CPU |',
      '|---|---|---|---|---|---|---|---|',
      ...[...fixed, ...longRows].map((f) => `| ${f.scenario} | ${f.variant} | ${f.iterations.toLocaleString('en-US')} | ${f.seconds.toFixed(1)} | ${Math.round(f.roundsPerSec).toLocaleString('en-US')} | ${f.violations}${f.failure ? ` (${f.failure})` : ''} | ${day(f)} | ${f.host ?? host} |`),
      '',
      ...(only ? [`This run measured ${[...only].join(', ')} (\`npm run bench:races -- --only ${[...only].join(',')}${long ? ' --long' : ''}\`); the other rows are carried over from earlier runs (column "measured").`, ''] : []),
      ...(!long && longRows.length ? ['The 10^6-round rows are carried over from the last `--long` run (columns "measured" and "host CPU").', ''] : []),
      'Targets (issues 3–5): median time to first violation under 1 s for every buggy variant: ' +
        (buggy.every((b) => b.medianMs !== null && b.medianMs < 1000 && b.found === b.seeds)
          ? 'PASS'
          : `MISS (${buggy
              .filter((b) => !(b.medianMs !== null && b.medianMs < 1000 && b.found === b.seeds))
              .map((b) => `${b.scenario}/${b.variant}: ${b.found}/${b.seeds} found${b.medianMs !== null ? `, median ${b.medianMs.toFixed(0)} ms` : ''}`)
              .join('; ')})`) +
        '; zero violations for every fixed variant: ' +
        ([...fixed, ...longRows].every((f) => f.violations === 0 && !f.failure) ? 'PASS' : 'MISS') +
        (longRows.length ? '' : ' (short budget; the 10^6-round run is `--long`)') +
        '.',
    ];
    writeSection(`${benchDir}README.md`, 'races', md.join('\n'));
  }
}

await main();
