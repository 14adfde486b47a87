/**
 * `hvemu campaign` and `hvemu merge`: the CLI side of campaigns (scenarios/campaign.ts has the
 * matrix, shards, runs and merge; scenarios/junit.ts the JUnit XML). Every flag and output path
 * is checked before any work; the result goes to stdout before any output file is written, and a
 * failed write is reported after it without changing the exit code. Progress goes to stderr (a
 * bar on a TTY; otherwise a start line and one line per unexpected cell).
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import cliProgress from 'cli-progress';
import Table from 'cli-table3';
import { closeSharedPool } from '../runtime/pool.js';
import { checkOutputPath } from '../trace/output-path.js';
import { badParam } from '../errors.js';
import { mergeCampaigns, planCampaign, runCampaign, writeCampaignFile, type CampaignCell, type CampaignDoc, type CampaignOptions, type CampaignParams, type CampaignPlan, type Shard } from '../scenarios/campaign.js';
import { DEFAULT_BUGGY_SCHEDULES, DEFAULT_CONTROLLED_ROUNDS, DEFAULT_FREE_SECONDS, DEFAULT_SCHEDULES } from '../scenarios/campaign.js';
import { campaignJunit } from '../scenarios/junit.js';
import { parseIntOption, parseNumberOption } from './args.js';

/** Exit codes (as main.ts's EXIT): every cell as expected, an unexpected cell. */
const EXIT_OK = 0;
const EXIT_FINDING = 1;

/** Unexpected cells listed in the text report (all of them are in --json and --junit). */
const LIST_UNEXPECTED = 20;

const out = (s: string) => process.stdout.write(s + '\n');
const err = (s: string) => process.stderr.write(s + '\n');

/** The flags of `hvemu campaign` as commander gives them. */
export interface CampaignFlags {
  scenarios: string;
  variants: string;
  seeds: string;
  mode: string;
  iterations?: string;
  schedules?: string;
  buggySchedules?: string;
  seconds?: string;
  shard?: string;
  json?: boolean;
  junit?: string;
  out?: string;
  dryRun?: boolean;
}

/** The flags of `hvemu merge`. */
export interface MergeFlags {
  json?: boolean;
  junit?: string;
  out?: string;
}

/** Campaign options from the flags (numbers parsed strictly, naming the flag). */
function campaignOptions(f: CampaignFlags): CampaignOptions {
  const o: CampaignOptions = { scenarios: f.scenarios, variants: f.variants, seeds: f.seeds, mode: f.mode };
  if (f.iterations !== undefined) o.iterations = parseIntOption('--iterations', f.iterations);
  if (f.schedules !== undefined) o.schedules = parseIntOption('--schedules', f.schedules);
  if (f.buggySchedules !== undefined) o.buggySchedules = parseIntOption('--buggy-schedules', f.buggySchedules);
  if (f.seconds !== undefined) o.seconds = parseNumberOption('--seconds', f.seconds);
  if (f.shard !== undefined) o.shard = f.shard;
  return o;
}

/** --out and --junit: writable (unless `check` is false), and not the same file. */
function checkOutputs(f: { out?: string | undefined; junit?: string | undefined }, check: boolean): void {
  if (f.out !== undefined && f.junit !== undefined && f.out === f.junit) throw badParam('--junit', `${f.junit} is also the --out file`);
  if (!check) return;
  if (f.out !== undefined) checkOutputPath('--out', f.out);
  if (f.junit !== undefined) checkOutputPath('--junit', f.junit);
}

const plural = (n: number, w: string) => `${n.toLocaleString('en-US')} ${w}${n === 1 ? '' : 's'}`;

/** One line on the campaign's parameters. */
function describeParams(p: CampaignParams): string {
  const seeds = p.seeds.from === p.seeds.to ? `seed ${p.seeds.from}` : `seeds ${p.seeds.from}..${p.seeds.to}`;
  const what = `${plural(p.scenarios.length, 'scenario')}, variants ${p.variants.join(',')}, ${seeds}`;
  if (p.mode === 'controlled') return `${what}; controlled mode (random schedules of ${plural(p.iterations ?? 1, 'round')}: ${p.schedules} per cell expected to hold, up to ${p.buggySchedules} per cell expected to fail)`;
  return `${what}; free mode (${p.iterations !== null ? `${plural(p.iterations, 'round')}` : `${p.seconds} s`} per cell, up to the first violation)`;
}

/** The header line of a plan or a document. */
function headline(p: CampaignParams, shard: Shard | null, matrix: number, cells: number): string {
  return `hvemu campaign: ${describeParams(p)}: ${plural(matrix, 'cell')}${shard ? `; shard ${shard.index}/${shard.count}: ${plural(cells, 'cell')}` : ''}`;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)] ?? 0;
};

