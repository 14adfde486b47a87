/**
 * Scenarios of the library's users: registered by definition, loaded by the worker threads from
 * their module, run in both modes; bad definitions are refused naming what is wrong.
 */
import test from 'ava';
import { registerScenario, SCENARIOS } from '../../src/scenarios/index.js';
import { runRace } from '../../src/scenarios/runner.js';
import { runControlledRace, replayRace } from '../../src/scenarios/controlled.js';
import { closeSharedPool } from '../../src/runtime/pool.js';
import type { ScenarioDef } from '../../src/scenarios/define.js';
import { apicSlotSticky } from '../../examples/03-own-scenario.js';

test.after.always(async () => {
  await closeSharedPool();
});

test('a catalogue id, a missing module or a non-kebab id is refused, naming the scenario', (t) => {
  const base = SCENARIOS[0]!;
  t.throws(() => registerScenario({ ...base, module: import.meta.url }), { message: /is a catalogue scenario/ });
  t.throws(() => registerScenario({ ...apicSlotSticky, id: 'mine-2', module: undefined } as unknown as ScenarioDef), { message: /module must be the file: URL/ });
  t.throws(() => registerScenario({ ...apicSlotSticky, id: 'Not Kebab' }), { message: /not kebab-case/ });
});

test.serial('free mode: the fixed variant of a user scenario holds for 300 rounds on real threads', async (t) => {
  const r = await runRace(apicSlotSticky, { variant: 'fixed', iterations: 300, seed: 3 });
  t.is(r.failure, null);
  t.is(r.first, null);
  t.is(r.iterations, 300);
});

test.serial('controlled mode: the buggy variant is found, and its replay token (which names the module) reproduces it', async (t) => {
  const found = await runControlledRace(apicSlotSticky, { variant: 'buggy', seed: 1, schedules: 40, iterations: 1 });
  t.is(found.first?.invariant, 'apicSlotStaysDeleted');
  t.truthy(found.replay);
  const again = await replayRace(found.replay!);
  t.is(again.first?.invariant, 'apicSlotStaysDeleted');
  t.is(again.traceDigest, found.traceDigest);
});
