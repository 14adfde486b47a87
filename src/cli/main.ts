#!/usr/bin/env node
/**
 * The `hvemu` command line.
 *
 * Exit codes: 0 the run held every invariant; 1 the run found a violation or an actor failed
 * (a finding, with a report); 2 bad usage or input (message names the parameter); 3 internal error.
 */
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { Command, CommanderError } from 'commander';
import cliProgress from 'cli-progress';
import { Machine, type RunHandle, type RunResult } from '../runtime/machine.js';
import { closeSharedPool } from '../runtime/pool.js';
import { DEFAULT_MACHINE } from '../runtime/config.js';
import { DEFAULT_STORM } from '../guest/programs.js';
import { MsgpackEventWriter } from '../trace/msgpack.js';
import { checkOutputPath } from '../trace/output-path.js';
import { EmuError } from '../errors.js';
import { parseIntOption, parseNumberOption } from './args.js';
import { controlledRaceToJson, controlledRaceToText, controlledTable, raceToJson, raceToText, racesTable, resultToJson, resultToText, traceOutText, type TraceOutcome } from './output.js';
import { decodeReplay, huntControlled, replayRace, type HuntResult, resolveControlled, runControlledRace, type ControlledRaceOptions, type ControlledRaceResult, type StrategyName } from '../scenarios/controlled.js';
import Table from 'cli-table3';
import { SCENARIOS } from '../scenarios/index.js';
import { bugPatches, variantInfo } from '../scenarios/bugs.js';
import { resolveRace, runRace, type RaceOptions, type RaceResult } from '../scenarios/runner.js';
import { DEFAULT_FREE_ROUNDS, DEFAULT_PREEMPTIONS, litmusPool, resolveLitmusArgs, runLitmus, type LitmusMode, type LitmusResult } from '../scenarios/litmus-run.js';
import { LITMUS_TESTS, conditionFull, formatState, satisfies, type LitmusTest } from '../scenarios/litmus-tests.js';
import { tsoStates } from '../scenarios/litmus-tso.js';
import { addCampaignCommands } from './campaign.js';

/** Exit codes of the CLI. */
export const EXIT = { OK: 0, FINDING: 1, USAGE: 2, INTERNAL: 3 } as const;

interface RunFlags {
  vendor: string;
  vcpus: string;
  pcpus: string;
  packages: string;
  seconds?: string;
  sends?: string;
  seed?: string;
  burst: string;
  tickless?: boolean;
  json?: boolean;
  traceOut?: string;
  trace: boolean;
  deadlineMs: string;
  drainMs: string;
  bug: string[];
}

class UsageError extends Error {}

const out = (s: string) => process.stdout.write(s + '\n');
const err = (s: string) => process.stderr.write(s + '\n');

/** Bytes of event ring (all actors together) a run with --trace-out may use. */
const TRACE_RING_BYTES = 64 << 20;
/** Bytes per ring record (4 words). */
const RING_RECORD_BYTES = 16;

/**
 * Ring size (records per actor, a power of two) for a run that writes every event to a file:
 * as large as {@link TRACE_RING_BYTES} allows for its actors (vCPUs, pCPUs, main), so that a
 * main thread busy encoding the file does not make the rings drop; never below the default.
 */
function traceRingRecords(vcpus: number, pcpus: number): number {
  const perActor = TRACE_RING_BYTES / ((vcpus + pcpus + 1) * RING_RECORD_BYTES);
  const pow2 = 2 ** Math.floor(Math.log2(Math.max(1, perActor)));
  return Math.min(1 << 20, Math.max(DEFAULT_MACHINE.ringRecords, pow2));
}

