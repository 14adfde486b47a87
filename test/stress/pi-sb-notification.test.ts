/**
 * pi-sb-notification, free mode: each buggy variant's violation is found on real threads within a budget of
 * seeds and seconds. How soon depends on the host (its CPU, its load), so this is an opt-in
 * stress test (`npm run test:stress`), not part of `npm test`; time-to-find figures live in
 * bench/README.md (`npm run bench:races`).
 */
import test from 'ava';
import { findWithinBudget } from '../helpers/race.js';
import { closeSharedPool } from '../../src/runtime/pool.js';

const ID = 'pi-sb-notification';
const BUGGY_SEEDS = [7, 8, 9, 10, 41, 43];
const BUGGY_SECONDS_PER_SEED = 10;

test.after.always(async () => {
  await closeSharedPool();
});

test.serial('buggy: a posted interrupt is stranded in the PIR by store buffering (found within the budget)', async (t) => {
  const r = await findWithinBudget(t, ID, 'buggy', { seeds: BUGGY_SEEDS, secondsPerSeed: BUGGY_SECONDS_PER_SEED });
  t.is(r.failure, null);
  t.truthy(r.first, 'a violation was found');
  t.is(r.first?.invariant, 'piNoStrandedAtEntry');
  t.regex(r.first?.detail ?? '', /IN_GUEST_MODE with PIR = \{0x[0-9a-f]+\}, ON = 1 and no notification pending/);
  t.true(r.first?.violations.some((v) => v.invariant === 'piPostedReachesTarget'));
});
