/**
 * avic-isrunning-wake, free mode: each buggy variant's violation is found on real threads within a budget of
 * seeds and seconds. How soon depends on the host (its CPU, its load), so this is an opt-in
 * stress test (`npm run test:stress`), not part of `npm test`; time-to-find figures live in
 * bench/README.md (`npm run bench:races`).
 */
import test from 'ava';
import { findWithinBudget } from '../helpers/race.js';
import { closeSharedPool } from '../../src/runtime/pool.js';

const ID = 'avic-isrunning-wake';

test.after.always(async () => {
  await closeSharedPool();
});

test.serial('buggy: the target sleeps with an IPI pending in its backing page (found within the budget)', async (t) => {
  const r = await findWithinBudget(t, ID, 'buggy');
  t.is(r.failure, null);
  t.truthy(r.first, 'a violation was found');
  t.is(r.first?.invariant, 'avicNoSleepWithPendingIrr');
  t.regex(r.first?.detail ?? '', /sleeps in kvm_vcpu_block with IRR 0xfb pending in its AVIC backing page and no wake-up in flight/);
});