/** Run one workload with live progress (TTY only) and Ctrl-C handling; returns the result and what became of --trace-out. */
async function runWithUi(m: Machine, opts: Parameters<Machine['run']>[0], label: string, json: boolean, traceOut?: string): Promise<{ result: RunResult; traceOut?: TraceOutcome }> {
  const handle: RunHandle = m.run(opts);
  // Events stream into a temp file next to FILE, renamed to FILE once the run is over.
  const writer = traceOut ? new MsgpackEventWriter(traceOut) : undefined;
  if (writer) handle.events$.subscribe((e) => writer.write(e));
  let bar: cliProgress.SingleBar | undefined;
  if (process.stderr.isTTY && !json) {
    bar = new cliProgress.SingleBar(
      { format: `${label} [{bar}] {phase} {elapsed}/{total} s | {sent} sent | {delivered} delivered`, stream: process.stderr, hideCursor: true, clearOnComplete: true },
      cliProgress.Presets.shades_classic,
    );
    const totalS = (opts?.seconds ?? 1).toFixed(1);
    bar.start(1000, 0, { phase: 'running', elapsed: '0.0', total: totalS, sent: 0, delivered: 0 });
    handle.progress$.subscribe((p) => bar!.update(Math.min(1000, Math.round((p.elapsedMs / p.totalMs) * 1000)), { phase: p.phase, elapsed: (p.elapsedMs / 1000).toFixed(1), total: totalS, sent: p.sent, delivered: p.delivered }));
  }
  let sigints = 0;
  const onSigint = () => {
    sigints++;
    if (sigints === 1) {
      err('\ninterrupted: draining and stopping (Ctrl-C again to force)');
      handle.stop();
    } else {
      writer?.abort();
      void closeSharedPool().finally(() => process.exit(130));
    }
  };
  process.on('SIGINT', onSigint);
  // One line once every actor runs (also the cue for scripts that want to interrupt a run).
  const startedSub = handle.progress$.subscribe(() => {
    startedSub.unsubscribe();
    const budget = opts?.sends === undefined ? `for ${opts?.seconds ?? 1} s` : `until ${opts.sends} interrupts are sent (at most ${opts.seconds ?? 300} s)`;
    if (!bar) err(`hvemu: ${label} running ${budget} (Ctrl-C stops it and prints the partial accounting)`);
  });
  try {
    const result = await handle.result.catch((e: unknown) => {
      writer?.abort();
      throw e;
    });
    bar?.stop();
    if (!writer || traceOut === undefined) return { result };
    // A failed write is reported after the result, never instead of it.
    try {
      return { result, traceOut: { file: traceOut, written: await writer.close(), error: null } };
    } catch (e) {
      return { result, traceOut: { file: traceOut, written: null, error: e instanceof Error ? e.message : String(e) } };
    }
  } finally {
    process.off('SIGINT', onSigint);
  }
}

function machineFrom(f: RunFlags): Machine {
  const vcpus = parseIntOption('vcpus', f.vcpus);
  const pcpus = parseIntOption('pcpus', f.pcpus);
  // Writing every event to a file: rings sized so that they do not drop (see traceRingRecords).
  const ring = f.traceOut === undefined ? {} : { ringRecords: traceRingRecords(vcpus, pcpus) };
  const patches = f.bug.flatMap((spec) => bugPatches(spec));
  return Machine.create({ vendor: f.vendor, vcpus, pcpus, packages: parseIntOption('packages', f.packages), patches, ...ring });
}

async function cmdRun(f: RunFlags): Promise<number> {
  // Output paths first: a path that cannot be written is bad usage, found before any work.
  if (f.traceOut !== undefined) checkOutputPath('--trace-out', f.traceOut);
  const m = machineFrom(f);
  const sends = f.sends === undefined ? undefined : parseIntOption('sends', f.sends);
  // With a count budget --seconds is only the upper bound that catches a run making no progress.
  const seconds = f.seconds === undefined ? (sends === undefined ? 2 : 300) : parseNumberOption('seconds', f.seconds);
  const seed = f.seed !== undefined ? parseIntOption('seed', f.seed) : (Date.now() % 0xffffffff) >>> 0;
  const opts = {
    seconds,
    ...(sends === undefined ? {} : { sends }),
    seed,
    trace: f.trace || f.traceOut !== undefined,
    deadlineMs: parseIntOption('deadline-ms', f.deadlineMs),
    drainMs: parseIntOption('drain-ms', f.drainMs),
    workload: { kind: 'ipi-storm' as const, storm: { ...DEFAULT_STORM, burst: parseIntOption('burst', f.burst), ...(f.tickless ? { tickless: true } : {}) } },
  };
  const { result: r, traceOut } = await runWithUi(m, opts, 'ipi-storm', !!f.json, f.traceOut);
  const report = traceOut ? { traced: opts.trace, traceOut } : { traced: opts.trace };
  if (f.json) out(JSON.stringify(resultToJson(r, report), null, 2));
  else out(resultToText(r, !!process.stdout.isTTY, report));
  // The file's line after the result; a failed write does not change the run's exit code.
  if (traceOut && (!f.json || traceOut.error !== null)) err(traceOutText(r, traceOut));
  return r.ok ? EXIT.OK : EXIT.FINDING;
}

/** The tour's controlled search budgets (schedules). */
const TOUR_BUGGY_SCHEDULES = 1200;
const TOUR_FIXED_SCHEDULES = 30;

