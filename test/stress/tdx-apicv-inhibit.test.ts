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

test.serial('buggy: the TDX module still delivers every interrupt (no tdxSentReachesGuest): the bug is KVM\'s view, not a lost vector', async (t) => {
  const r = await runRace(ID, { variant: 'buggy', iterations: BUGGY_ITERATIONS, seed: 3 });
  t.is(r.failure, null);
  t.truthy(r.first);
  t.false(r.first?.violations.some((v) => v.invariant === 'tdxSentReachesGuest'), JSON.stringify(r.first?.violations));
});

test.serial('buggy-hlt-pid-only: a TD halts with a vector in RVI and blocks with it in the vIRR', async (t) => {
  const r = await runRace(ID, { variant: 'buggy-hlt-pid-only', iterations: BUGGY_ITERATIONS, seed: 7 });
  t.is(r.failure, null);
  t.is(r.first?.invariant, 'tdxSentReachesGuest');
  t.regex(r.first?.detail ?? '', /it sits in vIRR .*VM not bugged.*the vCPU blocked at the end/);
});

test.serial('buggy-no-self-ipi: a vector posted while the vCPU was out waits in the PIR with ON=1', async (t) => {
  const r = await runRace(ID, { variant: 'buggy-no-self-ipi', iterations: BUGGY_ITERATIONS, seed: 7 });
  t.is(r.failure, null);
  t.is(r.first?.invariant, 'tdxSentReachesGuest');
  t.regex(r.first?.detail ?? '', /it sits in PIR with ON=1/);
});
