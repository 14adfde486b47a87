/**
 * pi-sb-notification: without the full barrier after `mode = IN_GUEST_MODE` the host CPU's own
 * store buffering strands a posted interrupt (found within a bounded budget); with it, never;
 * the checkers judge hand-built rounds.
 * Here only what is deterministic runs; the buggy variants' free-mode reachability depends on
 * the host's timing and is in test/stress/pi-sb-notification.test.ts (`npm run test:stress`).
 */
import test from 'ava';
import { runRace } from '../../src/scenarios/runner.js';
import { SCENARIOS } from '../../src/scenarios/index.js';
import { closeSharedPool } from '../../src/runtime/pool.js';
import { IN_GUEST_MODE, OUTSIDE_GUEST_MODE } from '../../src/kvm/modes.js';
import { piNoStrandedAtEntry, piPostedReachesTarget, type PiEntryRound } from '../../src/invariants/posted-intr.js';

const ID = 'pi-sb-notification';

test.after.always(async () => {
  await closeSharedPool();
});

test('the scenario is in the catalogue; window widening is off', (t) => {
  const def = SCENARIOS.find((s) => s.id === ID);
  t.truthy(def);
  t.deepEqual(def?.variants.map((v) => v.name), ['buggy', 'fixed']);
  t.deepEqual(def?.invariants.map((i) => i.name), ['piNoStrandedAtEntry', 'piPostedReachesTarget']);
  // Nothing delays the racing store and load: the outcome comes from the host's store buffer.
  t.is(def?.widen.probability, 0);
  t.deepEqual(def?.widen.points, []);
});

test.serial('fixed: 20000 rounds, every posted vector reaches the vIRR', async (t) => {
  const r = await runRace(ID, { variant: 'fixed', iterations: 20_000, seed: 7 });
  t.is(r.failure, null);
  t.is(r.first, null);
  t.is(r.violations, 0);
  t.is(r.iterations, 20_000);
});

test.serial('fixed with two senders (the second finds ON set and sends nothing): 1000 rounds, no violation', async (t) => {
  const r = await runRace(ID, { variant: 'fixed', iterations: 1000, seed: 11, vcpus: 3 });
  t.is(r.failure, null);
  t.is(r.first, null);
  t.is(r.iterations, 1000);
});

// ---- the pure checkers on hand-built rounds ----

const none = (): number[] => [0, 0, 0, 0, 0, 0, 0, 0];
function bits(...vs: number[]): number[] {
  const w = none();
  for (const v of vs) w[v >>> 5] = (w[v >>> 5]! | (1 << (v & 31))) >>> 0;
  return w;
}
function round(over: Partial<PiEntryRound> = {}): PiEntryRound {
  return { target: 0, mode: IN_GUEST_MODE, pir: none(), on: false, notificationPending: false, posted: [], virr: none(), syncedAtEntry: [], notified: [], ...over };
}

test('checkers accept vectors picked up by the entry sync, by a notification, or still announced by a pending notification', (t) => {
  const synced = round({ posted: [0x41], virr: bits(0x41), syncedAtEntry: [0x41] });
  const notified = round({ posted: [0x52], virr: bits(0x52), notified: [0x52] });
  const announced = round({ posted: [0x63], pir: bits(0x63), on: true, notificationPending: true, virr: none() });
  for (const r of [synced, notified]) t.deepEqual([...piNoStrandedAtEntry(r), ...piPostedReachesTarget(r)], []);
  t.deepEqual(piNoStrandedAtEntry(announced), []);
  // Outside guest mode the next entry syncs: not stranded.
  t.deepEqual(piNoStrandedAtEntry(round({ mode: OUTSIDE_GUEST_MODE, pir: bits(0x63), on: true })), []);
});

test('piNoStrandedAtEntry rejects IN_GUEST_MODE with PIR≠0, ON=1 and no notification pending', (t) => {
  const v = piNoStrandedAtEntry(round({ posted: [0x89], pir: bits(0x89), on: true }));
  t.is(v.length, 1);
  t.is(v[0]?.invariant, 'piNoStrandedAtEntry');
  t.is(v[0]?.vector, 0x89);
  t.regex(v[0]?.message ?? '', /vcpu0 is in IN_GUEST_MODE with PIR = \{0x89\}, ON = 1 and no notification pending/);
});

test('piPostedReachesTarget rejects a posted vector that is not in the vIRR and says where it is', (t) => {
  const v = piPostedReachesTarget(round({ posted: [0x41, 0x89], pir: bits(0x89), on: true, virr: bits(0x41), syncedAtEntry: [0x41] }));
  t.deepEqual(v.map((x) => x.vector), [0x89]);
  t.regex(v[0]?.message ?? '', /vector 0x89 was posted but never reached the vIRR: still in PIR \(ON=1\); entry sync took \{0x41\}/);
  const gone = piPostedReachesTarget(round({ posted: [0x30] }));
  t.regex(gone[0]?.message ?? '', /nowhere \(gone\)/);
});
