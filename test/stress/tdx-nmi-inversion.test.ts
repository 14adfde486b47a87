/**
 * tdx-nmi-inversion, free mode: each buggy variant's violation is found on real threads within a budget of
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

test.serial('buggy: NMI X+1, pending in SEAM root, is handled before KVM handles X (found within the budget)', async (t) => {
  const r = await runRace('tdx-nmi-inversion', { variant: 'buggy', iterations: 200_000, seed: 7 });
  t.is(r.failure, null);
  t.truthy(r.first, 'a violation was found');
  t.is(r.first?.invariant, 'nmiHandledInArrivalOrder');
  t.regex(r.first?.detail ?? '', /delivered through the host IDT\) ran before the handler for NMI/);
});

test.serial('buggy without window widening still inverts (the race is real, not the delays)', async (t) => {
  const r = await runRace('tdx-nmi-inversion', { variant: 'buggy', iterations: 200_000, seed: 3, widen: false });
  t.is(r.failure, null);
  t.is(r.first?.invariant, 'nmiHandledInArrivalOrder');
});

test.serial('buggy with a single source (it raises X and X+1 itself)', async (t) => {
  const r = await runRace('tdx-nmi-inversion', { variant: 'buggy', iterations: 200_000, seed: 5, vcpus: 2 });
  t.is(r.failure, null);
  t.is(r.first?.invariant, 'nmiHandledInArrivalOrder');
});
