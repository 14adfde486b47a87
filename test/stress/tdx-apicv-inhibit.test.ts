/**
 * tdx-apicv-inhibit, free mode: each buggy variant's violation is found on real threads within a budget of
 * seeds and seconds. How soon depends on the host (its CPU, its load), so this is an opt-in
 * stress test (`npm run test:stress`), not part of `npm test`; time-to-find figures live in
 * bench/README.md (`npm run bench:races`).
 */
import test from 'ava';
import { runRace } from '../../src/scenarios/runner.js';
import { closeSharedPool } from '../../src/runtime/pool.js';

const ID = 'tdx-apicv-inhibit';
/** Generous budget for a buggy run (it stops at its first violation, normally in the first round). */
const BUGGY_ITERATIONS = 200_000;

test.after.always(async () => {
  await closeSharedPool();
});

test.serial('buggy: after the runtime inhibit a TD vCPU enters with APICv inactive (found within the budget)', async (t) => {
  const r = await runRace(ID, { variant: 'buggy', iterations: BUGGY_ITERATIONS, seed: 7 });
  t.is(r.failure, null);
  t.truthy(r.first, 'a violation was found');
  t.is(r.first?.invariant, 'tdxApicvActiveAtEntry');
  t.regex(r.first?.detail ?? '', /entered the TD with APICv inactive in a live VM: \d+ of \d+ TD entries .*inhibit reasons PHYSICAL_ID_ALIASED/);
});

test.serial('buggy: an interrupt sent after the deactivation never reaches the TD guest (it stays in the PIR)', async (t) => {
  // Look through a few seeds' first violating rounds for the lost interrupt next to the entry violation.
  let lost: string | undefined;
  for (let seed = 1; seed <= 20 && !lost; seed++) {
    const r = await runRace(ID, { variant: 'buggy', iterations: BUGGY_ITERATIONS, seed, widen: seed % 2 === 0 });
    t.is(r.failure, null);
    lost = r.first?.violations.find((v) => v.invariant === 'tdxSentReachesGuest')?.message;
  }
  t.regex(lost ?? '', /was sent to the TD but never reached the guest: it sits in PIR with ON=1 \(apicv_active=0, VM not bugged/);
});