async function cmdTour(f: { json?: boolean; seconds: string; seed?: string }): Promise<number> {
  const seconds = parseNumberOption('seconds', f.seconds);
  const seed = f.seed !== undefined ? parseIntOption('seed', f.seed) : 1;
  const m = Machine.create(DEFAULT_MACHINE);
  const tty = !!process.stdout.isTTY;
  if (!f.json) {
    out(`hvemu tour — the built-in default machine: ${DEFAULT_MACHINE.vendor}, ${DEFAULT_MACHINE.vcpus} vCPUs on ${DEFAULT_MACHINE.pcpus} pCPUs, every vCPU and pCPU an actor on its own worker thread.\n`);
    out('1. Posted-interrupt IPI storm: each guest writes the x2APIC ICR to random vCPUs (bursts of 8, then arms its LAPIC timer and HLTs).');
    out('   KVM posts to the target PIR, sets ON and rings the notification doorbell of the target pCPU, or wakes it.\n');
  }
  const { result: storm } = await runWithUi(m, { seconds: Math.min(seconds, 1), seed, trace: true, workload: { kind: 'ipi-storm', storm: DEFAULT_STORM } }, 'storm', !!f.json);
  if (!f.json) {
    out(resultToText(storm, tty) + '\n');
    out(`2. The race catalogue: every scenario, buggy then fixed, up to ${seconds} s each (a buggy run stops at its first violation).\n`);
  }
  const races: RaceResult[] = [];
  for (const def of SCENARIOS) {
    for (const v of [...def.variants.filter((x) => x.buggy), ...def.variants.filter((x) => !x.buggy)]) {
      const r = await runRace(def.id, { variant: v.name, seconds, seed });
      races.push(r);
      if (!f.json) err(`  ${def.id} ${v.name}: ${r.first ? 'violation' : r.failure ? 'failed' : 'no violation'} after ${r.iterations} rounds`);
    }
  }
  if (!f.json) {
    out(racesTable(races, tty));
    out('\nRerun any row (same inputs; the host interleaves, so not an exact replay): hvemu race <scenario> --variant <variant> --seed ' + seed + '   (hvemu list shows the catalogue)\n');
    out(`3. The same catalogue in controlled mode: the same actor code on the same threads, one access at a time with x86-TSO store buffers; random schedules under seed ${seed} (buggy: until the first violation, fixed: ${TOUR_FIXED_SCHEDULES} schedules). The result does not depend on the host or its load.\n`);
  }
  const controlled: ControlledRaceResult[] = [];
  for (const def of SCENARIOS) {
    for (const v of def.variants) {
      const r = await runControlledRace(def.id, { variant: v.name, strategy: 'random', seed, iterations: 1, schedules: v.buggy ? TOUR_BUGGY_SCHEDULES : TOUR_FIXED_SCHEDULES });
      controlled.push(r);
      if (!f.json) err(`  ${def.id} ${v.name}: ${r.first ? `violation in schedule ${r.schedules}` : r.failure ? 'failed' : `no violation in ${r.schedules} schedules`}`);
    }
  }
  if (f.json) {
    out(JSON.stringify({ storm: resultToJson(storm), races: races.map(raceToJson), controlled: controlled.map(controlledRaceToJson) }, null, 2));
  } else {
    out(controlledTable(controlled, tty));
    out(`\nExact replay of a row: hvemu race <scenario> --variant <variant> --mode controlled --seed ${seed} --iterations 1 prints a token; hvemu replay <token> --shrink draws it as CPU columns.`);
  }
  // The tour passes when the storm lost nothing, every fixed variant held (in both modes) and no run crashed.
  const ok = storm.ok && races.every((r) => !r.failure && (r.variant.startsWith('buggy') || r.violations === 0)) && controlled.every((r) => !r.failure && (r.variant.startsWith('buggy') || r.violations === 0));
  return ok ? EXIT.OK : EXIT.FINDING;
}

interface RaceFlags {
  variant?: string;
  iterations?: string;
  seconds?: string;
  seed?: string;
  vcpus?: string;
  widen: boolean;
  trace?: string;
  json?: boolean;
  deadlineMs: string;
  mode: string;
  strategy?: string;
  depth?: string;
  preemptions?: string;
  schedules?: string;
  hunt?: string;
  from?: string;
  continue?: boolean;
  prefixSteps?: string;
}

/** The flags `race` shares between its modes: variant, budget, seed, vCPUs, deadline. */
function commonRaceOptions(f: RaceFlags): { variant?: string; iterations?: number; seconds?: number; seed: number; vcpus?: number; deadlineMs: number } {
  const o: ReturnType<typeof commonRaceOptions> = { seed: f.seed !== undefined ? parseIntOption('seed', f.seed) : (Date.now() % 0xffffffff) >>> 0, deadlineMs: parseIntOption('deadline-ms', f.deadlineMs) };
  if (f.variant !== undefined) o.variant = f.variant;
  if (f.iterations !== undefined) o.iterations = parseIntOption('iterations', f.iterations);
  if (f.seconds !== undefined) o.seconds = parseNumberOption('seconds', f.seconds);
  if (f.vcpus !== undefined) o.vcpus = parseIntOption('vcpus', f.vcpus);
  return o;
}

