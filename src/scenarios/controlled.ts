/**
 * Races in controlled mode: the scenario's actors run on the same pool threads with the same
 * code, but one labelled access at a time in an order a strategy chooses, with x86-TSO store
 * buffers (see mem/controlled). An execution is a number of rounds under one schedule; a search
 * runs executions (schedules) until one breaks an invariant or the budget ends. Every execution
 * is a function of its parameters, so a failing one is printed as a replay token that reproduces
 * the same violation, in the same round, with the same trace digest, on any host, under any load.
 */
import { chromeTrace, writeChromeTrace } from '../trace/chrome.js';
import { checkOutputPath } from '../trace/output-path.js';
import { loadScenario } from './index.js';
import { deadlockViolation } from '../invariants/deadlock.js';
import { RunState, VM } from '../mem/layout.js';
import { Access, createMachineMemory, type MachineMemory } from '../mem/access.js';
import { abortControl, controlSteps, createControlBlock, describeControl, nextDfsPrefix, readControlSummary, type ControlSummary, type StrategyName } from '../mem/controlled.js';
import { badParam, fromWire } from '../errors.js';
import type { Violation } from '../invariants/checks.js';
import { deriveSeed } from '../util/prng.js';
import { sharedPool, type ActorPool } from '../runtime/pool.js';
import { checkInt, checkNumber } from '../runtime/config.js';
import { READY_STALL_MS, waitUntilReady } from '../runtime/ready.js';
import { sharedClockMs } from '../trace/events.js';
import { resolveRace, stuckRoles, type FirstViolation, type RaceResult } from './runner.js';
import type { ScenarioDef, ScenarioParams } from './define.js';
import type { ScenarioTask, ScenarioTaskResult } from './protocol.js';
import { litmusDiagram } from './diagram.js';

/** Options of a controlled search (`hvemu race --mode controlled`). */
export interface ControlledRaceOptions {
  variant?: string;
  /** Rounds per execution (default 2). */
  iterations?: number;
  /** Executions to try (default 1000; DFS stops earlier when it has run every schedule). */
  schedules?: number;
  /** Optional wall-clock budget over the whole search (whole executions only). */
  seconds?: number;
  /** Seed of the search; execution i uses a seed derived from it. */
  seed?: number;
  vcpus?: number;
  /** `random` (default), `pct` or `dfs`. */
  strategy?: StrategyName;
  /** PCT depth d (default 2). */
  depth?: number;
  /** DFS preemption bound (default 2). */
  preemptions?: number;
  /** Longest a wait may block, on the logical clock (ms, default 10000). */
  deadlineMs?: number;
  pool?: ActorPool;
  signal?: AbortSignal;
  /** Decisions per execution before it is abandoned as a livelock (default 2,000,000). */
  maxSteps?: number;
  /** Wall-clock time without a scheduling decision before an execution counts as hung (ms, default 60000). */
  watchdogMs?: number;
  /**
   * Write the failing execution's last steps (up to 4096) as Chrome Trace Event JSON (Perfetto):
   * one track per CPU, store-buffer drains on the track of the CPU whose store became visible.
   * Checked before the search; written atomically; a failed write is reported in `trace.error`.
   */
  traceFile?: string;
  /**
   * Continue from a replay token: replay the first `prefixSteps` decisions of its execution (same
   * scenario, variant, vCPUs, rounds and inputs), then let the strategy explore onward; each
   * schedule varies only the choices after the prefix. Not with `dfs`.
   */
  from?: string;
  /** With `from`: decisions of the token's execution to replay first (default: half of them). */
  prefixSteps?: number;
}

/** Everything needed to run one execution again. */
export interface ReplaySpec {
  scenario: string;
  /** A user's scenario: the module that exports it (ScenarioDef.module). */
  module?: string;
  /**
   * Seed of the strategy's choices when it differs from `seed` (which then seeds only the
   * scenario's inputs): a search continued from a token keeps the token's inputs and varies this.
   */
  strategySeed?: number;
  variant: string;
  vcpus: number;
  /** Rounds of the execution. */
  iterations: number;
  strategy: StrategyName;
  /** The execution's own seed (strategy choices and the scenario's seeded inputs). */
  seed: number;
  depth: number;
  stepsEstimate: number;
  deadlineMs: number;
  maxSteps: number;
  /**
   * Choices to follow (DFS, a shrunk schedule): sparse [decision index, choice] pairs; every
   * other decision up to the last pair, and every one after it, takes choice 0 (no preemption).
   */
  choices?: [number, number][];
  /** The same as a dense list (DFS drivers); `choices` wins when both are given. */
  prefix?: number[];
}

