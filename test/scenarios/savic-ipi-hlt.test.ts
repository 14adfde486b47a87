/**
 * savic-ipi-hlt: each buggy variant really leaves the target asleep with a guest IPI pending in
 * its Secure AVIC backing page — through store buffering (buggy-no-fence) or a plain HLT exit
 * (buggy-no-idle-hlt); the fixed variant never does; the checker judges hand-built rounds.
 * Here only what is deterministic runs; the buggy variants' free-mode reachability depends on
 * the host's timing and is in test/stress/savic-ipi-hlt.test.ts (`npm run test:stress`).
 */
import test from 'ava';
import { runRace } from '../../src/scenarios/runner.js';
import { SCENARIOS } from '../../src/scenarios/index.js';
import { findVariant } from '../../src/scenarios/define.js';
import { closeSharedPool } from '../../src/runtime/pool.js';
import { savicIpiHlt } from '../../src/scenarios/savic-ipi-hlt/scenario.js';
import { PATCH_SAVIC_PLAIN_HLT_INTERCEPT, savicHltIntercept } from '../../src/kvm/svm/savic.js';
import { PATCH_SAVIC_ICR_WRITE_NO_MB } from '../../src/kvm/svm/sev.js';
import { PatchSet } from '../../src/kvm/patches.js';
import { savicNoSleepWithPendingIpi, type SleepRound } from '../../src/invariants/avic.js';

const ID = 'savic-ipi-hlt';

test.after.always(async () => {
  await closeSharedPool();
});

test('the scenario is in the catalogue with its variants and invariant', (t) => {
  const def = SCENARIOS.find((s) => s.id === ID);
  t.is(def, savicIpiHlt);
  t.deepEqual(def?.variants.map((v) => v.name), ['buggy-no-fence', 'buggy-no-idle-hlt', 'fixed']);
  t.deepEqual(def?.invariants.map((i) => i.name), ['savicNoSleepWithPendingIpi']);
  t.is(def?.seedFile, '003_7040354a06e62716.txt');
  t.deepEqual(def?.widen.points, ['guest:'], 'widening stays off the has_pending_ipi / mode store-buffering pair');
});

test('the variants are patches: no barrier in savic_handle_icr_write, a plain HLT intercept; labelled hypothetical', (t) => {
  const ids = (name: string) => (findVariant(savicIpiHlt, name).patches ?? []).map((p) => p.id);
  t.deepEqual(ids('buggy-no-fence'), [PATCH_SAVIC_ICR_WRITE_NO_MB.id]);
  t.deepEqual(ids('buggy-no-idle-hlt'), [PATCH_SAVIC_PLAIN_HLT_INTERCEPT.id]);
  t.deepEqual(ids('fixed'), []);
  const idleHlt = (name: string) => savicHltIntercept({ patches: new PatchSet(ids(name)) }).idleHlt;
  t.false(idleHlt('buggy-no-idle-hlt'));
  t.true(idleHlt('buggy-no-fence'));
  t.true(idleHlt('fixed'));
  for (const p of [PATCH_SAVIC_ICR_WRITE_NO_MB, PATCH_SAVIC_PLAIN_HLT_INTERCEPT]) t.is(p.origin.kind, 'hypothetical');
  t.regex(findVariant(savicIpiHlt, 'fixed').kernel ?? '', /RFC/);
});

test.serial('fixed: 2000 rounds (4 IPIs each), no vCPU ever sleeps on a pending IPI', async (t) => {
  const r = await runRace(ID, { variant: 'fixed', iterations: 2000, seed: 7 });
  t.is(r.failure, null);
  t.is(r.first, null);
  t.is(r.violations, 0);
  t.is(r.iterations, 2000);
});

test.serial('fixed with two senders: 300 rounds, no violation', async (t) => {
  const r = await runRace(ID, { variant: 'fixed', iterations: 300, seed: 11, vcpus: 3 });
  t.is(r.failure, null);
  t.is(r.first, null);
  t.is(r.iterations, 300);
});

function sleepRound(over: Partial<SleepRound>): SleepRound {
  return { vcpu: 0, sleeping: true, irr: [0, 0, 0, 0, 0, 0, 0, 0], ppr: 0, inFlight: 0, sent: 1, delivered: 1, pendingIpiFlag: false, ...over };
}
const irr41 = [0, 0, 2, 0, 0, 0, 0, 0];

test('savicNoSleepWithPendingIpi: asleep with an IPI in the backing page is a violation, even with has_pending_ipi set', (t) => {
  for (const flag of [false, true]) {
    const v = savicNoSleepWithPendingIpi(sleepRound({ irr: irr41, delivered: 0, pendingIpiFlag: flag }));
    t.is(v.length, 1);
    t.is(v[0]?.vector, 0x41);
    t.regex(v[0]?.message ?? '', new RegExp(`has_pending_ipi=${flag ? 1 : 0}`));
  }
});

test('savicNoSleepWithPendingIpi accepts: running, a sender in flight, nothing deliverable', (t) => {
  t.deepEqual(savicNoSleepWithPendingIpi(sleepRound({ sleeping: false, irr: irr41 })), []);
  t.deepEqual(savicNoSleepWithPendingIpi(sleepRound({ irr: irr41, inFlight: 1 })), []);
  t.deepEqual(savicNoSleepWithPendingIpi(sleepRound({})), []);
  t.deepEqual(savicNoSleepWithPendingIpi(sleepRound({ irr: irr41, ppr: 0xf0 })), []);
});
