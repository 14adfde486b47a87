/**
 * apicv-deactivate-pir, free mode: each buggy variant's violation is found on real threads within a budget of
 * seeds and seconds. How soon depends on the host (its CPU, its load), so this is an opt-in
 * stress test (`npm run test:stress`), not part of `npm test`; time-to-find figures live in
 * bench/README.md (`npm run bench:races`).
 */
import test from 'ava';
import { runRace } from '../../src/scenarios/runner.js';
import { closeSharedPool } from '../../src/runtime/pool.js';

const ID = 'apicv-deactivate-pir';
/** Generous budget for a buggy run (it stops at its first violation, normally in the first rounds). */
const BUGGY_ITERATIONS = 200_000;

test.after.always(async () => {
  await closeSharedPool();
});

test.serial('buggy: a vector posted around the deactivation stays in the PIR with ON=1 (found within the budget)', async (t) => {
  const r = await runRace(ID, { variant: 'buggy', iterations: BUGGY_ITERATIONS, seed: 7 });
  t.is(r.failure, null);
  t.truthy(r.first, 'a violation was found');
  t.is(r.first?.invariant, 'apicvPostedNotLost');
  t.regex(r.first?.detail ?? '', /never reached the guest: it sits in PIR with ON=1 \(apicv_active=0, inhibit reasons BLOCKIRQ/);
});

test.serial('buggy without window widening, and with two target vCPUs, still loses a posted vector', async (t) => {
  const a = await runRace(ID, { variant: 'buggy', iterations: BUGGY_ITERATIONS, seed: 3, widen: false });
  t.is(a.failure, null);
  t.is(a.first?.invariant, 'apicvPostedNotLost');
  const b = await runRace(ID, { variant: 'buggy', iterations: BUGGY_ITERATIONS, seed: 5, vcpus: 2 });
  t.is(b.failure, null);
  t.is(b.first?.invariant, 'apicvPostedNotLost');
});
