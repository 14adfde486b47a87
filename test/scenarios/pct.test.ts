/**
 * PCT on the store-buffering race: with drains last in every other execution (stores stay
 * buffered while any actor makes progress) and change points drawn over the steps that are not
 * spins, PCT (d = 2) reaches PI-1 with seed 1 — deterministic in controlled mode — and the token
 * replays it exactly.
 */
import test from 'ava';
import { runControlledRace, replayRace } from '../../src/scenarios/controlled.js';
import { closeSharedPool } from '../../src/runtime/pool.js';

test.after.always(async () => {
  await closeSharedPool();
});

test.serial('pct --depth 2 --seed 1 finds pi-sb-notification/buggy within 300 schedules and the token replays it', async (t) => {
  const r = await runControlledRace('pi-sb-notification', { variant: 'buggy', strategy: 'pct', depth: 2, seed: 1, schedules: 300 });
  t.truthy(r.first, `no violation in ${r.schedules} schedules`);
  t.true(r.schedules <= 300);
  t.regex(r.guarantee ?? '', /pct/i);
  const again = await replayRace(r.replay!);
  t.is(again.first?.invariant, r.first?.invariant);
  t.is(again.first?.iteration, r.first?.iteration);
  t.is(again.traceDigest, r.traceDigest);
});

test.serial('pct holds on the fixed variant over 200 schedules (no false positive from the drain policy)', async (t) => {
  const r = await runControlledRace('pi-sb-notification', { variant: 'fixed', strategy: 'pct', depth: 2, seed: 1, schedules: 200 });
  t.is(r.first, null);
  t.is(r.failure, null);
  t.is(r.schedules, 200);
});