/** Sparse form of a dense choice list (only the non-zero choices). */
function sparse(prefix: readonly number[]): [number, number][] {
  const out: [number, number][] = [];
  prefix.forEach((c, i) => {
    if (c !== 0) out.push([i, c]);
  });
  return out;
}

/** Dense form of sparse choices. */
function dense(choices: readonly [number, number][]): number[] {
  const len = choices.reduce((m, [i]) => Math.max(m, i + 1), 0);
  const out = new Array<number>(len).fill(0);
  for (const [i, c] of choices) out[i] = c;
  return out;
}

/** Result of a controlled race (the `hvemu race --mode controlled --json` document). */
export interface ControlledRaceResult extends RaceResult {
  mode: 'controlled';
  strategy: StrategyName;
  /** Executions run. */
  schedules: number;
  /** Decisions over all executions. */
  steps: number;
  /** DFS ran every schedule within its preemption bound. */
  exhausted: boolean;
  /** The failing execution (or the last one): token, digest, steps. */
  replay: string | null;
  traceDigest: string | null;
  execution: { steps: number; drains: number; preemptions: number; clockMs: number; status: string } | null;
  /** What the strategy guarantees, in words. */
  guarantee: string;
}

export type { StrategyName };

const TOKEN_PREFIX = 'hv1.';

/** Encode a replay spec as a compact token (base64url JSON). @emulator */
export function encodeReplay(spec: ReplaySpec): string {
  return TOKEN_PREFIX + Buffer.from(JSON.stringify(spec)).toString('base64url');
}

/** Decode a replay token (EMU_ERR_BAD_PARAM naming `token` when it is not one). @emulator */
export function decodeReplay(token: string): ReplaySpec {
  if (typeof token !== 'string' || !token.startsWith(TOKEN_PREFIX)) throw badParam('token', `not a replay token (they start with "${TOKEN_PREFIX}")`);
  let spec: ReplaySpec;
  try {
    spec = JSON.parse(Buffer.from(token.slice(TOKEN_PREFIX.length), 'base64url').toString('utf8')) as ReplaySpec;
  } catch {
    throw badParam('token', 'the token is damaged (not base64url JSON)');
  }
  for (const k of ['scenario', 'variant', 'strategy'] as const) if (typeof spec[k] !== 'string') throw badParam('token', `the token lacks ${k}`);
  for (const k of ['vcpus', 'iterations', 'seed', 'depth', 'stepsEstimate', 'deadlineMs', 'maxSteps'] as const) if (!Number.isInteger(spec[k])) throw badParam('token', `the token lacks ${k}`);
  return spec;
}

/** One controlled execution's outcome. */
export interface Execution {
  iterations: number;
  first: FirstViolation | null;
  failure: RaceResult['failure'];
  summary: ControlSummary;
  elapsedMs: number;
  /** The machine memory at the end (read it with an Access on the main thread). */
  mem: MachineMemory;
  /** Actor names in order, and the race-point labels the actors used (id → name). */
  roles: string[];
  labels: Map<number, string>;
}

/** Default wall-clock time without a single scheduling decision before an execution counts as hung. */
const WATCHDOG_MS = 60_000;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Run one execution of a scenario under one schedule (the actors on `pool`, the main thread only
 * opens the gate and watches for a hang). @emulator
 */
