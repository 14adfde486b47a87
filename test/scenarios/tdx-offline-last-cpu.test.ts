/**
 * tdx-offline-last-cpu: without tdx_offline_cpu's check the last online CPU of a package really
 * goes offline while a TD holds its key (and the HKID then cannot be reclaimed); with it the
 * offline is refused with -EBUSY.
 * Here only what is deterministic runs; the buggy variants' free-mode reachability depends on
 * the host's timing and is in test/stress/tdx-offline-last-cpu.test.ts (`npm run test:stress`).
 */
import test from 'ava';
import { runRace } from '../../src/scenarios/runner.js';
import { SCENARIOS } from '../../src/scenarios/index.js';
import { closeSharedPool } from '../../src/runtime/pool.js';
import { tdxOfflineLastCpu } from '../../src/scenarios/tdx-offline-last-cpu/scenario.js';

const ID = 'tdx-offline-last-cpu';

test.after.always(async () => {
  await closeSharedPool();
});

test('the scenario is in the catalogue with its variants and invariant', (t) => {
  const def = SCENARIOS.find((s) => s.id === ID);
  t.is(def, tdxOfflineLastCpu);
  t.deepEqual(def?.variants.map((v) => v.name), ['buggy', 'fixed']);
  t.deepEqual(def?.invariants.map((i) => i.name), ['tdxTdKeepsPackagesOnline']);
  t.is(def?.seedFile, '004_caa808ce7e54f28d.txt');
  t.deepEqual(def?.variants.map((v) => v.patches?.map((x) => x.id) ?? []), [['tdx-offline-cpu-no-hkid-check'], []]);
});

test.serial('fixed: 2000 rounds, every package keeps an online CPU while the TD has a key', async (t) => {
  const r = await runRace(ID, { variant: 'fixed', iterations: 2000, seed: 7 });
  t.is(r.failure, null);
  t.is(r.first, null);
  t.is(r.iterations, 2000);
});

test.serial('fixed with one CPU per package (2 CPUs): 600 rounds, no violation', async (t) => {
  const r = await runRace(ID, { variant: 'fixed', iterations: 600, seed: 3, vcpus: 2 });
  t.is(r.failure, null);
  t.is(r.first, null);
});
