/**
 * tdx-offline-last-cpu, free mode: each buggy variant's violation is found on real threads within a budget of
 * seeds and seconds. How soon depends on the host (its CPU, its load), so this is an opt-in
 * stress test (`npm run test:stress`), not part of `npm test`; time-to-find figures live in
 * bench/README.md (`npm run bench:races`).
 */
import test from 'ava';
import { runRace } from '../../src/scenarios/runner.js';
import { findWithinBudget } from '../helpers/race.js';
import { closeSharedPool } from '../../src/runtime/pool.js';

const ID = 'tdx-offline-last-cpu';

test.after.always(async () => {
  await closeSharedPool();
});

test.serial('buggy: the last CPU of a package goes offline while a TD holds its key', async (t) => {
  const r = await findWithinBudget(t, ID, 'buggy');
  t.is(r.failure, null);
  t.is(r.first?.invariant, 'tdxTdKeepsPackagesOnline');
  t.regex(r.first?.detail ?? '', /a TD holds its key on package\(s\) 0, 1 while package 1 has no online CPU/);
});

test.serial('buggy without window widening still strands a package (the race is real, not the delays)', async (t) => {
  let r = await runRace(ID, { variant: 'buggy', seconds: 10, seed: 1, widen: false });
  for (const seed of [2, 3]) if (!r.first) r = await runRace(ID, { variant: 'buggy', seconds: 10, seed, widen: false });
  t.is(r.failure, null);
  t.is(r.first?.invariant, 'tdxTdKeepsPackagesOnline');
});