/** Ctrl-C for a race: the first stops after the current round or schedule, the second exits. */
function raceSigint(ac: AbortController, unit: string): () => void {
  const onSigint = () => {
    if (ac.signal.aborted) void closeSharedPool().finally(() => process.exit(130));
    err(`\ninterrupted: stopping after the current ${unit} (Ctrl-C again to force)`);
    ac.abort();
  };
  process.on('SIGINT', onSigint);
  return () => process.off('SIGINT', onSigint);
}

/** `race --mode controlled`: search schedules; a find prints an exact replay token. */
async function cmdRaceControlled(id: string, f: RaceFlags): Promise<number> {
  if (f.hunt !== undefined) throw new UsageError('invalid hunt: --hunt is for --mode free (a controlled find has its replay token already)');
  if (!f.widen) throw new UsageError('invalid no-widen: --no-widen is for --mode free (controlled mode has no window widening; its replay token replays the run exactly)');
  // Output paths first: a path that cannot be written is bad usage, found before any work.
  if (f.trace !== undefined) checkOutputPath('--trace', f.trace);
  const opts: ControlledRaceOptions = commonRaceOptions(f);
  if (f.trace !== undefined) opts.traceFile = f.trace;
  if (f.strategy !== undefined) opts.strategy = f.strategy as StrategyName;
  if (f.depth !== undefined) opts.depth = parseIntOption('depth', f.depth);
  if (f.preemptions !== undefined) opts.preemptions = parseIntOption('preemptions', f.preemptions);
  if (f.schedules !== undefined) opts.schedules = parseIntOption('schedules', f.schedules);
  if ((f.from !== undefined) !== (f.continue === true)) throw new UsageError('invalid from: --from TOKEN and --continue go together (to run a token again exactly: hvemu replay TOKEN)');
  if (f.prefixSteps !== undefined && f.from === undefined) throw new UsageError('invalid prefix-steps: --prefix-steps needs --from TOKEN --continue');
  if (f.from !== undefined) opts.from = f.from;
  if (f.prefixSteps !== undefined) opts.prefixSteps = parseIntOption('prefix-steps', f.prefixSteps);
  resolveControlled(id, opts);
  const ac = new AbortController();
  opts.signal = ac.signal;
  const offSigint = raceSigint(ac, 'schedule');
  if (!f.json) err(`hvemu: race ${id} running in controlled mode (Ctrl-C stops it after the current schedule)`);
  try {
    const r = await runControlledRace(id, opts);
    out(f.json ? JSON.stringify(controlledRaceToJson(r), null, 2) : controlledRaceToText(r));
    traceWriteReport(r.trace);
    return r.first || r.failure ? EXIT.FINDING : EXIT.OK;
  } finally {
    offSigint();
  }
}

/** `replay TOKEN [--shrink]`: run a controlled execution again, exactly (shrunk first with --shrink), and draw it. */
async function cmdReplay(token: string, f: { json?: boolean; shrink?: boolean; trace?: string }): Promise<number> {
  decodeReplay(token);
  if (f.trace !== undefined) checkOutputPath('--trace', f.trace);
  const r = await replayRace(token, { shrink: f.shrink === true, ...(f.trace !== undefined ? { traceFile: f.trace } : {}) });
  if (f.json) out(JSON.stringify({ ...controlledRaceToJson(r), diagram: r.diagram, shrink: r.shrink }, null, 2));
  else out(controlledRaceToText(r) + (r.diagram ? `\n\n${r.diagram}` : ''));
  traceWriteReport(r.trace);
  return r.first || r.failure ? EXIT.FINDING : EXIT.OK;
}

/** The controlled hunt's line after a free-mode find. */
function huntText(h: HuntResult, budget: number): string {
  if (!h.found) return `controlled hunt: no violation in ${h.schedules} schedules (budget ${budget}): this find has no exact replay; search longer with --mode controlled --schedules N`;
  const which = h.sameInvariant ? 'the same invariant' : `another invariant (${h.invariant})`;
  return `controlled hunt: ${which} broken in schedule ${h.schedules}; exact replay (any host, any load): hvemu replay ${h.replay}`;
}

/** After the result: the --trace file's line on stderr (written, or why not; the exit code stays the run's). */
function traceWriteReport(t: RaceResult['trace']): void {
  if (!t) return;
  if (t.error !== null) err(`hvemu: could not write --trace ${t.file}: ${t.error} (the result is above; no partial file was left at that path)`);
  else err(`hvemu: wrote the last ${t.events} steps of the execution to ${t.file} (Chrome Trace Event JSON: open it in https://ui.perfetto.dev)`);
}

