/**
 * `hvemu/fast-check`: schedules as a fast-check arbitrary. A property over a buggy variant fails
 * and fast-check shrinks the counterexample to the few deviations (preemptions, early drains) the
 * bug needs; the counterexample is a replay token. Seeded: the same every run.
 */
import test from 'ava';
import fc from 'fast-check';
import { raceProperty, scheduleArbitrary } from '../../src/fast-check.js';
import { decodeReplay, replayRace } from '../../src/scenarios/controlled.js';
import { closeSharedPool } from '../../src/runtime/pool.js';

test.after.always(async () => {
  await closeSharedPool();
});

test.serial('a buggy variant: the property fails and the counterexample shrinks to at most 4 deviations that replay the violation', async (t) => {
  const r = await fc.check(raceProperty('apic-memslot-inhibit', { variant: 'buggy-flag-order' }), { seed: 1, numRuns: 200 });
  t.true(r.failed);
  const token = r.counterexample![0];
  const deviations = decodeReplay(token).choices ?? [];
  t.true(deviations.length <= 4, `shrunk to ${deviations.length} deviations`);
  t.true(r.numShrinks > 0);
  const again = await replayRace(token);
  t.is(again.first?.invariant, 'memslotDisabledImpliesGone');
});

test.serial('the fixed variant holds over 100 schedules', async (t) => {
  const r = await fc.check(raceProperty('apic-memslot-inhibit', { variant: 'fixed' }), { seed: 1, numRuns: 100 });
  t.false(r.failed);
  t.is(r.numRuns, 100);
});

test('bad options are refused naming the option; the arbitrary draws tokens of the scenario', (t) => {
  t.throws(() => scheduleArbitrary('apic-memslot-inhibit', { horizon: 0 }), { message: /invalid horizon/ });
  t.throws(() => scheduleArbitrary('apic-memslot-inhibit', { maxChoice: 0 }), { message: /invalid maxChoice/ });
  t.throws(() => scheduleArbitrary('no-such-race'), { message: /unknown scenario/ });
  const [token] = fc.sample(scheduleArbitrary('apic-memslot-inhibit', { variant: 'fixed' }), { seed: 3, numRuns: 1 });
  const spec = decodeReplay(token!);
  t.is(spec.scenario, 'apic-memslot-inhibit');
  t.is(spec.variant, 'fixed');
  t.is(spec.strategy, 'dfs');
});
