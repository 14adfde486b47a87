/**
 * tdx-host-state, free mode: each buggy variant's violation is found on real threads within a budget of
 * seeds and seconds. How soon depends on the host (its CPU, its load), so this is an opt-in
 * stress test (`npm run test:stress`), not part of `npm test`; time-to-find figures live in
 * bench/README.md (`npm run bench:races`).
 */
import test from 'ava';
import { runRace } from '../../src/scenarios/runner.js';
import { findWithinBudget } from '../helpers/race.js';
import { closeSharedPool } from '../../src/runtime/pool.js';

const ID = 'tdx-host-state';

test.after.always(async () => {
  await closeSharedPool();
});

test.serial('buggy-no-debugctl: once perf enabled LBR, host code after a TD run finds DEBUGCTL without it', async (t) => {
  const r = await findWithinBudget(t, ID, 'buggy-no-debugctl');
  t.is(r.failure, null);
  t.truthy(r.first, 'a violation was found');
  t.true(['hostStateRestoredBeforeIrqs', 'hostObserversSeeHostValues'].includes(r.first?.invariant ?? ''), r.first?.invariant);
  t.regex(r.first?.detail ?? '', /DEBUGCTL = 0x0 \(INIT value\), host value 0x801/);
});

test.serial('buggy-uret-cache: a preemption after a real TD entry leaves the user-return cache stale for the next task', async (t) => {
  const r = await findWithinBudget(t, ID, 'buggy-uret-cache');
  t.is(r.failure, null);
  t.truthy(r.first, 'a violation was found');
  t.true(['uretCacheCoherent', 'hostObserversSeeHostValues'].includes(r.first?.invariant ?? ''), r.first?.invariant);
  t.regex(r.first?.detail ?? '', /other-task|LSTAR|SYSCALL_MASK/);
});

test.serial('both buggy variants also fail without window widening (the interleaving is real)', async (t) => {
  for (const variant of ['buggy-no-debugctl', 'buggy-uret-cache']) {
    let r = await runRace(ID, { variant, seconds: 10, seed: 2, widen: false });
    if (!r.first) r = await runRace(ID, { variant, seconds: 10, seed: 3, widen: false });
    t.is(r.failure, null, variant);
    t.truthy(r.first, variant);
  }
});