/** The text report: one row per scenario × variant, the unexpected cells, the summary. */
export function campaignText(doc: CampaignDoc, tty: boolean): string {
  const lines = [headline(doc.params, doc.shard, doc.matrixCells, doc.cells.length) + (doc.interrupted ? ' (interrupted)' : '')];
  const head = ['scenario', 'variant', 'expected', 'cells', 'as expected', 'outcomes', 'invariant', doc.params.mode === 'controlled' ? 'schedules (median)' : 'rounds (median)'];
  const t = new Table(tty ? { head } : { head, style: { head: [], border: [] } });
  const groups = new Map<string, CampaignCell[]>();
  for (const c of doc.cells) groups.set(`${c.scenario}\0${c.variant}`, [...(groups.get(`${c.scenario}\0${c.variant}`) ?? []), c]);
  for (const cs of groups.values()) {
    const c0 = cs[0]!;
    const n = (o: string) => cs.filter((c) => c.outcome === o).length;
    const outcomes = (['fails', 'holds', 'error'] as const).filter((o) => n(o) > 0).map((o) => `${n(o)} ${o}`).join(', ');
    const invariants = [...new Set(cs.map((c) => c.invariant).filter((x) => x !== null))].join(', ');
    const effort = median(cs.map((c) => c.schedules ?? c.iterations));
    t.push([c0.scenario, c0.variant, c0.expected, String(cs.length), `${cs.filter((c) => c.asExpected).length}/${cs.length}`, outcomes, invariants, effort.toLocaleString('en-US')]);
  }
  if (doc.cells.length > 0) lines.push(t.toString());
  const bad = doc.cells.filter((c) => !c.asExpected);
  for (const c of bad.slice(0, LIST_UNEXPECTED)) lines.push(unexpectedLine(c));
  if (bad.length > LIST_UNEXPECTED) lines.push(`... and ${bad.length - LIST_UNEXPECTED} more unexpected cells (every one is in --json and --junit)`);
  const s = doc.summary;
  lines.push(`${plural(s.cells, 'cell')}: ${s.asExpected} as expected, ${s.unexpected} unexpected (${s.fails} broke an invariant, ${s.holds} held, ${s.errors} failed to run); outcome digest ${doc.outcomeDigest}`);
  if (doc.shard) lines.push(`shard ${doc.shard.index}/${doc.shard.count} of ${plural(doc.matrixCells, 'cell')}: combine the parts (--json or --out of every shard) with hvemu merge PART.json…`);
  if (doc.interrupted) lines.push(`interrupted after ${plural(doc.cells.length, 'cell')}: this document cannot be merged; run it again`);
  return lines.join('\n');
}

/** One line on an unexpected cell: what happened and how to see it again. */
function unexpectedLine(c: CampaignCell): string {
  const what = c.outcome === 'error' ? `failed to run (${c.failure?.code ?? 'error'}: ${c.failure?.message ?? ''})` : c.outcome === 'fails' ? `broke ${c.invariant} in round ${c.round} (expected to hold)` : 'held (expected to break an invariant: not reached)';
  return `UNEXPECTED ${c.scenario} ${c.variant} seed ${c.seed}: ${what}; ${c.replay ? `hvemu replay ${c.replay}` : c.rerun}`;
}

/** The dry-run report: the plan, nothing run. */
function dryRun(plan: CampaignPlan, json: boolean): void {
  if (json) {
    out(JSON.stringify({ dryRun: true, params: plan.params, shard: plan.shard, matrixCells: plan.matrix.length, cells: plan.cells }, null, 2));
    return;
  }
  out(headline(plan.params, plan.shard, plan.matrix.length, plan.cells.length));
  out(`dry run: nothing ran (the flags are valid; output paths are checked when the campaign runs)`);
}

/** Write --out and --junit after the result is printed; a failure is reported, never thrown. */
function writeOutputs(doc: CampaignDoc, f: { out?: string | undefined; junit?: string | undefined }): void {
  const files: [string, string | undefined, () => string][] = [
    ['--out', f.out, () => JSON.stringify(doc, null, 2) + '\n'],
    ['--junit', f.junit, () => campaignJunit(doc)],
  ];
  for (const [flag, file, render] of files) {
    if (file === undefined) continue;
    const error = writeCampaignFile(file, render());
    if (error !== null) err(`hvemu: could not write ${flag} ${file}: ${error} (the result is above; no partial file was left at that path)`);
  }
}

