/**
 * tdx-init-hotplug, free mode: each buggy variant's violation is found on real threads within a budget of
 * seeds and seconds. How soon depends on the host (its CPU, its load), so this is an opt-in
 * stress test (`npm run test:stress`), not part of `npm test`; time-to-find figures live in
 * bench/README.md (`npm run bench:races`).
 */
import test from 'ava';
import { findWithinBudget } from '../helpers/race.js';
import { closeSharedPool } from '../../src/runtime/pool.js';

const ID = 'tdx-init-hotplug';

test.after.always(async () => {
  await closeSharedPool();
});

test.serial('buggy-no-hotplug-lock: a CPU comes up between the LP.INIT pass and TDH.SYS.CONFIG / TDH.SYS.KEY.CONFIG', async (t) => {
  const r = await findWithinBudget(t, ID, 'buggy-no-hotplug-lock');
  t.is(r.failure, null);
  t.truthy(r.first, 'a violation was found');
  t.true(['tdxConfigAllOnlineLpsInit', 'tdxSeamcallOnReadyCpu'].includes(r.first?.invariant ?? ''), r.first?.invariant);
  t.regex(r.first?.detail ?? '', /while CPU\d+ (was online without TDH\.SYS\.LP\.INIT|was not post-VMXON)|before TDH\.SYS\.LP\.INIT ran on that LP/);
});