export async function runExecution(def: ScenarioDef, params: ScenarioParams, spec: ReplaySpec, pool: ActorPool, watchdogMs = WATCHDOG_MS): Promise<Execution> {
  const roles = def.roles(params);
  const layoutCfg = { ...def.layout(params), extraActors: roles.length, extraActorNames: roles, ringRecords: 1024 };
  const mem = createMachineMemory(layoutCfg);
  const L = mem.layout;
  const main = new Access(mem, { actor: L.mainActor, name: 'main', deadlineMs: spec.deadlineMs });
  def.init(main, params);
  const control = createControlBlock({ actors: roles.length, strategy: spec.strategy, seed: spec.strategySeed ?? spec.seed, depth: spec.depth, stepsEstimate: spec.stepsEstimate, maxSteps: spec.maxSteps, ...(spec.choices ? { prefix: dense(spec.choices) } : spec.prefix ? { prefix: spec.prefix } : {}) });
  pool.ensureCapacity(roles.length);
  const epochMs = sharedClockMs();
  const results: (ScenarioTaskResult | undefined)[] = roles.map(() => undefined);
  const promises = roles.map((role, index) => {
    const task: ScenarioTask = { kind: 'scenario', sab: mem.sab, layout: layoutCfg, scenario: def.id, variant: params.variant.name, vcpus: params.vcpus, seed: params.seed, index, name: role, deadlineMs: spec.deadlineMs, epochMs, trace: false, maxIterations: spec.iterations, control };
    if (def.module) task.module = def.module;
    return pool.runScenario<ScenarioTask, ScenarioTaskResult>(task).then(
      (r) => (results[index] = r),
      (err: unknown) => (results[index] = { name: role, ok: false, error: { code: 'EMU_ERR_ACTOR_CRASHED', message: `${role}: worker crashed: ${err instanceof Error ? err.message : String(err)}`, actor: role } }),
    );
  });
  const settled = () => results.filter((r) => r !== undefined).length;
  const readiness = await waitUntilReady(() => main.peek(L.vm(VM.READY_COUNT)), roles.length, () => settled() > 0, READY_STALL_MS);
  // Scheduling starts only once every actor joined; one that never became ready would leave the
  // others waiting for it: stop everyone now and report it.
  const notReady = !readiness.all && settled() === 0 ? `only ${readiness.ready} of ${roles.length} actors became ready (none more for ${READY_STALL_MS / 1000} s)` : '';
  if (notReady) {
    main.poke(L.vm(VM.ABORT), 1);
    abortControl(control);
  }
  const t0 = performance.now();
  main.poke(L.vm(VM.RUN_STATE), RunState.RUNNING);
  main.poke(L.vm(VM.START_GATE), 1);
  main.notify(L.vm(VM.START_GATE), Infinity, 'runtime:start-gate');
  // Watchdog: the run needs no wall clock, but a crashed thread or a bug in the hand-off must
  // not hang the process. No decision for WATCHDOG_MS = hung: stop everyone and report.
  let lastSteps = -1;
  let lastProgress = performance.now();
  let stuck: { actor: string; status: string; waitingOn: string }[] = [];
  let hung = false;
  let hangState = '';
  while (settled() < roles.length) {
    await sleep(5);
    if (results.some((r) => r && !r.ok)) main.poke(L.vm(VM.ABORT), 1);
    const steps = controlSteps(control);
    if (steps !== lastSteps) {
      lastSteps = steps;
      lastProgress = performance.now();
    } else if (!hung && performance.now() - lastProgress > watchdogMs) {
      hung = true;
      stuck = stuckRoles(main, roles, results);
      hangState = describeControl(control, roles);
      main.poke(L.vm(VM.ABORT), 1);
      abortControl(control);
    } else if (hung && performance.now() - lastProgress > watchdogMs + 10_000) {
      await pool.destroy();
      break;
    }
  }
  await Promise.race([Promise.all(promises), sleep(1000)]);
  const elapsedMs = performance.now() - t0;
  const summary = readControlSummary(control);
  const lead = results[0];
  const failures = results.filter((r): r is ScenarioTaskResult => r !== undefined && !r.ok);
  const root = failures.find((r) => r.error?.code !== 'EMU_ERR_ABORTED') ?? failures[0];
  const f = lead?.first ?? null;
  let first: FirstViolation | null = f && f.violations[0] ? { iteration: f.iteration, elapsedMs: f.elapsedMs, invariant: f.violations[0].invariant, detail: f.violations[0].message, violations: f.violations } : null;
  let failure: RaceResult['failure'] = null;
  const iterations = lead?.iterations ?? main.peek(L.vm(VM.ITERATIONS));
  if (notReady) {
    failure = { code: 'EMU_ERR_DEADLINE', message: notReady, stuck: stuckRoles(main, roles, results) };
  } else if (root?.error?.code === 'EMU_ERR_DEADLINE') {
    // A deadlock is a finding: the wait-for cycle (or every actor's report), on the logical clock,
    // so it is the same every run.
    const v: Violation = deadlockViolation(failures);
    first = { iteration: main.peek(L.vm(VM.ITERATIONS)), elapsedMs, invariant: v.invariant, detail: v.message, violations: [v] };
  } else if (hung) {
    failure = { code: 'EMU_ERR_DEADLINE', message: `no scheduling decision for ${watchdogMs / 1000} s of wall-clock time (a hang in the controlled runtime): ${hangState}`, stuck };
  } else if (summary.status === 'STEP_LIMIT') {
    failure = { code: 'EMU_ERR_DEADLINE', message: `the execution took more than ${spec.maxSteps} scheduling decisions (a livelock under this schedule?)`, stuck: [] };
  } else if (root?.error) {
    const e = fromWire(root.error);
    failure = { code: e.code, message: e.message, actor: root.name, stuck: [] };
  }
  const labels = new Map<number, string>();
  for (const res of results) for (const [name, id] of res?.labels ?? []) labels.set(id >>> 0, name);
  return { iterations, first, failure, summary, elapsedMs, mem, roles, labels };
}

