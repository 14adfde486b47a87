/**
 * Running a race scenario from the main thread: validate, build machine memory, start one actor
 * per role on the warm pool, open the gate, stop at the first violation or when the budget ends
 * (or on `signal`), and report.
 */
import { deadlockViolation } from '../invariants/deadlock.js';
import { ACTOR, ActorStatus, RING, RunState, VM, describeAddr } from '../mem/layout.js';
import { Access, EV_ACCESS, createMachineMemory, type WidenConfig } from '../mem/access.js';
import { RingReader, type RawRecord } from '../mem/ring.js';
import { chromeTrace, writeChromeTrace, type AccessRecord } from '../trace/chrome.js';
import { sharedClockMs } from '../trace/events.js';
import { checkOutputPath } from '../trace/output-path.js';
import { badParam, fromWire, type EmuErrorCode } from '../errors.js';
import type { Violation } from '../invariants/checks.js';
import { sharedPool, type ActorPool } from '../runtime/pool.js';
import { READY_STALL_MS, waitUntilReady } from '../runtime/ready.js';
import { checkInt, checkNumber } from '../runtime/config.js';
import { findScenario, registerScenario } from './index.js';
import { findVariant, type ScenarioDef, type ScenarioParams } from './define.js';
import type { ScenarioTask, ScenarioTaskResult } from './protocol.js';

/** Options of `hvemu race`. */
export interface RaceOptions {
  /** Variant name (default: the scenario's first buggy variant). */
  variant?: string;
  /** Stop after this many rounds. */
  iterations?: number;
  /** Stop after this many seconds (default 10 when no `iterations`). */
  seconds?: number;
  seed?: number;
  /** vCPUs of the modelled VM (default per scenario). */
  vcpus?: number;
  /** Window widening: true (default, the scenario's), false (none). */
  widen?: boolean;
  /** Longest any single wait may last before the actor is reported stuck (ms). */
  deadlineMs?: number;
  pool?: ActorPool;
  /** Abort early (Ctrl-C); the result then covers the rounds run so far. */
  signal?: AbortSignal;
  /** Called once every actor is ready and the first round starts (the CLI's "running" line). */
  onStart?: () => void;
  /**
   * Record every labelled access and write those before the stop as Chrome Trace Event JSON
   * here (checked before the run; written atomically; a failed write is reported in
   * `trace.error`, never thrown, so the race's result is not lost).
   */
  traceFile?: string;
}

/** Accesses written to a trace around the first violation. */
const TRACE_TAIL = 6000;

/** The first violation of a race. */
export interface FirstViolation {
  iteration: number;
  elapsedMs: number;
  invariant: string;
  detail: string;
  violations: Violation[];
}