function cmdList(f: { json?: boolean }): number {
  const rows = SCENARIOS.map((d) => ({
    id: d.id,
    title: d.title,
    seed: d.seedFile,
    variants: d.variants.map((v) => v.name),
    invariants: d.invariants.map((i) => i.name),
  }));
  if (f.json) {
    // Full detail per variant: the patch that makes it, what it reverts, what it is expected to do.
    out(JSON.stringify(rows.map((r, i) => ({ ...r, variants: SCENARIOS[i]!.variants.map(variantInfo) })), null, 2));
    return EXIT.OK;
  }
  const tty = !!process.stdout.isTTY;
  // Fit the terminal (its width, or $COLUMNS): the columns share it and long cells wrap; the seed
  // file column goes first when it is narrow. `--json` has every detail.
  const columns = (tty ? process.stdout.columns : undefined) ?? (Number(process.env['COLUMNS']) || undefined);
  const head = ['id', 'variants', 'invariants', 'seed'];
  const narrow = columns !== undefined && columns < 110;
  const heads = narrow ? head.slice(0, 3) : head;
  const shares = narrow ? [0.45, 0.22, 0.33] : [0.36, 0.18, 0.28, 0.18];
  const sizing = columns === undefined ? {} : { colWidths: shares.map((s) => Math.max(12, Math.floor(s * (columns - 1 - 3 * heads.length)))), wordWrap: true };
  const t = new Table({ head: heads, ...sizing, ...(tty ? {} : { style: { head: [], border: [] } }) });
  for (const r of rows) t.push([`${r.id}\n${r.title}`, r.variants.join('\n'), r.invariants.join('\n'), r.seed].slice(0, heads.length));
  out(t.toString());
  return EXIT.OK;
}

/** Schedules of the controlled hunt after a free-mode find (`race --hunt N`). */
const DEFAULT_HUNT_SCHEDULES = 1000;

async function cmdRace(id: string, f: RaceFlags): Promise<number> {
  if (f.mode !== 'free' && f.mode !== 'controlled') throw new UsageError(`invalid mode: "${f.mode}" (free or controlled)`);
  if (f.mode === 'controlled') return cmdRaceControlled(id, f);
  for (const [flag, v] of [['--strategy', f.strategy], ['--depth', f.depth], ['--preemptions', f.preemptions], ['--schedules', f.schedules], ['--from', f.from], ['--continue', f.continue ? 'x' : undefined], ['--prefix-steps', f.prefixSteps]] as const) {
    if (v !== undefined) throw new UsageError(`invalid ${flag.slice(2)}: ${flag} needs --mode controlled`);
  }
  // Output paths first: a path that cannot be written is bad usage, found before any work.
  if (f.trace !== undefined) checkOutputPath('--trace', f.trace);
  const huntSchedules = f.hunt === undefined ? DEFAULT_HUNT_SCHEDULES : parseIntOption('hunt', f.hunt);
  if (huntSchedules < 0) throw new UsageError(`invalid hunt: ${huntSchedules} (0 = no hunt, or a number of schedules)`);
  const opts: RaceOptions = { ...commonRaceOptions(f), widen: f.widen };
  if (f.trace !== undefined) opts.traceFile = f.trace;
  resolveRace(id, opts);
  const ac = new AbortController();
  opts.signal = ac.signal;
  const offSigint = raceSigint(ac, 'round');
  // One line once every actor runs (also the cue for scripts that want to interrupt a race).
  opts.onStart = () => err(`hvemu: race ${id} running (Ctrl-C stops it after the current round)`);
  try {
    const r = await runRace(id, opts);
    // A free-mode find has no exact replay: hunt for one in controlled mode (bounded).
    const hunt = (r.first || r.failure) && huntSchedules > 0 && !r.interrupted ? await huntControlled(r, { schedules: huntSchedules, signal: ac.signal }) : null;
    if (f.json) out(JSON.stringify({ ...raceToJson(r), hunt }, null, 2));
    else out(raceToText(r) + (hunt ? '\n' + huntText(hunt, huntSchedules) : ''));
    // A failed write is reported after the result and does not change the race's exit code.
    if (r.trace && r.trace.error !== null) err(`hvemu: could not write --trace ${r.trace.file}: ${r.trace.error} (the race's result is above; no partial file was left at that path)`);
    if (r.failure) return EXIT.FINDING;
    return r.violations > 0 ? EXIT.FINDING : EXIT.OK;
  } finally {
    offSigint();
  }
}

interface LitmusFlags {
  mode: string;
  iterations?: string;
  preemptions?: string;
  json?: boolean;
}