/** Human words for what a strategy guarantees. */
function guaranteeOf(strategy: StrategyName, depth: number, n: number, k: number, preemptions: number, schedules: number, exhausted: boolean): string {
  if (strategy === 'pct') {
    const p = 1 / (n * Math.pow(k, depth - 1));
    return `PCT d=${depth}: each execution finds a bug of depth ≤ ${depth} with probability ≥ 1/(n·k^(d−1)) = 1/(${n}·${k}^${depth - 1}) ≈ ${p.toExponential(1)} (n = ${n} entities, k = ${k} steps)`;
  }
  if (strategy === 'dfs') return exhausted ? `all ${schedules} schedules with ≤ ${preemptions} preemptions explored` : `DFS with ≤ ${preemptions} preemptions: ${schedules} schedules explored, not exhaustive (budget)`;
  return `random: ${schedules} schedules, no coverage guarantee`;
}

/** Validate controlled options (EMU_ERR_BAD_PARAM naming the parameter). @emulator */
export function resolveControlled(id: string | ScenarioDef, o: ControlledRaceOptions) {
  const from = o.from === undefined ? undefined : decodeReplay(o.from);
  if (from) {
    const name = typeof id === 'string' ? id : id.id;
    if (from.scenario !== name) throw badParam('from', `the token is a run of ${from.scenario}, not ${name}`);
    if (o.variant !== undefined && o.variant !== from.variant) throw badParam('variant', `the token is a run of variant ${from.variant}; a continued search keeps it`);
    if (o.strategy === 'dfs') throw badParam('strategy', 'dfs cannot continue from a token (use random or pct)');
    o = { ...o, variant: from.variant, vcpus: from.vcpus, iterations: from.iterations, seed: o.seed ?? from.seed };
  }
  const prefixSteps = o.prefixSteps === undefined ? undefined : checkInt('prefixSteps', o.prefixSteps, 0, 1e9);
  if (prefixSteps !== undefined && !from) throw badParam('prefixSteps', 'needs from (a token to continue)');
  const base = resolveRace(id, { ...(o.variant === undefined ? {} : { variant: o.variant }), iterations: o.iterations ?? 2, ...(o.seed === undefined ? {} : { seed: o.seed }), ...(o.vcpus === undefined ? {} : { vcpus: o.vcpus }) });
  const strategy = o.strategy ?? 'random';
  if (!['pct', 'random', 'dfs'].includes(strategy)) throw badParam('strategy', `"${String(strategy)}" is not one of pct, random, dfs`);
  const rounds = checkInt('iterations', o.iterations ?? 2, 1, 1_000_000);
  const schedules = checkInt('schedules', o.schedules ?? 1000, 1, 1e9);
  const depth = checkInt('depth', o.depth ?? 2, 1, 16);
  const preemptions = checkInt('preemptions', o.preemptions ?? 2, 0, 64);
  const deadlineMs = checkInt('deadlineMs', o.deadlineMs ?? 10_000, 1, 3_600_000);
  const maxSteps = checkInt('maxSteps', o.maxSteps ?? 2_000_000, 1000, 0x7fffffff);
  const seconds = o.seconds === undefined ? undefined : checkNumber('seconds', o.seconds, 0.01, 86_400);
  const watchdogMs = checkInt('watchdogMs', o.watchdogMs ?? WATCHDOG_MS, 100, 3_600_000);
  if (o.traceFile !== undefined) checkOutputPath('traceFile', o.traceFile);
  return { ...base, strategy, rounds, schedules, depth, preemptions, deadlineMs, maxSteps, seconds, watchdogMs, from, prefixSteps };
}

/** PCT's first estimate of an execution's length in scheduling decisions. */
const INITIAL_STEPS_ESTIMATE = 500;

