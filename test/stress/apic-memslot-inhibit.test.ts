/**
 * apic-memslot-inhibit, free mode: each buggy variant's violation is found on real threads within a budget of
 * seeds and seconds. How soon depends on the host (its CPU, its load), so this is an opt-in
 * stress test (`npm run test:stress`), not part of `npm test`; time-to-find figures live in
 * bench/README.md (`npm run bench:races`).
 */
import test from 'ava';
import { runRace } from '../../src/scenarios/runner.js';
import { closeSharedPool } from '../../src/runtime/pool.js';

const ID = 'apic-memslot-inhibit';
/** Generous budget for a buggy run (it stops at its first violation, normally within a few rounds). */
const BUGGY_SECONDS = 30;

test.after.always(async () => {
  await closeSharedPool();
});

test.serial('buggy-flag-order: an x2APIC vCPU that saw enabled == false still reaches the APIC page (memslotDisabledImpliesGone)', async (t) => {
  const r = await runRace(ID, { variant: 'buggy-flag-order', seconds: BUGGY_SECONDS, seed: 2 });
  t.is(r.failure, null);
  t.is(r.first?.invariant, 'memslotDisabledImpliesGone');
  t.regex(r.first?.detail ?? '', /\(x2APIC\) saw apic_access_memslot_enabled == false, then \(step \d\) still reached the APIC-access page/);
});

test.serial('buggy-no-inhibited: a hot-added vCPU re-creates the deleted memslot (memslotInhibitSticky)', async (t) => {
  const r = await runRace(ID, { variant: 'buggy-no-inhibited', seconds: BUGGY_SECONDS, seed: 3 });
  t.is(r.failure, null);
  t.is(r.first?.invariant, 'memslotInhibitSticky');
  t.regex(r.first?.detail ?? '', /^vmm re-created the APIC-access memslot .* after vcpu\d deleted it for x2APIC/);
});