/** One test's table: every final state seen or allowed, how often it was seen, what x86-TSO says. */
function litmusTable(t: LitmusTest, r: LitmusResult, tty: boolean): string {
  const head = ['final state', r.mode === 'controlled' ? 'executions' : 'rounds', 'x86-TSO'];
  const table = new Table(tty ? { head } : { head, style: { head: [], border: [] } });
  const rows = new Map<string, { values: readonly number[]; count: number }>();
  for (const v of tsoStates(t)) rows.set(formatState(t, v), { values: v, count: 0 });
  for (const s of r.states) {
    const values = t.observe.map((o) => s[o]!);
    rows.set(formatState(t, values), { values, count: s.count });
  }
  for (const [key, row] of [...rows].sort(([a], [b]) => (a < b ? -1 : 1))) {
    table.push([key + (satisfies(t, row.values) ? ` (${t.condition.quantifier})` : ''), String(row.count), r.allowed.includes(key) ? 'allowed' : 'FORBIDDEN']);
  }
  const how = r.mode === 'controlled' ? `${r.runs} executions, DFS with ≤ ${r.preemptions} preemption${r.preemptions === 1 ? '' : 's'}, ${r.exhaustive ? 'exhaustive' : 'NOT exhaustive'}` : `${r.runs} rounds on real threads`;
  return [
    `${r.name}${t.title === '' ? '' : ` — ${t.title}`}`,
    `  file: ${r.file}`,
    `  source: ${r.source}`,
    `  ${r.quantifier} (${r.condition}): x86-TSO ${r.tso}; observed: ${r.observation}${r.observation === r.expected ? '' : ` (x86-TSO gives ${r.expected})`}`,
    table.toString(),
    `  ${r.mode}: ${how}: ${r.verdict === 'match' ? 'matches x86-TSO' : `MISMATCH: ${r.reasons.join('; ')}`}`,
    herdBlock(t, r),
  ].join('\n');
}

/** What herd7 prints for a test, from the states seen (counts are in the table above it). */
function herdBlock(t: LitmusTest, r: LitmusResult): string {
  return [
    `Test ${r.name} ${r.kind}`,
    `States ${r.states.length}`,
    ...r.states.map((s) => formatState(t, t.observe.map((o) => s[o]!))),
    r.observation,
    'Witnesses',
    `Positive: ${r.positive} Negative: ${r.negative}`,
    `Condition ${conditionFull(t)}`,
    // herd's Observation counts the runs satisfying the proposition first, whatever the quantifier.
    `Observation ${r.name} ${r.herdObservation} ${r.quantifier === '~exists' ? `${r.negative} ${r.positive}` : `${r.positive} ${r.negative}`}`,
  ].join('\n');
}

/** The summary of a litmus run: one row per test. */
function litmusSummary(results: readonly LitmusResult[], tty: boolean): string {
  const head = ['test', 'condition', 'x86-TSO', 'observed', 'states seen / allowed', results[0]?.mode === 'free' ? 'rounds' : 'executions', 'exhaustive', 'result'];
  const table = new Table(tty ? { head } : { head, style: { head: [], border: [] } });
  for (const r of results) {
    const seen = r.states.length - r.forbiddenObserved.length;
    const cond = r.quantifier === 'exists' ? r.condition : `${r.quantifier} (${r.condition})`;
    table.push([r.name, cond, r.tso, r.observation, `${seen} / ${r.allowed.length}${r.forbiddenObserved.length ? ` + ${r.forbiddenObserved.length} forbidden` : ''}`, String(r.runs), r.exhaustive === null ? '-' : r.exhaustive ? 'yes' : 'no', r.verdict === 'match' ? 'match' : 'MISMATCH']);
  }
  return table.toString();
}

async function cmdLitmus(args: string[], f: LitmusFlags): Promise<number> {
  if (f.mode !== 'controlled' && f.mode !== 'free') throw new EmuError('EMU_ERR_BAD_PARAM', `invalid --mode: "${f.mode}" is not one of controlled, free`, { detail: { param: 'mode' } });
  const mode: LitmusMode = f.mode;
  // Every name and file is checked (files parsed) before anything runs.
  const tests = args.length === 0 ? LITMUS_TESTS : resolveLitmusArgs(args);
  const iterations = f.iterations === undefined ? undefined : parseIntOption('iterations', f.iterations);
  const preemptions = f.preemptions === undefined ? undefined : parseIntOption('preemptions', f.preemptions);
  const tty = !!process.stdout.isTTY;
  if (!f.json) {
    const how = mode === 'controlled' ? `controlled mode (bounded DFS, ≤ ${preemptions ?? DEFAULT_PREEMPTIONS} preemptions)` : `free mode (${iterations ?? DEFAULT_FREE_ROUNDS} rounds each on real threads)`;
    err(`hvemu: litmus running ${tests.length} test${tests.length === 1 ? '' : 's'} in ${how}`);
  }
  // One pool for every test (threads + the starter of the largest), not one grown on the way.
  const pool = await litmusPool(tests);
  const results: LitmusResult[] = [];
  for (const t of tests) {
    const r = await runLitmus(t, { mode, pool, ...(iterations === undefined ? {} : { iterations }), ...(preemptions === undefined ? {} : { preemptions }) });
    results.push(r);
    if (!f.json) out(litmusTable(t, r, tty) + '\n');
  }
  const ok = results.every((r) => r.verdict === 'match');
  if (f.json) out(JSON.stringify({ mode, ok, results }, null, 2));
  else out(litmusSummary(results, tty));
  return ok ? EXIT.OK : EXIT.FINDING;
}

