/**
 * Running x86 litmus tests — the built-in catalogue ({@link ./litmus-tests}) or herd-format
 * `.litmus` files ({@link ./litmus-parse}) — and comparing what they show with x86-TSO (the final
 * states ./litmus-tso enumerates).
 *
 * - `controlled`: bounded DFS over the controlled runtime's schedules (mem/controlled: one
 *   labelled access at a time, x86-TSO store buffers, every drain of a buffered store a step of
 *   its own). Each execution is one round of the test; the next execution's prefix comes from
 *   `nextDfsPrefix` until every schedule within the preemption bound has run (`exhaustive`). The
 *   DFS branches only from the moment the threads leave the start gate to the end of their
 *   instructions (see {@link exploreControlled}): branching over the round barrier and the
 *   bookkeeping too makes even SB take more than 20,000 executions at one preemption. The SET of
 *   final states reached must be exactly the set x86-TSO allows: each relaxed state reached and
 *   nothing forbidden.
 * - `free`: N rounds on real threads (the race runner; writeOnce is a plain store that really
 *   sits in the host CPU's store buffer): a histogram of final states, none of which may be one
 *   x86-TSO forbids. Which allowed states show up depends on the host.
 */
import { Access } from '../mem/access.js';
import { nextDfsPrefix } from '../mem/controlled.js';
import { badParam } from '../errors.js';
import { sharedPool, type ActorPool } from '../runtime/pool.js';
import { checkInt } from '../runtime/config.js';
import { runExecution, type Execution, type ReplaySpec } from './controlled.js';
import { runRace } from './runner.js';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { LITMUS_VARIANT, finalState, litmusPlan, published, scenarioOf, stateAt, takeLitmusMemory } from './litmus-scenario.js';
import { findVariant, type ScenarioDef } from './define.js';
import { LITMUS_TESTS, conditionHolds, findLitmusTest, formatState, herdKind, propText, readIndex, satisfies, stateRecord, type LitmusQuantifier, type LitmusTest, type TsoVerdict } from './litmus-tests.js';
import { loadLitmusFile } from './litmus-parse.js';
import { compareValues, tsoResult, tsoStates, tsoVerdict } from './litmus-tso.js';

/** How a litmus test is run. */
export type LitmusMode = 'controlled' | 'free';

/** Options of {@link runLitmus}. */
export interface LitmusOptions {
  /** `controlled` (default): exhaustive bounded DFS; `free`: rounds on real threads. */
  mode?: LitmusMode;
  /**
   * free: rounds (default {@link DEFAULT_FREE_ROUNDS}). controlled: the most executions to run,
   * counting the few that locate the window (default {@link DEFAULT_MAX_EXECUTIONS}); the DFS
   * normally ends long before.
   */
  iterations?: number;
  /** controlled: DFS preemption bound (default {@link DEFAULT_PREEMPTIONS}). */
  preemptions?: number;
  pool?: ActorPool;
  /** controlled: wall-clock time without a scheduling decision before an execution counts as hung (ms). */
  watchdogMs?: number;
}

/** Default rounds of a free run. */
export const DEFAULT_FREE_ROUNDS = 10_000;
/** Default budget of executions of a controlled run. */
export const DEFAULT_MAX_EXECUTIONS = 100_000;
/**
 * Default DFS preemption bound. Drains are never preemptions, so every timing of every store's
 * drain is explored at any bound, and neither is choosing who runs first or who runs after a
 * thread finished; the bound only limits switches away from a thread that could continue. One
 * suffices for every state x86-TSO allows in the built-in catalogue (the test suite checks it);
 * a longer test may need more (a state missing is reported with the bound). Two explores three
 * to five times as many schedules (IRIW: about 3,300 executions at one).
 */
export const DEFAULT_PREEMPTIONS = 1;

/** One final state seen, with how often. */
export type LitmusStateCount = Record<string, number> & { count: number };

