/**
 * savic-requested-irr: the buggy variant loses vectors through real interleaving; the fixed
 * variant never does; the checkers see bad states and accept good ones.
 * Here only what is deterministic runs; the buggy variants' free-mode reachability depends on
 * the host's timing and is in test/stress/savic-requested-irr.test.ts (`npm run test:stress`).
 */
import test from 'ava';
import { runRace } from '../../src/scenarios/runner.js';
import { closeSharedPool } from '../../src/runtime/pool.js';
import { savicNoDisallowedDelivered, savicNoLostAllowedVector, savicRequestedIrrSingleWriter, type SavicRound } from '../../src/invariants/savic.js';
import { findVariant } from '../../src/scenarios/define.js';
import { savicRequestedIrr } from '../../src/scenarios/savic-requested-irr/scenario.js';
import { PATCH_SAVIC_REMOTE_REQUESTED_IRR } from '../../src/kvm/svm/sev.js';

test.after.always(async () => {
  await closeSharedPool();
});

test.serial('fixed: 2000 rounds, every allowed vector reaches the guest, one writer of RequestedIRR', async (t) => {
  const r = await runRace('savic-requested-irr', { variant: 'fixed', iterations: 2000, seed: 7 });
  t.is(r.failure, null);
  t.is(r.first, null);
  t.is(r.violations, 0);
  t.is(r.iterations, 2000);
});

test('buggy is the patch savic-remote-requested-irr on deliver_interrupt (hypothetical: no RFC version wrote RequestedIRR remotely)', (t) => {
  t.deepEqual(findVariant(savicRequestedIrr, 'buggy').patches?.map((p) => p.id), [PATCH_SAVIC_REMOTE_REQUESTED_IRR.id]);
  t.deepEqual(findVariant(savicRequestedIrr, 'fixed').patches ?? [], []);
  t.is(PATCH_SAVIC_REMOTE_REQUESTED_IRR.origin.kind, 'hypothetical');
});

test.serial('buggy: the machine counts the remote RequestedIRR writes and the single-writer checker reports them in the first round', async (t) => {
  const r = await runRace('savic-requested-irr', { variant: 'buggy', iterations: 20, seed: 3 });
  t.is(r.failure, null);
  t.truthy(r.first);
  t.true(['savicRequestedIrrSingleWriter', 'savicNoLostAllowedVector'].includes(r.first?.invariant ?? ''), r.first?.invariant);
});

const allowedAll = [~0, ~0, ~0, ~0, ~0, ~0, ~0, ~0].map((x) => x >>> 0);
function round(over: Partial<SavicRound>): SavicRound {
  return { target: 0, sent: new Uint32Array(256), delivered: new Uint32Array(256), allowed: allowedAll, foreignWrites: 0, ...over };
}

test('checkers: a lost allowed vector, a delivered disallowed vector and a foreign writer are violations', (t) => {
  const sent = new Uint32Array(256);
  const delivered = new Uint32Array(256);
  sent[0x41] = 1;
  sent[0x42] = 1;
  delivered[0x42] = 1;
  t.deepEqual(
    savicNoLostAllowedVector(round({ sent, delivered })).map((v) => v.vector),
    [0x41],
  );
  const allowed = [...allowedAll];
  allowed[2] = 0xfffffffe; // 0x40 not allowed
  const d2 = new Uint32Array(256);
  d2[0x40] = 1;
  t.is(savicNoDisallowedDelivered(round({ delivered: d2, allowed }))[0]?.vector, 0x40);
  t.is(savicRequestedIrrSingleWriter(round({ foreignWrites: 3 })).length, 1);
});

test('checkers accept a clean round (disallowed vectors sent but filtered are fine)', (t) => {
  const allowed = [...allowedAll];
  allowed[2] = 0xfffffffe;
  const sent = new Uint32Array(256);
  const delivered = new Uint32Array(256);
  sent[0x40] = 1; // disallowed: dropped by hardware, not a loss
  sent[0x41] = 1;
  delivered[0x41] = 1;
  const r = round({ sent, delivered, allowed });
  t.deepEqual([...savicNoLostAllowedVector(r), ...savicNoDisallowedDelivered(r), ...savicRequestedIrrSingleWriter(r)], []);
});