/** Build the command tree (exported for tests of --help). */
export function buildProgram(): Command {
  const program = new Command();
  program
    .name('hvemu')
    .description('Interrupt-virtualization races of an x86 hypervisor (KVM, VMX posted interrupts, ...) on real worker threads')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) })
    .showHelpAfterError(false);
  program
    .command('run')
    .description('run the posted-interrupt IPI storm and print the interrupt accounting')
    .option('--vendor <name>', 'interrupt-virtualization model', DEFAULT_MACHINE.vendor)
    .option('--vcpus <n>', 'number of vCPUs (1-256)', String(DEFAULT_MACHINE.vcpus))
    .option('--pcpus <n>', 'number of physical CPUs (1-64; tdx: 1-31)', String(DEFAULT_MACHINE.pcpus))
    .option('--packages <n>', 'physical packages the pCPUs are split into (1-pcpus)', String(DEFAULT_MACHINE.packages))
    .option('--seconds <s>', 'length of the run (default 2; with --sends, an upper bound of 300)')
    .option('--sends <n>', 'end the run once the guests have sent N interrupts (a count budget)')
    .option('--seed <x>', 'seed of every random choice (default: time-based, printed)')
    .option('--burst <n>', 'IPIs a guest sends between two HLTs (0 = never halt)', String(DEFAULT_STORM.burst))
    .option('--tickless', 'every vCPU but vCPU 0 halts without arming its LAPIC timer (NOHZ idle): a lost wake-up then loses interrupts instead of delaying them to the next tick')
    .option('--deadline-ms <ms>', 'report an actor stuck in one wait for this long', '10000')
    .option('--drain-ms <ms>', 'longest wait for quiescence after the run', '10000')
    .option('--no-trace', 'do not record events (faster; violations then come without their last events)')
    .option('--trace-out <file>', 'write every event to a msgpack file')
    .option('--bug <id:variant>', 'run with the patches of a catalogue variant (repeatable; `hvemu list --json` names them)', (v: string, prev: string[]) => [...prev, v], [] as string[])
    .option('--json', 'print the result as JSON')
    .action(async (f: RunFlags) => {
      process.exitCode = await cmdRun(f);
    });
  program
    .command('list')
    .description('the race catalogue: id, title, seed thread, variants, invariants')
    .option('--json', 'print JSON')
    .action((f: { json?: boolean }) => {
      process.exitCode = cmdList(f);
    });
  program
    .command('race <id>')
    .description('run a race scenario until its first violation or the end of the budget')
    .option('--variant <name>', 'variant (default: the first buggy one)')
    .option('--iterations <n>', 'budget in rounds')
    .option('--seconds <s>', 'budget in seconds (default 10)')
    .option('--seed <x>', 'seed of every random choice (default: time-based, printed)')
    .option('--vcpus <n>', 'vCPUs of the modelled VM (default per scenario)')
    .option('--no-widen', 'no window widening at race points')
    .option('--from <token>', 'controlled, with --continue: replay the start of this token\'s execution, then explore onward')
    .option('--continue', 'controlled, with --from: continue the search after the token\'s prefix (each schedule varies what follows)')
    .option('--prefix-steps <n>', 'controlled, with --from: decisions of the token\'s execution to replay first (default: half of them)')
    .option('--hunt <n>', `free: after a find, search up to N schedules in controlled mode for an exact replay token (default ${DEFAULT_HUNT_SCHEDULES}, at most 60 s; 0 = no hunt)`)
    .option('--deadline-ms <ms>', 'a wait longer than this is a deadlock finding', '10000')
    .option('--trace <file>', 'write the accesses around the first violation as Chrome Trace Event JSON (Perfetto)')
    .option('--mode <mode>', 'free (real threads, the host interleaves) or controlled (one access at a time, x86-TSO, exact replay)', 'free')
    .option('--strategy <name>', 'controlled: random, pct or dfs (default random)')
    .option('--depth <d>', 'controlled, pct: bug depth d (default 2)')
    .option('--preemptions <b>', 'controlled, dfs: preemption bound (default 2)')
    .option('--schedules <n>', 'controlled: schedules to try (default 1000)')
    .option('--json', 'print the result as JSON')
    .action(async (id: string, f: RaceFlags) => {
      process.exitCode = await cmdRace(id, f);
    });
  program
    .command('replay <token>')
    .description('run the execution a controlled race printed as a token again: same violation, same round, same trace digest; draw it as CPU columns')
    .option('--shrink', 'first shrink the schedule (fewer preemptions and early drains, same invariant) and print the shrunk token')
    .option('--trace <file>', 'write the (shrunk) execution\'s last steps as Chrome Trace Event JSON (Perfetto), one track per CPU')
    .option('--json', 'print the result as JSON')
    .action(async (token: string, f: { json?: boolean; shrink?: boolean; trace?: string }) => {
      process.exitCode = await cmdReplay(token, f);
    });
  program
    .command('litmus')
    .argument('[tests...]', 'built-in test NAMEs (SB, MP, IRIW, n6, ...; all when none given), herd7 X86 FILE.litmus files, @INDEX files listing .litmus files')
    .description('run x86 litmus tests (built-in, or herd7 .litmus files in X86 Intel syntax) and compare the final states they show with x86-TSO')
    .option('--mode <mode>', 'controlled (exhaustive bounded DFS over schedules) or free (rounds on real threads)', 'controlled')
    .option('--iterations <n>', `free: rounds per test (default ${DEFAULT_FREE_ROUNDS}); controlled: most executions per test`)
    .option('--preemptions <k>', `controlled: DFS preemption bound (default ${DEFAULT_PREEMPTIONS})`)
    .option('--json', 'print the results as JSON')
    .action(async (names: string[], f: LitmusFlags) => {
      process.exitCode = await cmdLitmus(names, f);
    });
  program
    .command('tour')
    .description('a short tour on the built-in default machine (what `npm start` runs)')
    .option('--seconds <s>', 'budget of each race (the storm runs at most 1 s)', '2')
    .option('--seed <x>', 'seed', '1')
    .option('--json', 'print the results as JSON')
    .action(async (f: { json?: boolean; seconds: string; seed?: string }) => {
      process.exitCode = await cmdTour(f);
    });
  addCampaignCommands(program);
  return program;
}

