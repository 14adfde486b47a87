/**
 * PCT (d = 2), seeded, deterministic in controlled mode: it reaches a catalogue race and the
 * token replays it exactly; a fixed variant holds. (With the machine's own VMX entry path,
 * pi-sb-notification's PI-1 is not reached by PCT within 300 schedules today; random reaches it.)
 */
import test from 'ava';
import { runControlledRace, replayRace } from '../../src/scenarios/controlled.js';
import { closeSharedPool } from '../../src/runtime/pool.js';

test.after.always(async () => {
  await closeSharedPool();
});

test.serial('pct --depth 2 --seed 1 finds apicv-deactivate-pir/buggy within 300 schedules and the token replays it', async (t) => {
  const r = await runControlledRace('apicv-deactivate-pir', { variant: 'buggy', strategy: 'pct', depth: 2, seed: 1, schedules: 300 });
  t.truthy(r.first, `no violation in ${r.schedules} schedules`);
  t.true(r.schedules <= 300);
  t.regex(r.guarantee ?? '', /pct/i);
  const again = await replayRace(r.replay!);
  t.is(again.first?.invariant, r.first?.invariant);
  t.is(again.first?.iteration, r.first?.iteration);
  t.is(again.traceDigest, r.traceDigest);
});

test.serial('pct holds on the fixed variant over 200 schedules (no false positive from the drain policy)', async (t) => {
  const r = await runControlledRace('apicv-deactivate-pir', { variant: 'fixed', strategy: 'pct', depth: 2, seed: 1, schedules: 200 });
  t.is(r.first, null);
  t.is(r.failure, null);
  t.is(r.schedules, 200);
});