/**
 * Search a scenario's schedules in controlled mode until one breaks an invariant (or deadlocks),
 * or the budget ends. Rejects only for bad options. @emulator
 */
export async function runControlledRace(id: string | ScenarioDef, o: ControlledRaceOptions = {}): Promise<ControlledRaceResult> {
  const r = resolveControlled(id, o);
  const { def, params } = r;
  const pool = o.pool ?? (await sharedPool(def.roles(params).length));
  const t0 = performance.now();
  // PCT draws its change points from 1..k, k the estimated length of an execution: start small
  // and raise it to the longest execution seen (a k far above the real length puts most change
  // points after the end, and PCT degenerates to running each actor until it blocks).
  let stepsEstimate = INITIAL_STEPS_ESTIMATE;
  let totalSteps = 0;
  let schedules = 0;
  let exhausted = false;
  let prefix: number[] | undefined = r.strategy === 'dfs' ? [] : undefined;
  let last: { spec: ReplaySpec; ex: Execution } | null = null;
  // Continuing from a token: its execution once, for its decisions; their first prefixSteps are
  // every schedule's prefix, and the token's seed keeps the scenario's inputs.
  let inputsSeed: number | undefined;
  if (r.from) {
    const ex0 = await runExecution(def, { ...params, seed: r.from.seed }, r.from, pool, r.watchdogMs);
    if (ex0.summary.logTruncated) throw badParam('from', `the token's execution took ${ex0.summary.steps} decisions, more than the decision log keeps`);
    const p = Math.min(r.prefixSteps ?? Math.floor(ex0.summary.log.length / 2), ex0.summary.log.length);
    prefix = ex0.summary.log.slice(0, p).map((d) => d.choice);
    inputsSeed = r.from.seed;
  }
  for (let i = 0; i < r.schedules; i++) {
    if (o.signal?.aborted) break;
    if (r.seconds !== undefined && performance.now() - t0 >= r.seconds * 1000) break;
    const spec: ReplaySpec = {
      scenario: def.id,
      ...(def.module ? { module: def.module } : {}),
      variant: params.variant.name,
      vcpus: params.vcpus,
      iterations: r.rounds,
      strategy: r.strategy,
      seed: inputsSeed ?? (r.strategy === 'dfs' ? params.seed : deriveSeed(params.seed, i)),
      ...(inputsSeed !== undefined ? { strategySeed: deriveSeed(params.seed, i) } : {}),
      depth: r.depth,
      stepsEstimate,
      deadlineMs: r.deadlineMs,
      maxSteps: r.maxSteps,
      ...(prefix ? { choices: sparse(prefix) } : {}),
    };
    const ex = await runExecution(def, { ...params, seed: spec.seed }, spec, pool, r.watchdogMs);
    schedules++;
    totalSteps += ex.summary.steps;
    last = { spec, ex };
    if (ex.first || ex.failure) break;
    stepsEstimate = Math.max(stepsEstimate, r.strategy === 'pct' ? ex.summary.pctSteps : ex.summary.steps);
    if (r.strategy === 'dfs') {
      if (ex.summary.logTruncated) break;
      const next = nextDfsPrefix(ex.summary.log, r.preemptions);
      if (!next) {
        exhausted = true;
        break;
      }
      prefix = next;
    }
  }
  const ex = last?.ex;
  const n = 2 * def.roles(params).length;
  const result = controlledResult(def, params, params.seed, r.strategy, ex, {
    elapsedMs: performance.now() - t0,
    interrupted: o.signal?.aborted ?? false,
    schedules,
    steps: totalSteps,
    exhausted,
    replay: last && (ex?.first || ex?.failure) ? encodeReplay(last.spec) : null,
    guarantee: guaranteeOf(r.strategy, r.depth, n, stepsEstimate, r.preemptions, schedules, exhausted),
  });
  // The trace of the failing execution (a clean search has nothing to show).
  if (o.traceFile !== undefined && ex && (ex.first || ex.failure)) result.trace = writeExecutionTrace(o.traceFile, ex);
  return result;
}

/** What the shrinker did. */
export interface ShrinkReport {
  /** Executions tried. */
  tries: number;
  before: { steps: number; preemptions: number; choices: number };
  after: { steps: number; preemptions: number; choices: number };
}