/** What a litmus run showed, next to what x86-TSO allows. */
export interface LitmusResult {
  name: string;
  mode: LitmusMode;
  /** The test's file (package-relative for a built-in test). */
  file: string;
  /** Where the test and its verdict come from. */
  source: string;
  /** herd's quantifier of the final condition. */
  quantifier: LitmusQuantifier;
  /** herd's kind of the test, from the quantifier (`Test SB Allowed`). */
  kind: 'Allowed' | 'Forbidden' | 'Required';
  /** The condition's proposition, herd-spelled, e.g. `0:EAX=0 /\ 1:EAX=0`. */
  condition: string;
  /** x86-TSO's verdict on the proposition: some allowed final state satisfies it (Allow) or none (Forbid). */
  tso: TsoVerdict;
  /** What herd7 prints for the condition over the states x86-TSO allows (Ok / No). */
  expected: 'Ok' | 'No';
  /** Final states seen, with counts (controlled: executions; free: rounds). */
  states: LitmusStateCount[];
  /** Final states x86-TSO allows, herd-spelled (`0:EAX=0; 1:EAX=0;`). */
  allowed: string[];
  /** States seen that x86-TSO forbids. */
  forbiddenObserved: string[];
  /** States x86-TSO allows that were not seen (a finding in controlled mode only). */
  missing: string[];
  /** A state satisfying the condition's proposition was seen. */
  conditionObserved: boolean;
  /** The condition holds over the states seen (herd's rule: exists — some, ~exists — none, forall — every one satisfies the proposition). */
  conditionHolds: boolean;
  /** herd's word for it: `Ok` (the condition holds) or `No`. */
  observation: 'Ok' | 'No';
  /** herd's witnesses: executions (controlled) or rounds (free) whose state satisfies the proposition (for ~exists: does not), and the others. */
  positive: number;
  /** The other executions or rounds. */
  negative: number;
  /** herd's Observation word: Never, Sometimes or Always (the proposition over the runs). */
  herdObservation: 'Never' | 'Sometimes' | 'Always';
  /**
   * `match`: controlled — the states reached are exactly the allowed ones and the DFS ran every
   * schedule within its bound; free — nothing forbidden was seen. `mismatch` otherwise.
   */
  verdict: 'match' | 'mismatch';
  /** Why the verdict is mismatch (empty on a match). */
  reasons: string[];
  /** controlled: the DFS ran every schedule within the preemption bound; free: null. */
  exhaustive: boolean | null;
  /** controlled: the preemption bound; free: null. */
  preemptions: number | null;
  /** Executions (controlled) or rounds (free) run. */
  runs: number;
  /** controlled: scheduling decisions over all executions. */
  steps: number;
  /** The runtime failed (an actor crashed, a hang): what it said. */
  failure: string | null;
  elapsedMs: number;
}

/** Check a test name (EMU_ERR_BAD_PARAM naming it and the known tests otherwise). @emulator */
export function resolveLitmusTest(name: string): LitmusTest {
  const t = findLitmusTest(name);
  if (!t) throw badParam('test', `unknown litmus test "${name}" (known: ${LITMUS_TESTS.map((x) => x.name).join(', ')})`);
  return t;
}

/**
 * The tests command-line arguments name, in order: a `.litmus` file (parsed: EMU_ERR_BAD_PARAM
 * naming file, line and token if it is outside the subset), an `@file` index listing `.litmus`
 * files relative to it (herd's `@all`), or the name of a built-in test. @emulator
 */
