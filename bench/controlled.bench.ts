/**
 * `npm run bench:controlled`: the race catalogue in controlled mode.
 * - every buggy variant: schedules until the first violation (strategy random, one round per
 *   schedule) over seeds 1..SEEDS — the median is a property of the search, not of the host, so
 *   it is the same on every machine; the wall-clock time is the host's;
 * - every buggy variant again with PCT (d = 2) over the same seeds: schedules and seconds to the
 *   first violation (the issue's target: PCT finds each store-buffering variant in < 5 s median);
 * - every fixed variant: FIXED schedules, violations (must be 0), and scheduling steps per second
 *   (the controlled runtime's speed on this host, with the scenario's own actor count).
 * Prints a table, writes bench/results/controlled.json and the "controlled" section of
 * bench/README.md. Options: --quick (2 seeds, 20 fixed schedules; leaves README alone).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import Table from 'cli-table3';
import { SCENARIOS } from '../src/scenarios/index.js';
import { runControlledRace } from '../src/scenarios/controlled.js';
import { variantExpected } from '../src/scenarios/define.js';
import { closeSharedPool } from '../src/runtime/pool.js';
import { median } from './harness.js';
import { writeSection } from './readme-sections.js';

interface Row {
  scenario: string;
  variant: string;
  buggy: boolean;
  actors: number;
  /** Buggy: schedules to the first violation per seed (null: none within the budget). */
  found: (number | null)[];
  /** Buggy, PCT d = 2: schedules and seconds to the first violation per seed (null: none). */
  pct: { schedules: number | null; seconds: number }[];
  invariants: string[];
  schedules: number;
  steps: number;
  seconds: number;
  violations: number;
}

async function main(): Promise<void> {
  const quick = process.argv.includes('--quick');
  const seeds = quick ? 2 : 5;
  const buggyBudget = 2000;
  const fixedSchedules = quick ? 20 : 300;
  const rows: Row[] = [];
  const started = performance.now();
  try {
    for (const def of SCENARIOS) {
      for (const v of def.variants) {
        const actors = def.roles({ variant: v, vcpus: def.vcpus.default, seed: 1 }).length;
        const fails = variantExpected(v) === 'fails';
        const row: Row = { scenario: def.id, variant: v.name, buggy: fails, actors, found: [], pct: [], invariants: [], schedules: 0, steps: 0, seconds: 0, violations: 0 };
        const runs = fails ? Array.from({ length: seeds }, (_, i) => ({ seed: i + 1, schedules: buggyBudget })) : [{ seed: 1, schedules: fixedSchedules }];
        for (const { seed, schedules } of runs) {
          const t0 = performance.now();
          const r = await runControlledRace(def.id, { variant: v.name, strategy: 'random', seed, schedules, iterations: 1 });
          row.seconds += (performance.now() - t0) / 1000;
          row.schedules += r.schedules;
          row.steps += r.steps;
          if (r.first) {
            row.violations++;
            if (!row.invariants.includes(r.first.invariant)) row.invariants.push(r.first.invariant);
          }
          if (fails) row.found.push(r.first ? r.schedules : null);
        }
        for (let seed = 1; fails && seed <= seeds; seed++) {
          const t0 = performance.now();
          const r = await runControlledRace(def.id, { variant: v.name, strategy: 'pct', depth: 2, seed, schedules: buggyBudget, iterations: 1 });
          row.pct.push({ schedules: r.first ? r.schedules : null, seconds: (performance.now() - t0) / 1000 });
        }
        rows.push(row);
        process.stderr.write(`${def.id}/${v.name}: ${row.schedules} schedules, ${row.violations} violations\n`);
      }
    }
  } finally {
    await closeSharedPool();
  }
  const host = `${os.cpus()[0]?.model.trim() ?? 'unknown CPU'} (${os.cpus().length} CPUs)`;
  const date = new Date().toISOString();
  const seconds = (performance.now() - started) / 1000;
  const med = (r: Row) => {
    const xs = r.found.filter((x): x is number => x !== null);
    return xs.length ? median(xs) : null;
  };
  const stepsPerS = (r: Row) => Math.round(r.steps / r.seconds);
  const pctFound = (r: Row) => r.pct.filter((x) => x.schedules !== null);
  const pctMed = (r: Row) => (pctFound(r).length ? `${median(pctFound(r).map((x) => x.schedules!))} / ${median(pctFound(r).map((x) => x.seconds)).toFixed(2)} s` : '-');
  const pctCell = (r: Row) => (r.buggy ? `${pctFound(r).length}/${r.pct.length}, ${pctMed(r)}` : '-');
  const tty = process.stdout.isTTY === true;
  const mk = (head: string[]) => new Table(tty ? { head } : { head, style: { head: [], border: [] } });
  const t = mk(['scenario', 'variant', 'actors', 'found', 'median schedules to 1st violation', 'pct d=2: found, median schedules / s', 'violations', 'steps/s']);
  for (const r of rows) t.push([r.scenario, r.variant, String(r.actors), r.buggy ? `${r.found.filter((x) => x !== null).length}/${r.found.length}` : '-', r.buggy ? (med(r)?.toString() ?? '-') : `${r.schedules} schedules`, pctCell(r), String(r.violations), stepsPerS(r).toLocaleString('en-US')]);
  process.stdout.write(`${t.toString()}\n(${seconds.toFixed(0)} s)\n`);
  const benchDir = fileURLToPath(new URL('../../bench/', import.meta.url));
  mkdirSync(`${benchDir}results`, { recursive: true });
  writeFileSync(`${benchDir}results/${quick ? 'controlled-quick' : 'controlled'}.json`, JSON.stringify({ host, date, node: process.version, seeds, buggyBudget, fixedSchedules, rows }, null, 2) + '\n');
  if (quick) return;
  const md = [
    '## Race catalogue in controlled mode (`npm run bench:controlled`)',
    '',
    `Generated by bench/controlled.bench.ts on ${date} (node ${process.version}, ${host}, ${seconds.toFixed(0)} s). Strategy random, one round per schedule. Every buggy variant: seeds 1..${seeds}, up to ${buggyBudget} schedules each; the schedule count to the first violation is a property of the search (the same on any host); the time is this host's. Every fixed variant: ${fixedSchedules} schedules, which must show no violation. steps/s is the controlled runtime's speed here (one labelled access or store-buffer drain per step, with the scenario's actors on worker threads).`,
    '',
    `PCT: every buggy variant again with \`--strategy pct --depth 2\` over the same seeds and budget: how many seeds found it, and the median schedules and seconds to the first violation among those.`,
    '',
    '| scenario | variant | actors | found | median schedules to first violation | pct d=2: found, median schedules / s | violations | steps/s |',
    '|---|---|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.scenario} | ${r.variant} | ${r.actors} | ${r.buggy ? `${r.found.filter((x) => x !== null).length}/${r.found.length}` : '-'} | ${r.buggy ? (med(r)?.toString() ?? '-') : `(${r.schedules} schedules)`} | ${pctCell(r)} | ${r.violations} | ${stepsPerS(r).toLocaleString('en-US')} |`),
    '',
  ];
  writeSection(`${benchDir}README.md`, 'controlled', md.join('\n'));
}

await main();
