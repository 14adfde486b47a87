/**
 * pi-wakeup-block, free mode: each buggy variant's violation is found on real threads within a budget of
 * seeds and seconds. How soon depends on the host (its CPU, its load), so this is an opt-in
 * stress test (`npm run test:stress`), not part of `npm test`; time-to-find figures live in
 * bench/README.md (`npm run bench:races`).
 */
import test from 'ava';
import { runRace } from '../../src/scenarios/runner.js';
import { closeSharedPool } from '../../src/runtime/pool.js';

const ID = 'pi-wakeup-block';
/** Generous budget for a buggy run (it stops at its first violation, normally within a few hundred rounds). */
const BUGGY_SECONDS = 30;

test.after.always(async () => {
  await closeSharedPool();
});

test.serial('buggy: the vCPU sleeps with ON set and NV = wakeup vector, no wake in flight (found within the budget)', async (t) => {
  const r = await runRace(ID, { variant: 'buggy', seconds: BUGGY_SECONDS, seed: 7 });
  t.is(r.failure, null);
  t.truthy(r.first, 'a violation was found');
  t.is(r.first?.invariant, 'piBlockedHasWakeInFlight');
  t.regex(r.first?.detail ?? '', /vcpu0 sleeps in kvm_vcpu_block with ON=1, PIR = \{0x[0-9a-f]+\}, vIRR = \{none\}, NV = 0xf1, NDST = 0, and no wakeup vector pending at CPU 0/);
  t.log(`round ${r.first?.iteration}, ${r.first?.elapsedMs.toFixed(0)} ms`);
});

test.serial('buggy without window widening still loses the wake-up (the race is real, not the delays)', async (t) => {
  const r = await runRace(ID, { variant: 'buggy', seconds: BUGGY_SECONDS, seed: 3, widen: false });
  t.is(r.failure, null);
  t.is(r.first?.invariant, 'piBlockedHasWakeInFlight');
});