export function resolveLitmusArgs(args: readonly string[]): LitmusTest[] {
  return args.flatMap((a) => {
    if (a.startsWith('@')) {
      const index = a.slice(1);
      let text: string;
      try {
        text = readFileSync(index, 'utf8');
      } catch (e) {
        throw badParam('litmus', `index ${index} cannot be read (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
      }
      return readIndex(text).map((f) => loadLitmusFile(join(dirname(index), f)));
    }
    if (a.endsWith('.litmus')) return [loadLitmusFile(a)];
    return [resolveLitmusTest(a)];
  });
}

/** herd's spelling of the condition's proposition. @emulator */
export function conditionText(t: LitmusTest): string {
  return propText(t.condition.prop);
}

/**
 * Compare the final states seen (herd-spelled state → its values and count) with the states x86-TSO
 * allows (`allowed`, the test's own unless given: a mutation check passes a wrong one). Pure.
 * @emulator
 */
export function compareWithTso(
  t: LitmusTest,
  seen: ReadonlyMap<string, { values: readonly number[]; count: number }>,
  run: { mode: LitmusMode; exhaustive: boolean | null; failure: string | null; preemptions?: number | null },
  allowed: readonly (readonly number[])[] = tsoStates(t),
): Pick<LitmusResult, 'states' | 'allowed' | 'forbiddenObserved' | 'missing' | 'conditionObserved' | 'conditionHolds' | 'observation' | 'positive' | 'negative' | 'herdObservation' | 'verdict' | 'reasons'> {
  const allowedKeys = allowed.map((v) => formatState(t, v));
  const sorted = [...seen.values()].sort((a, b) => compareValues(a.values, b.values));
  const states = sorted.map((s) => ({ ...stateRecord(t, s.values), count: s.count }) as LitmusStateCount);
  const forbiddenObserved = [...seen.keys()].filter((k) => !allowedKeys.includes(k)).sort();
  const missing = allowedKeys.filter((k) => !seen.has(k));
  const conditionObserved = sorted.some((s) => satisfies(t, s.values));
  const holds = conditionHolds(t, sorted.map((s) => s.values));
  // herd's witnesses: the runs satisfying the proposition (for ~exists, the ones not satisfying it) and the others.
  const sat = sorted.filter((s) => satisfies(t, s.values)).reduce((n, s) => n + s.count, 0);
  const total = sorted.reduce((n, s) => n + s.count, 0);
  const positive = t.condition.quantifier === '~exists' ? total - sat : sat;
  const reasons: string[] = [];
  if (run.failure) reasons.push(`the run failed: ${run.failure}`);
  if (forbiddenObserved.length > 0) reasons.push(`x86-TSO forbids ${forbiddenObserved.join(' | ')}`);
  if (run.mode === 'controlled') {
    // A state some schedule reaches only with more preemptions than the bound is missing too.
    const bound = run.preemptions === undefined || run.preemptions === null ? '' : ` with ≤ ${run.preemptions} preemption${run.preemptions === 1 ? '' : 's'} (a larger --preemptions may reach it)`;
    if (missing.length > 0) reasons.push(`x86-TSO allows ${missing.join(' | ')}, never reached${bound}`);
    if (run.exhaustive === false) reasons.push('the DFS did not run every schedule within its bound (budget)');
  }
  return {
    states,
    allowed: allowedKeys,
    forbiddenObserved,
    missing,
    conditionObserved,
    conditionHolds: holds,
    observation: holds ? 'Ok' : 'No',
    positive,
    negative: total - positive,
    herdObservation: sat === 0 ? 'Never' : sat === total ? 'Always' : 'Sometimes',
    verdict: reasons.length === 0 ? 'match' : 'mismatch',
    reasons,
  };
}

/**
 * The shared actor pool, sized once for every test given (its threads and the starter of the
 * largest), so a run of several tests does not re-create it on the way. @emulator
 */
export async function litmusPool(tests: readonly LitmusTest[]): Promise<ActorPool> {
  return sharedPool(Math.max(1, ...tests.map((t) => t.threads.length + 1)));
}

/** Seeds of free runs: each run its own, so the main thread finds its memory (see takeLitmusMemory). */
let nextFreeSeed = 1;

/** Run one litmus test (a built-in test's name, or a parsed test). Rejects only for bad options. @emulator */
export async function runLitmus(test: string | LitmusTest, o: LitmusOptions = {}): Promise<LitmusResult> {
  const t = typeof test === 'string' ? resolveLitmusTest(test) : test;
  const mode = o.mode ?? 'controlled';
  if (mode !== 'controlled' && mode !== 'free') throw badParam('mode', `"${String(mode)}" is not one of controlled, free`);
  const def = scenarioOf(t);
  const seen = new Map<string, { values: number[]; count: number }>();
  const add = (values: number[], count: number) => {
    if (count === 0) return;
    const k = formatState(t, values);
    const s = seen.get(k);
    if (s) s.count += count;
    else seen.set(k, { values, count });
  };
  // Options first: bad ones reject before any work.
  const budget = checkInt('iterations', o.iterations ?? (mode === 'free' ? DEFAULT_FREE_ROUNDS : DEFAULT_MAX_EXECUTIONS), 1, 1e9);
  const bound = mode === 'controlled' ? checkInt('preemptions', o.preemptions ?? DEFAULT_PREEMPTIONS, 0, 64) : null;
  const t0 = performance.now();
  const pool = o.pool ?? (await litmusPool([t]));
  const { runs, steps, exhaustive, failure } = bound === null ? await runFree(t, def, pool, budget, add) : await exploreControlled(t, def, pool, budget, bound, o.watchdogMs, (values) => add(values, 1));
  const cmp = compareWithTso(t, seen, { mode, exhaustive, failure, preemptions: bound });
  const q = t.condition.quantifier;
  return { name: t.name, mode, file: t.file, source: t.source, quantifier: q, kind: herdKind(q), condition: conditionText(t), tso: tsoVerdict(t), expected: tsoResult(t), ...cmp, exhaustive, preemptions: bound, runs, steps, failure, elapsedMs: performance.now() - t0 };
}

/** What a run of a litmus test did (either mode). */
interface Outcome {
  /** Executions (controlled) or rounds (free). */
  runs: number;
  /** Scheduling decisions (controlled). */
  steps: number;
  /** controlled: every schedule within the bound ran; free: null. */
  exhaustive: boolean | null;
  failure: string | null;
}

/** What {@link exploreControlled} did. */
interface Exploration extends Outcome {
  exhaustive: boolean;
  /** Decisions before the window (the same in every execution). */
  windowStart: number;
}

/**
 * Free mode: `rounds` rounds on real threads through the race runner (stops early at a forbidden
 * state, which check() reports), then the histogram role 0 kept.
 */
async function runFree(t: LitmusTest, def: ScenarioDef, pool: ActorPool, rounds: number, add: (values: number[], count: number) => void): Promise<Outcome> {
  const p = litmusPlan(t);
  const seed = nextFreeSeed++;
  const r = await runRace(def.id, { variant: LITMUS_VARIANT.free, iterations: rounds, seed, widen: false, pool });
  const acc = takeLitmusMemory(t.id, seed);
  let failure: string | null = null;
  if (r.failure) failure = `${r.failure.code}: ${r.failure.message}`;
  else if (r.first && r.first.invariant !== 'litmusTsoAllowed') failure = `${r.first.invariant}: ${r.first.detail}`;
  if (acc) {
    const L = acc.layout;
    for (let i = 0; i < p.allowed.length; i++) add(stateAt(p, i), acc.peek(L.scratch(p.hist + i)));
    // A state x86-TSO forbids (the run stops at the first): the last one checked.
    const other = acc.peek(L.scratch(p.other));
    if (other > 0) add(lastState(acc, t, p), other);
  } else {
    failure ??= 'the run did not record its memory';
  }
  return { runs: r.iterations, steps: 0, exhaustive: null, failure };
}

/**
 * The bounded DFS of controlled mode. Every execution is one round: the round barrier, the start
 * gate, the threads' instructions, then every thread parks (see ./litmus-scenario) and the
 * execution ends. The DFS branches only on the decisions from the starter's parking on (the
 * window): before it, each execution takes choice 0, so the state at the window's start — every
 * location 0, every store buffer empty, every thread woken at the gate, none running — is the
 * same in every execution, and from it every interleaving of the threads' steps and every drain
 * timing is reachable. Where the window starts is found once per test by bisecting on the
 * decision budget (an execution cut short after m decisions shows whether the gate was open).
 */
async function exploreControlled(
  t: LitmusTest,
  def: ScenarioDef,
  pool: ActorPool,
  budget: number,
  bound: number,
  watchdogMs: number | undefined,
  seen: (values: number[]) => void,
): Promise<Exploration> {
  const p = litmusPlan(t);
  const n = t.threads.length;
  const params = { variant: findVariant(def, LITMUS_VARIANT.controlled), vcpus: 1, seed: 1 };
  let runs = 0;
  let steps = 0;
  const run = async (prefix: number[], maxSteps: number) => {
    const spec: ReplaySpec = { scenario: def.id, variant: params.variant.name, vcpus: 1, iterations: 1, strategy: 'dfs', seed: params.seed, depth: 1, stepsEstimate: 1000, deadlineMs: 10_000, maxSteps, prefix };
    const ex = await runExecution(def, params, spec, pool, watchdogMs);
    takeLitmusMemory(t.id, params.seed);
    runs++;
    steps += ex.summary.steps;
    const acc = new Access(ex.mem, { actor: ex.mem.layout.mainActor, name: 'main' });
    return { ex, acc, open: acc.peek(acc.layout.scratch(p.gate)) !== 0, parked: t.threads.filter((_, i) => published(acc, p, i)).length };
  };
  // The whole first execution (choice 0 everywhere), then bisect for the gate's opening.
  const first = await run([], MAX_STEPS);
  const problem = endProblem(first.ex, first.parked, n, []);
  if (problem) return { runs, steps, exhaustive: false, failure: problem, windowStart: 0 };
  let lo = 0;
  let hi = first.ex.summary.steps;
  while (lo < hi) {
    const m = (lo + hi) >> 1;
    if ((await run([], m)).open) hi = m;
    else lo = m + 1;
  }
  // Decision lo - 1 chose the starter's poke that opened the gate, decision lo its park, and
  // decision lo + 1, taken as it blocks, is the first with no thread running: the window's start.
  const windowStart = lo + 1;
  if (first.ex.summary.log[windowStart]?.lastCanRun !== false) return { runs, steps, exhaustive: false, failure: `the window's start (decision ${windowStart}) is not where the starter parks`, windowStart };
  let { ex, acc } = first;
  for (;;) {
    seen(finalState(acc, t, p));
    if (ex.summary.logTruncated) return { runs, steps, exhaustive: false, failure: 'the decision log overflowed', windowStart };
    const next = nextDfsPrefix(ex.summary.log.slice(windowStart), bound);
    if (!next) return { runs, steps, exhaustive: true, failure: null, windowStart };
    if (runs >= budget) return { runs, steps, exhaustive: false, failure: null, windowStart };
    const prefix = [...ex.summary.log.slice(0, windowStart).map((d) => d.choice), ...next];
    const r = await run(prefix, MAX_STEPS);
    const why = endProblem(r.ex, r.parked, n, prefix);
    if (why) return { runs, steps, exhaustive: false, failure: why, windowStart };
    ({ ex, acc } = r);
  }
}

/** Decisions one execution may take before it counts as a livelock (they take about 100). */
const MAX_STEPS = 100_000;

/**
 * Why an execution did not end as a litmus execution should — every thread published and parked,
 * and the runtime reporting exactly that (every actor blocked for good) — or null.
 */
function endProblem(ex: Execution, parked: number, n: number, prefix: readonly number[]): string | null {
  const parkedForGood = ex.failure === null && ex.first?.invariant === 'noDeadlock';
  if (parkedForGood && parked === n) return null;
  const why = ex.failure ? `${ex.failure.code}: ${ex.failure.message}` : ex.first ? `${ex.first.invariant}: ${ex.first.detail}` : `status ${ex.summary.status}`;
  return `an execution ended with ${parked} of ${n} threads published (${why}; DFS prefix [${prefix.join(',')}])`;
}

/** The last final state role 0 checked (values in `observe` order). */
function lastState(acc: Access, t: LitmusTest, p: ReturnType<typeof litmusPlan>): number[] {
  return t.observe.map((_, i) => acc.peek(acc.layout.scratch(p.last + i)));
}