/** Result of a race run (the `hvemu race --json` document). */
export interface RaceResult {
  scenario: string;
  variant: string;
  seed: number;
  vcpus: number;
  iterations: number;
  elapsedMs: number;
  /** Violations found (the run stops at the first). */
  violations: number;
  first: FirstViolation | null;
  widen: { probability: number; maxSpins: number; points: readonly string[] } | null;
  interrupted: boolean;
  failure: { code: EmuErrorCode; message: string; actor?: string; stuck: { actor: string; status: string; waitingOn: string }[] } | null;
  /**
   * With --trace: the file, how many accesses it holds (the newest before the stop that every
   * actor's flight recorder still held), how many the actors recorded in all, each recorder's
   * size, and why the file could not be written (null when it was).
   */
  trace: { file: string; events: number; recorded: number; ringRecords: number; error: string | null } | null;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const STATUS_NAMES = Object.fromEntries(Object.entries(ActorStatus).map(([k, v]) => [v, k]));

/** The roles whose task has not returned, with their status and the word they wait on. @emulator */
export function stuckRoles(main: Access, roles: readonly string[], results: readonly (ScenarioTaskResult | undefined)[]): { actor: string; status: string; waitingOn: string }[] {
  const L = main.layout;
  return roles
    .map((role, i) => ({ role, i }))
    .filter(({ i }) => results[i] === undefined)
    .map(({ role, i }) => {
      const a = L.extraActor(i);
      const label = main.peek(L.actor(a, ACTOR.WAIT_LABEL));
      return { actor: role, status: STATUS_NAMES[main.peek(L.actor(a, ACTOR.STATUS))] ?? '?', waitingOn: label !== 0 ? describeAddr(L, main.peek(L.actor(a, ACTOR.WAIT_ADDR))) : 'running (not in a wait)' };
    });
}

/** Validate a race's options against its scenario. @emulator */
export function resolveRace(id: string | ScenarioDef, o: RaceOptions): { def: ScenarioDef; params: ScenarioParams; maxIterations: number; seconds: number | undefined } {
  const def = typeof id === 'string' ? findScenario(id) : registerScenario(id);
  const variant = findVariant(def, o.variant);
  if (o.iterations !== undefined && o.seconds !== undefined) throw badParam('iterations', 'give either iterations or seconds, not both');
  const maxIterations = o.iterations === undefined ? Number.MAX_SAFE_INTEGER : checkInt('iterations', o.iterations, 1, 1e12);
  const seconds = o.iterations === undefined ? checkNumber('seconds', o.seconds ?? 10, 0.01, 86_400) : undefined;
  const vcpus = checkInt('vcpus', o.vcpus ?? def.vcpus.default, def.vcpus.min, def.vcpus.max);
  const seed = checkInt('seed', o.seed ?? 1, 0, 0xffffffff);
  if (o.traceFile !== undefined) checkOutputPath('traceFile', o.traceFile);
  return { def, params: { variant, vcpus, seed }, maxIterations, seconds };
}

/** Run one race. Rejects only for bad options; actor failures come back in `failure`. @emulator */
export async function runRace(id: string | ScenarioDef, o: RaceOptions = {}): Promise<RaceResult> {
  const { def, params, maxIterations, seconds } = resolveRace(id, o);
  const deadlineMs = checkInt('deadlineMs', o.deadlineMs ?? 10_000, 1, 3_600_000);
  const roles = def.roles(params);
  const layoutCfg = { ...def.layout(params), extraActors: roles.length, extraActorNames: roles, ringRecords: o.traceFile ? 1 << 16 : 1024 };
  const mem = createMachineMemory(layoutCfg);
  const L = mem.layout;
  const main = new Access(mem, { actor: L.mainActor, name: 'main', deadlineMs });
  def.init(main, params);
  const pool = o.pool ?? (await sharedPool(roles.length));
  pool.ensureCapacity(roles.length);
  const widen: WidenConfig | undefined = o.widen === false ? undefined : { seed: params.seed, probability: def.widen.probability, maxSpins: def.widen.maxSpins, points: def.widen.points };
  const epochMs = sharedClockMs();
  const results: (ScenarioTaskResult | undefined)[] = roles.map(() => undefined);
  const promises = roles.map((role, index) => {
    const task: ScenarioTask = { kind: 'scenario', sab: mem.sab, layout: layoutCfg, scenario: def.id, variant: params.variant.name, vcpus: params.vcpus, seed: params.seed, index, name: `${role}`, deadlineMs, epochMs, trace: o.traceFile !== undefined, maxIterations };
    if (def.module) task.module = def.module;
    if (widen) task.widen = widen;
    return pool.runScenario<ScenarioTask, ScenarioTaskResult>(task).then(
      (r) => (results[index] = r),
      (err: unknown) => (results[index] = { name: role, ok: false, error: { code: 'EMU_ERR_ACTOR_CRASHED', message: `${role}: worker crashed: ${err instanceof Error ? err.message : String(err)}`, actor: role } }),
    );
  });
  const settled = () => results.filter((r) => r !== undefined).length;

  await waitUntilReady(() => main.peek(L.vm(VM.READY_COUNT)), roles.length, () => settled() > 0, Math.max(READY_STALL_MS, deadlineMs));
  const t0 = performance.now();
  main.poke(L.vm(VM.RUN_STATE), RunState.RUNNING);
  main.poke(L.vm(VM.START_GATE), 1);
  main.notify(L.vm(VM.START_GATE), Infinity, 'runtime:start-gate');
  o.onStart?.();

  let stopAskedAt: number | undefined;
  let stuck: RaceResult['failure'] extends infer F ? (F extends { stuck: infer S } ? S : never) : never = [];
  for (;;) {
    if (settled() === roles.length) break;
    await sleep(5);
    const now = performance.now();
    const timeUp = seconds !== undefined && now - t0 >= seconds * 1000;
    if (stopAskedAt === undefined && (timeUp || o.signal?.aborted)) {
      main.poke(L.vm(VM.STOP_REQUEST), 1);
      stopAskedAt = now;
    }
    if (stopAskedAt !== undefined && now - stopAskedAt > deadlineMs + 5_000 && settled() < roles.length) {
      stuck = stuckRoles(main, roles, results);
      main.poke(L.vm(VM.ABORT), 1);
      await pool.destroy();
      break;
    }
  }
  await Promise.race([Promise.all(promises), sleep(1000)]);
  const elapsedMs = performance.now() - t0;
  let trace: RaceResult['trace'] = null;
  if (o.traceFile) {
    // Every actor's ring is a flight recorder: read the newest accesses, merge by sequence.
    const reader = new RingReader(mem);
    const raw: RawRecord[] = [];
    const all: AccessRecord[] = [];
    let recorded = 0;
    for (let i = 0; i < roles.length; i++) {
      recorded += main.peek(L.ring(L.extraActor(i), RING.HEAD)) >>> 0;
      raw.length = 0;
      reader.readLast(L.extraActor(i), raw);
      for (const x of raw) if (x.kind === EV_ACCESS) all.push({ tid: i, label: x.a >>> 0, addr: x.b, seq: x.c, value: x.extra });
    }
    // Keep the newest accesses that every actor's recorder still covers.
    const starts = roles.map((_, i) => Math.min(...all.filter((a) => a.tid === i).map((a) => a.seq)));
    const covered = Math.max(...starts.filter((x) => Number.isFinite(x)));
    const last = all.filter((a) => a.seq >= covered).sort((a, b) => a.seq - b.seq).slice(-TRACE_TAIL);
    const labels = new Map<number, string>();
    for (const r of results) for (const [name, id] of r?.labels ?? []) labels.set(id, name);
    let error: string | null = null;
    try {
      writeChromeTrace(o.traceFile, chromeTrace(last, roles, labels, L));
    } catch (e) {
      error = e instanceof Error ? e.message : String(e);
    }
    trace = { file: o.traceFile, events: last.length, recorded, ringRecords: layoutCfg.ringRecords, error };
  }
  const lead = results[0];
  const failures = results.filter((r): r is ScenarioTaskResult => r !== undefined && !r.ok);
  const root = failures.find((r) => r.error?.code !== 'EMU_ERR_ABORTED') ?? failures[0];
  let failure: RaceResult['failure'] = null;
  const f = lead?.first ?? null;
  let first: FirstViolation | null = f && f.violations[0] ? { iteration: f.iteration, elapsedMs: f.elapsedMs, invariant: f.violations[0].invariant, detail: f.violations[0].message, violations: f.violations } : null;
  if (root?.error?.code === 'EMU_ERR_DEADLINE' || (!root && stuck.length > 0)) {
    // A deadlock is a finding, not a crash: the wait-for cycle when there is one (the ABBA), else
    // every stuck actor and what it waited on.
    const v: Violation = deadlockViolation(failures, stuck.map((x) => `${x.actor} (${x.status}) waiting on ${x.waitingOn}`));
    first = { iteration: main.peek(L.vm(VM.ITERATIONS)), elapsedMs, invariant: v.invariant, detail: v.message, violations: [v] };
  } else if (root?.error) {
    const e = fromWire(root.error);
    failure = { code: e.code, message: e.message, actor: root.name, stuck };
  }
  return {
    scenario: def.id,
    variant: params.variant.name,
    seed: params.seed,
    vcpus: params.vcpus,
    iterations: lead?.iterations ?? main.peek(L.vm(VM.ITERATIONS)),
    elapsedMs,
    violations: first ? first.violations.length : 0,
    first,
    widen: widen ? { probability: widen.probability, maxSpins: widen.maxSpins, points: widen.points ?? [] } : null,
    interrupted: o.signal?.aborted ?? false,
    failure,
    trace,
  };
}