/** A replayed (and possibly shrunk) execution with its CPU-column diagram. */
export interface ReplayResult extends ControlledRaceResult {
  /** The kernel-style diagram of the execution's last racing accesses (null without a violation). */
  diagram: string | null;
  shrink: ShrinkReport | null;
}

/** Label id the trace gives a store-buffer drain (not a race point of its own). */
const DRAIN_LABEL = 0;

/**
 * An execution's last steps as a Chrome trace (Perfetto): one track per actor, `ts` = the step's
 * position, a drain on its actor's track, flow arrows between accesses of one word by two CPUs.
 * @emulator
 */
export function executionTrace(ex: Execution): { traceEvents: unknown[] } {
  const n = ex.roles.length;
  const labels = new Map(ex.labels);
  labels.set(DRAIN_LABEL, 'sb:drain (buffered store becomes visible)');
  const records = ex.summary.tail.map((s, i) => ({ tid: s.entity >= n ? s.entity - n : s.entity, label: s.entity >= n ? DRAIN_LABEL : s.label >>> 0, addr: s.addr, seq: i, value: s.value }));
  return chromeTrace(records, ex.roles, labels, ex.mem.layout);
}

/** Write the trace of `ex` to `file` (atomically); the result's `trace` field. */
function writeExecutionTrace(file: string, ex: Execution): NonNullable<ControlledRaceResult['trace']> {
  const doc = executionTrace(ex);
  const events = ex.summary.tail.length;
  try {
    writeChromeTrace(file, doc);
    return { file, events, recorded: ex.summary.steps, ringRecords: events, error: null };
  } catch (e) {
    return { file, events, recorded: ex.summary.steps, ringRecords: events, error: e instanceof Error ? e.message : String(e) };
  }
}

/** The result document of a search (its last execution) or of one replayed execution. */
function controlledResult(
  def: ScenarioDef,
  params: ScenarioParams,
  seed: number,
  strategy: StrategyName,
  ex: Execution | undefined,
  run: Pick<ControlledRaceResult, 'elapsedMs' | 'interrupted' | 'schedules' | 'steps' | 'exhausted' | 'replay' | 'guarantee'>,
): ControlledRaceResult {
  return {
    scenario: def.id,
    variant: params.variant.name,
    seed,
    vcpus: params.vcpus,
    iterations: ex?.iterations ?? 0,
    violations: ex?.first ? ex.first.violations.length : 0,
    first: ex?.first ?? null,
    widen: null,
    failure: ex?.failure ?? null,
    trace: null,
    mode: 'controlled',
    strategy,
    traceDigest: ex?.summary.traceDigest ?? null,
    execution: ex ? { steps: ex.summary.steps, drains: ex.summary.drains, preemptions: ex.summary.preemptions, clockMs: ex.summary.clockMs, status: ex.summary.status } : null,
    ...run,
  };
}

/**
 * Shrink a failing execution (delta debugging over its schedule, greedy): replay its decisions
 * as an explicit choice list, then set non-zero choices to 0 (no preemption, no early drain),
 * first in halves, then one at a time, keeping every change under which the same invariant still
 * breaks. Bounded by `maxTries` executions. @emulator
 */
async function shrink(def: ScenarioDef, params: ScenarioParams, spec: ReplaySpec, ex: Execution, pool: ActorPool, maxTries: number): Promise<{ spec: ReplaySpec; ex: Execution; report: ShrinkReport }> {
  const invariant = ex.first?.invariant;
  const before = { steps: ex.summary.steps, preemptions: ex.summary.preemptions, choices: ex.summary.log.filter((d) => d.choice !== 0).length };
  let best = { spec, ex };
  let tries = 0;
  if (!invariant || ex.summary.logTruncated) return { ...best, report: { tries, before, after: before } };
  const attempt = async (choices: [number, number][]): Promise<boolean> => {
    tries++;
    const s2: ReplaySpec = { ...spec, strategy: 'dfs', choices };
    delete s2.prefix;
    const e2 = await runExecution(def, params, s2, pool);
    if (e2.first?.invariant !== invariant || e2.summary.logTruncated) return false;
    best = { spec: s2, ex: e2 };
    return true;
  };
  // The explicit schedule of the original execution (it must reproduce before anything shrinks).
  let cur = sparse(ex.summary.log.map((d) => d.choice));
  if (!(await attempt(cur))) return { ...best, report: { tries, before, after: before } };
  // ddmin-style: drop chunks of non-zero choices, halving the chunk size.
  for (let size = Math.max(1, cur.length >> 1); size >= 1 && tries < maxTries; size >>= 1) {
    for (let at = 0; at < cur.length && tries < maxTries; ) {
      const candidate = cur.slice(0, at).concat(cur.slice(at + size));
      if (await attempt(candidate)) cur = sparse(best.ex.summary.log.map((d) => d.choice));
      else at += size;
    }
  }
  const after = { steps: best.ex.summary.steps, preemptions: best.ex.summary.preemptions, choices: cur.length };
  return { ...best, report: { tries, before, after } };
}