/** Progress on stderr: a bar on a TTY, else a start line and a line per unexpected cell. */
function progress(plan: CampaignPlan): { onCell: (c: CampaignCell, done: number) => void; stop: () => void } {
  if (!process.stderr.isTTY) {
    err(`${headline(plan.params, plan.shard, plan.matrix.length, plan.cells.length)}: running (Ctrl-C stops after the current cell)`);
    return { onCell: (c) => (c.asExpected ? undefined : err(unexpectedLine(c))), stop: () => undefined };
  }
  let unexpected = 0;
  const bar = new cliProgress.SingleBar(
    { format: 'campaign [{bar}] {value}/{total} cells | {unexpected} unexpected | {duration_formatted} elapsed, ETA {eta_formatted}', stream: process.stderr, hideCursor: true, clearOnComplete: true, etaBuffer: 50 },
    cliProgress.Presets.shades_classic,
  );
  bar.start(plan.cells.length, 0, { unexpected });
  return {
    onCell: (c, done) => {
      if (!c.asExpected) unexpected++;
      bar.update(done, { unexpected });
    },
    stop: () => bar.stop(),
  };
}

/** `hvemu campaign`: run (this shard of) the matrix; exit 0 when every cell is as expected, 1 otherwise. */
export async function cmdCampaign(f: CampaignFlags): Promise<number> {
  const plan = planCampaign(campaignOptions(f));
  checkOutputs(f, !f.dryRun);
  if (f.dryRun) {
    dryRun(plan, !!f.json);
    return EXIT_OK;
  }
  const ac = new AbortController();
  const onSigint = () => {
    if (ac.signal.aborted) void closeSharedPool().finally(() => process.exit(130));
    err('\ninterrupted: stopping after the current cell (Ctrl-C again to force)');
    ac.abort();
  };
  process.on('SIGINT', onSigint);
  const ui = progress(plan);
  let doc: CampaignDoc;
  try {
    doc = await runCampaign(plan, { signal: ac.signal, onCell: ui.onCell });
  } finally {
    ui.stop();
    process.off('SIGINT', onSigint);
  }
  out(f.json ? JSON.stringify(doc, null, 2) : campaignText(doc, !!process.stdout.isTTY));
  writeOutputs(doc, f);
  return doc.ok ? EXIT_OK : EXIT_FINDING;
}

/** `hvemu merge PART…`: one document from a campaign's shards; exit as the campaign would. */
export function cmdMerge(files: string[], f: MergeFlags): number {
  checkOutputs(f, true);
  const parts = files.map((file) => {
    try {
      return { file, text: readFileSync(file, 'utf8') };
    } catch (e) {
      throw badParam('PART', `${file} cannot be read (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
    }
  });
  const doc = mergeCampaigns(parts);
  out(f.json ? JSON.stringify(doc, null, 2) : campaignText(doc, !!process.stdout.isTTY));
  writeOutputs(doc, f);
  return doc.ok ? EXIT_OK : EXIT_FINDING;
}

/** Register `campaign` and `merge` on the program (their actions set process.exitCode). */
export function addCampaignCommands(program: Command): void {
  program
    .command('campaign')
    .description('run a seed × scenario × variant matrix (or one shard of it) and report every cell against its expected outcome')
    .requiredOption('--seeds <A..B>', 'seeds A to B (inclusive), or one seed')
    .option('--scenarios <ids>', 'all, or comma-separated scenario ids', 'all')
    .option('--variants <list>', 'all, or comma-separated: buggy, fixed, variant names', 'all')
    .option('--mode <mode>', 'controlled (one access at a time, x86-TSO, deterministic: shards merge to the unsharded result) or free (real threads)', 'controlled')
    .option('--iterations <n>', `controlled: rounds per schedule (default ${DEFAULT_CONTROLLED_ROUNDS}); free: round budget per cell`)
    .option('--schedules <n>', `controlled: schedules per cell expected to hold (default ${DEFAULT_SCHEDULES})`)
    .option('--buggy-schedules <n>', `controlled: most schedules per cell expected to fail; it stops at the first violation (default ${DEFAULT_BUGGY_SCHEDULES})`)
    .option('--seconds <s>', `free: seconds per cell (default ${DEFAULT_FREE_SECONDS})`)
    .option('--shard <I/N>', 'run only shard I of N (1 ≤ I ≤ N): a stable, disjoint 1/N of the cells')
    .option('--json', 'print the campaign document as JSON')
    .option('--junit <file>', 'write JUnit XML: one testcase per scenario × variant × seed')
    .option('--out <file>', 'write the campaign document (JSON) to a file, for hvemu merge')
    .option('--dry-run', 'check the flags and print the cells this shard would run; run nothing')
    .action(async (f: CampaignFlags) => {
      process.exitCode = await cmdCampaign(f);
    });
  program
    .command('merge <parts...>')
    .description('combine the shards of one campaign (their --json or --out documents) into the unsharded result')
    .option('--json', 'print the merged document as JSON')
    .option('--junit <file>', 'write JUnit XML of the merged campaign')
    .option('--out <file>', 'write the merged document (JSON) to a file')
    .action((parts: string[], f: MergeFlags) => {
      process.exitCode = cmdMerge(parts, f);
    });
}

