/**
 * A scenario actor on its pool thread: the round loop around the scenario's own code.
 *
 *   loop: barrier(ROUND_START); stop? -> leave
 *         round(ctx, r)
 *         barrier(ROUND_END)
 *         role 0: check -> first violation? stop : reset; count the round; stop if asked/budget
 */
import { ACTOR, ActorStatus, RunState, VM } from '../mem/layout.js';
import { Access, attachMachineMemory, type AccessOptions } from '../mem/access.js';
import { ControlledAccess } from '../mem/controlled.js';
import { barrierWait } from '../sync/barrier.js';
import { waitWhileEqual } from '../sync/wait.js';
import { Prng, deriveSeed } from '../util/prng.js';
import { sharedClockMs } from '../trace/events.js';
import { toWire } from '../errors.js';
import { findScenario, loadScenario } from './index.js';
import { findVariant, type ScenarioCtx } from './define.js';
import type { ScenarioTask, ScenarioTaskResult } from './protocol.js';
import { PatchSet } from '../kvm/patches.js';

/** Yield to the worker's event loop every this many rounds. */
const YIELD_EVERY = 64;

/** Run one scenario actor until the scenario stops. Never throws. @emulator */
export async function runScenarioTask(task: ScenarioTask): Promise<ScenarioTaskResult> {
  const mem = attachMachineMemory(task.sab, task.layout);
  const L = mem.layout;
  const opts: AccessOptions = { actor: L.extraActor(task.index), name: task.name, deadlineMs: task.deadlineMs };
  if (task.widen) opts.widen = task.widen;
  if (task.trace) {
    opts.record = true;
    opts.flightRecorder = true;
  }
  const acc = task.control ? new ControlledAccess(mem, opts, task.control, task.index) : new Access(mem, opts);
  const status = L.actor(acc.actor, ACTOR.STATUS);
  try {
    const def = task.module ? await loadScenario(task.scenario, task.module) : findScenario(task.scenario);
    const variant = findVariant(def, task.variant);
    const params = { variant, vcpus: task.vcpus, seed: task.seed };
    const roles = def.roles(params);
    const patches = new PatchSet((variant.patches ?? []).map((p) => p.id));
    const ctx: ScenarioCtx = { acc, L, params, role: roles[task.index]!, index: task.index, roles, prng: new Prng(deriveSeed(task.seed, 1000 + task.index)), patches };
    acc.poke(status, ActorStatus.READY);
    acc.atomicAdd(L.vm(VM.READY_COUNT), 1, 'runtime:ready');
    waitWhileEqual(acc, L.vm(VM.START_GATE), 0, 'runtime:start-gate', 'the start gate', Math.max(task.deadlineMs, 30_000));
    acc.poke(status, ActorStatus.RUNNING);
    // Controlled mode: from here on one labelled access at a time, in the scheduler's order.
    if (acc instanceof ControlledAccess) acc.enterControl();
    const parties = roles.length;
    const t0 = sharedClockMs();
    let first: ScenarioTaskResult['first'] = null;
    let r = 0;
    for (;;) {
      barrierWait(acc, L.vm(VM.ROUND_START), parties, 'round:start', 'the start of a round');
      if (acc.peek(L.vm(VM.RUN_STATE)) === RunState.STOP) break;
      def.round(ctx, r);
      barrierWait(acc, L.vm(VM.ROUND_END), parties, 'round:end', 'the end of a round');
      if (task.index === 0) {
        const violations = def.check(ctx, r);
        r++;
        acc.poke(L.vm(VM.ITERATIONS), r);
        if (violations.length > 0) first = { iteration: r - 1, elapsedMs: sharedClockMs() - t0, violations };
        else def.reset(ctx);
        if (first || r >= task.maxIterations || acc.peek(L.vm(VM.STOP_REQUEST)) !== 0) acc.poke(L.vm(VM.RUN_STATE), RunState.STOP);
      } else {
        r++;
      }
      if (r % YIELD_EVERY === 0 && !acc.controlled) await new Promise((res) => setImmediate(res));
    }
    if (acc instanceof ControlledAccess) acc.leaveControl();
    acc.poke(status, ActorStatus.DONE);
    const res: ScenarioTaskResult = { name: task.name, ok: true, labels: acc.knownLabels() };
    if (task.index === 0) Object.assign(res, { iterations: r, first });
    return res;
  } catch (e) {
    acc.poke(status, ActorStatus.FAILED);
    acc.poke(L.vm(VM.ABORT), 1);
    // Hand the baton on so the other actors see the abort at their next step.
    if (acc instanceof ControlledAccess) acc.leaveControl();
    const error = toWire(e);
    error.actor ??= task.name;
    return { name: task.name, ok: false, error, labels: acc.knownLabels() };
  }
}