/**
 * Run a replay token's execution again — same violation, same round, same trace digest — and
 * draw it; with `shrink`, first shrink its schedule and return the shrunk one (and its token).
 * @emulator
 */
export async function replayRace(token: string, o: { pool?: ActorPool; shrink?: boolean; maxTries?: number; traceFile?: string } = {}): Promise<ReplayResult> {
  const spec = decodeReplay(token);
  if (o.traceFile !== undefined) checkOutputPath('traceFile', o.traceFile);
  if (spec.module !== undefined) await loadScenario(spec.scenario, spec.module);
  const { def, params } = resolveRace(spec.scenario, { variant: spec.variant, vcpus: spec.vcpus, seed: spec.seed, iterations: spec.iterations });
  const pool = o.pool ?? (await sharedPool(def.roles(params).length));
  const t0 = performance.now();
  let ex = await runExecution(def, params, spec, pool);
  let run = { spec, ex };
  let report: ShrinkReport | null = null;
  if (o.shrink && ex.first) {
    const s = await shrink(def, params, spec, ex, pool, checkInt('maxTries', o.maxTries ?? 400, 1, 100_000));
    run = { spec: s.spec, ex: s.ex };
    ex = s.ex;
    report = s.report;
  }
  const outToken = run.spec === spec ? token : encodeReplay(run.spec);
  const guarantee = report ? `shrunk in ${report.tries} executions: ${report.before.choices} → ${report.after.choices} non-default choices, ${report.before.preemptions} → ${report.after.preemptions} preemptions, ${report.before.steps} → ${report.after.steps} steps` : 'replay of one recorded execution';
  return {
    ...controlledResult(def, params, run.spec.seed, run.spec.strategy, ex, { elapsedMs: performance.now() - t0, interrupted: false, schedules: 1, steps: ex.summary.steps, exhausted: false, replay: outToken, guarantee }),
    // The replayed (shrunk) execution's trace, written whether or not it failed.
    ...(o.traceFile !== undefined ? { trace: writeExecutionTrace(o.traceFile, ex) } : {}),
    diagram: ex.first ? litmusDiagram(ex.summary.tail, ex.roles, ex.labels, ex.mem.layout) : null,
    shrink: report,
  };
}

/** What the controlled hunt after a free-mode find found. */
export interface HuntResult {
  /** A controlled execution broke an invariant (or deadlocked). */
  found: boolean;
  /** Its invariant, and whether it is the free-mode find's. */
  invariant: string | null;
  sameInvariant: boolean;
  /** Its replay token (exact, any host), null when none was found. */
  replay: string | null;
  schedules: number;
  elapsedMs: number;
}

/**
 * After a free-mode find, which the host's interleaving made and nothing can replay: search the
 * same scenario, variant, vCPUs and seed in controlled mode (random strategy, bounded by
 * `schedules` and `seconds`) for an execution that breaks an invariant, so the find gets an exact
 * replay token — or say plainly that none was found. @emulator
 */
export async function huntControlled(found: Pick<RaceResult, 'scenario' | 'variant' | 'seed' | 'vcpus' | 'first'>, o: { schedules?: number; seconds?: number; pool?: ActorPool; signal?: AbortSignal } = {}): Promise<HuntResult> {
  const r = await runControlledRace(found.scenario, {
    variant: found.variant,
    seed: found.seed,
    vcpus: found.vcpus,
    schedules: checkInt('schedules', o.schedules ?? 1000, 1, 1_000_000),
    seconds: o.seconds ?? 60,
    ...(o.pool ? { pool: o.pool } : {}),
    ...(o.signal ? { signal: o.signal } : {}),
  });
  const invariant = r.first?.invariant ?? null;
  return { found: r.replay !== null, invariant, sameInvariant: invariant !== null && invariant === found.first?.invariant, replay: r.replay, schedules: r.schedules, elapsedMs: r.elapsedMs };
}