const USAGE =
  'usage: hvemu run [--vcpus N] [--pcpus M] [--packages P] [--seconds S | --sends N] [--seed X] [--vendor vmx|svm|tdx|savic] [--burst B] [--tickless]\n' +
  '                 [--deadline-ms MS] [--drain-ms MS] [--no-trace] [--trace-out FILE] [--bug ID:VARIANT]... [--json]\n' +
  '       hvemu list [--json]\n' +
  '       hvemu race <id> [--variant V] [--iterations N | --seconds S] [--seed X] [--vcpus N] [--no-widen] [--deadline-ms MS] [--trace FILE] [--hunt N] [--json]\n' +
  '       hvemu race <id> --mode controlled [--strategy random|pct|dfs] [--depth D] [--preemptions B] [--schedules N] [--variant V] [--iterations N] [--seconds S] [--seed X] [--vcpus N] [--deadline-ms MS] [--trace FILE] [--json]\n' +
  '       hvemu race <id> --mode controlled --from TOKEN --continue [--prefix-steps N] [--strategy random|pct] [--schedules N] [--seed X] [--json]\n' +
  '       hvemu replay <token> [--shrink] [--trace FILE] [--json]\n' +
  '       hvemu tour [--seconds S] [--seed X] [--json]\n' +
  '       hvemu litmus [NAME|FILE.litmus|@INDEX...] [--mode controlled|free] [--iterations N] [--preemptions K] [--json]\n' +
  '       hvemu campaign --seeds A..B [--scenarios all|ID,...] [--variants all|buggy|fixed|V,...] [--mode controlled|free] [--shard I/N]\n' +
  '                      [--iterations N] [--schedules N] [--buggy-schedules N] [--seconds S] [--json] [--junit FILE] [--out FILE] [--dry-run]\n' +
  '       hvemu merge PART.json... [--json] [--junit FILE] [--out FILE]\n' +
  '       hvemu --help';

/** Entry point: parse, run, map errors to exit codes. */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    if (argv.length === 0) throw new UsageError('missing command');
    await program.parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.OK;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.exitCode === 0) return EXIT.OK;
      err(USAGE);
      return EXIT.USAGE;
    }
    if (e instanceof UsageError) {
      err(`hvemu: ${e.message}\n${USAGE}`);
      return EXIT.USAGE;
    }
    if (e instanceof EmuError && e.code === 'EMU_ERR_BAD_PARAM') {
      err(`hvemu: ${e.message}\n${USAGE}`);
      return EXIT.USAGE;
    }
    if (e instanceof EmuError) {
      err(`hvemu: ${e.code}: ${e.message}`);
      return EXIT.FINDING;
    }
    err(`hvemu: internal error, please report (node ${process.version}):\n${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    return EXIT.INTERNAL;
  } finally {
    await closeSharedPool();
  }
}

function isEntryPoint(): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    // Through npm's bin symlink argv[1] is the link: compare real paths.
    return pathToFileURL(realpathSync(script)).href === import.meta.url;
  } catch {
    return false;
  }
}

const isEntry = isEntryPoint();
if (isEntry) {
  process.exitCode = await main(process.argv.slice(2));
}
