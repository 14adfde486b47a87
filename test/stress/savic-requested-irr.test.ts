/**
 * savic-requested-irr, free mode: each buggy variant's violation is found on real threads within a budget of
 * seeds and seconds. How soon depends on the host (its CPU, its load), so this is an opt-in
 * stress test (`npm run test:stress`), not part of `npm test`; time-to-find figures live in
 * bench/README.md (`npm run bench:races`).
 */
import test from 'ava';
import { runRace } from '../../src/scenarios/runner.js';
import { closeSharedPool } from '../../src/runtime/pool.js';



test.after.always(async () => {
  await closeSharedPool();
});

test.serial('buggy: a remote RequestedIRR write is lost to VMRUN clearing it (found within the budget)', async (t) => {
  const r = await runRace('savic-requested-irr', { variant: 'buggy', seconds: 30, seed: 7 });
  t.is(r.failure, null);
  t.truthy(r.first, 'a violation was found');
  t.is(r.first?.invariant, 'savicNoLostAllowedVector');
  t.regex(r.first?.detail ?? '', /lost in RequestedIRR/);
});

test.serial('buggy without window widening still loses vectors (the race is real, not the delays)', async (t) => {
  const r = await runRace('savic-requested-irr', { variant: 'buggy', seconds: 30, seed: 3, widen: false });
  t.is(r.first?.invariant, 'savicNoLostAllowedVector');
});
