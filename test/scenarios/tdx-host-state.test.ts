/**
 * tdx-host-state: each buggy variant really lets host code find a TD or INIT value where a host
 * value belongs — perf's LBR enable lost across a TD run (buggy-no-debugctl), or the user-return
 * cache left stale by a preemption between the TD run and the late guest_entered
 * (buggy-uret-cache); the fixed variant never does. Checkers on hand-built states are in
 * test/invariants/host-state.test.ts.
 * Here only what is deterministic runs; the buggy variants' free-mode reachability depends on
 * the host's timing and is in test/stress/tdx-host-state.test.ts (`npm run test:stress`).
 */
import test from 'ava';
import { runRace } from '../../src/scenarios/runner.js';
import { SCENARIOS } from '../../src/scenarios/index.js';
import { findVariant } from '../../src/scenarios/define.js';
import { closeSharedPool } from '../../src/runtime/pool.js';
import { tdxHostState } from '../../src/scenarios/tdx-host-state/scenario.js';
import { variantInfo } from '../../src/scenarios/bugs.js';

const ID = 'tdx-host-state';

test.after.always(async () => {
  await closeSharedPool();
});

test('the scenario is in the catalogue with its variants, invariants, roles and seed', (t) => {
  const def = SCENARIOS.find((s) => s.id === ID);
  t.is(def, tdxHostState);
  t.deepEqual(def?.variants.map((v) => v.name), ['buggy-no-debugctl', 'buggy-uret-cache', 'fixed']);
  t.deepEqual(def?.invariants.map((i) => i.name), ['hostStateRestoredBeforeIrqs', 'uretCacheCoherent', 'hostObserversSeeHostValues']);
  t.is(def?.seedFile, '002_0386f14b5b8a249e.txt');
  t.deepEqual(tdxHostState.roles({ variant: findVariant(tdxHostState, 'fixed'), vcpus: 1, seed: 1 }), ['td-vcpu', 'host-irqs', 'other-task']);
});

test('each buggy variant is exactly one named patch on the machine\'s tdx_vcpu_run code; fixed is none', (t) => {
  const info = (name: string) => variantInfo(findVariant(tdxHostState, name));
  t.is(info('fixed').patch, null);
  t.is(info('buggy-no-debugctl').patch, 'tdx-no-debugctl-restore');
  t.is(info('buggy-no-debugctl').reverts[0]?.kind, 'proposal');
  t.is(info('buggy-uret-cache').patch, 'tdx-guest-entered-in-exit-handler');
  t.is(info('buggy-uret-cache').reverts[0]?.kind, 'hypothetical');
});

test.serial('fixed: 2000 rounds, host code always finds host values and the cache always describes the MSRs', async (t) => {
  const r = await runRace(ID, { variant: 'fixed', iterations: 2000, seed: 7 });
  t.is(r.failure, null);
  t.is(r.first, null);
  t.is(r.violations, 0);
  t.is(r.iterations, 2000);
});

test.serial('fixed without widening: 1000 rounds, no violation', async (t) => {
  const r = await runRace(ID, { variant: 'fixed', iterations: 1000, seed: 11, widen: false });
  t.is(r.failure, null);
  t.is(r.first, null);
  t.is(r.iterations, 1000);
});
