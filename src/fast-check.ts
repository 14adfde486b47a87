/**
 * `hvemu/fast-check`: schedules of the controlled runtime as a fast-check arbitrary, so a property
 * test gets fast-check's shrinking of schedules (fast-check's own scheduler shrinks the order of
 * promises, not the interleaving of threads over x86-TSO store buffers).
 *
 * A schedule is a seed (the scenario's inputs) and a small set of deviations: at decision d take
 * choice c (an index into the enabled actors, then their store-buffer drains, clamped to what is
 * enabled; 1.. = switch to another actor or drain a store early). Every other decision is 0 (the
 * running actor continues, nothing drains early). Shrinking removes deviations and moves them
 * earlier, so a counterexample keeps only the preemptions and early drains the bug needs, as
 * `hvemu replay --shrink` does.
 *
 * ```ts
 * import fc from 'fast-check';
 * import { raceProperty } from 'hvemu/fast-check';
 * await fc.assert(raceProperty('pi-sb-notification', { variant: 'buggy' }), { numRuns: 200 });
 * // fails with a shrunk counterexample: a replay token (`hvemu replay TOKEN` draws it)
 * ```
 * fast-check is a peer dependency of this entry point: install it beside hvemu.
 */
import fc from 'fast-check';
import { badParam } from './errors.js';
import { encodeReplay, replayRace, resolveControlled, type ReplayResult } from './scenarios/controlled.js';
import type { ScenarioDef } from './scenarios/define.js';
import type { ActorPool } from './runtime/pool.js';

/** What {@link scheduleArbitrary} draws schedules for. */
export interface ScheduleOptions {
  variant?: string;
  vcpus?: number;
  /** Rounds per execution (default 1). */
  iterations?: number;
  /** Most deviations (preemptions and early drains) in one schedule (default 24). */
  maxDeviations?: number;
  /** Decisions a deviation may fall on: 0 .. horizon-1 (default 1500). */
  horizon?: number;
  /** Largest choice at a deviation (default 3: up to four alternatives at a decision). */
  maxChoice?: number;
  /** Longest a wait may block, on the logical clock (ms, default 10000). */
  deadlineMs?: number;
}

/**
 * An arbitrary of controlled executions of scenario `id`, each as a replay token (a seed for the
 * scenario's inputs and an explicit choice list). fast-check shrinks the list: fewer and smaller
 * choices, so fewer preemptions and early store-buffer drains.
 * @emulator
 */
export function scheduleArbitrary(id: string | ScenarioDef, o: ScheduleOptions = {}): fc.Arbitrary<string> {
  const r = resolveControlled(id, { iterations: o.iterations ?? 1, ...(o.variant === undefined ? {} : { variant: o.variant }), ...(o.vcpus === undefined ? {} : { vcpus: o.vcpus }), ...(o.deadlineMs === undefined ? {} : { deadlineMs: o.deadlineMs }) });
  const maxDeviations = o.maxDeviations ?? 24;
  const horizon = o.horizon ?? 1500;
  const maxChoice = o.maxChoice ?? 3;
  if (!Number.isInteger(maxDeviations) || maxDeviations < 0 || maxDeviations > 10_000) throw badParam('maxDeviations', `${maxDeviations} (must be an integer in 0..10000)`);
  if (!Number.isInteger(horizon) || horizon < 1 || horizon > 10_000_000) throw badParam('horizon', `${horizon} (must be an integer in 1..10000000)`);
  if (!Number.isInteger(maxChoice) || maxChoice < 1 || maxChoice > 255) throw badParam('maxChoice', `${maxChoice} (must be an integer in 1..255)`);
  const deviation = fc.tuple(fc.nat({ max: horizon - 1 }), fc.integer({ min: 1, max: maxChoice }));
  const deviations = fc.uniqueArray(deviation, { selector: (d) => d[0], maxLength: maxDeviations, size: 'max' });
  return fc.record({ seed: fc.nat(), deviations }).map(({ seed, deviations: ds }) =>
    encodeReplay({
      scenario: r.def.id,
      ...(r.def.module ? { module: r.def.module } : {}),
      variant: r.params.variant.name,
      vcpus: r.params.vcpus,
      iterations: r.rounds,
      // After the list, DFS's default: always choice 0.
      strategy: 'dfs',
      seed,
      depth: r.depth,
      stepsEstimate: 500,
      deadlineMs: r.deadlineMs,
      maxSteps: r.maxSteps,
      choices: [...ds].sort((a, b) => a[0] - b[0]),
    }),
  );
}

/**
 * The property "no schedule breaks an invariant of scenario `id`": run it with `fc.assert`; a
 * counterexample is a replay token, shrunk by fast-check. `onResult` sees every execution.
 * @emulator
 */
export function raceProperty(id: string | ScenarioDef, o: ScheduleOptions & { pool?: ActorPool; onResult?: (token: string, r: ReplayResult) => void } = {}): fc.IAsyncProperty<[string]> {
  return fc.asyncProperty(scheduleArbitrary(id, o), async (token) => {
    const r = await replayRace(token, o.pool ? { pool: o.pool } : {});
    o.onResult?.(token, r);
    return r.first === null && r.failure === null;
  });
}
