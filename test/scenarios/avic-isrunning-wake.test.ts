/**
 * avic-isrunning-wake: in the buggy variant (IPI virtualization on an erratum-#1235 host) a
 * sender's AVIC really reads a stale IsRunning=1 while the target's vIRR check misses the IPI,
 * and the target sleeps with it pending; the fixed variants never do; the variants are patches
 * on the machine's AVIC code; the pure checkers judge hand-built rounds.
 * Here only what is deterministic runs; the buggy variants' free-mode reachability depends on
 * the host's timing and is in test/stress/avic-isrunning-wake.test.ts (`npm run test:stress`).
 */
import test from 'ava';
import { runRace } from '../../src/scenarios/runner.js';
import { SCENARIOS } from '../../src/scenarios/index.js';
import { findVariant } from '../../src/scenarios/define.js';
import { closeSharedPool } from '../../src/runtime/pool.js';
import { avicIsrunningWake } from '../../src/scenarios/avic-isrunning-wake/scenario.js';
import { PATCH_AVIC_IPIV_ON_ERRATUM_1235, avicEnableIpiv } from '../../src/kvm/svm/avic.js';
import { PATCH_HW_AVIC_ERRATUM_1235 } from '../../src/hw/svm/avic.js';
import { PatchSet } from '../../src/kvm/patches.js';
import { avicIsRunningImpliesLoaded, avicNoSleepWithPendingIrr, deliverableVectors, type IsRunningRound, type PhysIdEntry, type SleepRound } from '../../src/invariants/avic.js';

const ID = 'avic-isrunning-wake';

test.after.always(async () => {
  await closeSharedPool();
});

test('the scenario is in the catalogue with its variants and invariants', (t) => {
  const def = SCENARIOS.find((s) => s.id === ID);
  t.is(def, avicIsrunningWake);
  t.deepEqual(def?.variants.map((v) => v.name), ['buggy', 'fixed', 'no-erratum']);
  t.deepEqual(def?.invariants.map((i) => i.name), ['avicNoSleepWithPendingIrr', 'avicIsRunningImpliesLoaded']);
  t.is(def?.seedFile, '003_7040354a06e62716.txt');
});

test('the variants are patches: the erratum host, and KVM without the 8de4a1c8164e quirk; enable_ipiv follows them', (t) => {
  const ids = (name: string) => (findVariant(avicIsrunningWake, name).patches ?? []).map((p) => p.id);
  t.deepEqual(ids('buggy'), [PATCH_HW_AVIC_ERRATUM_1235.id, PATCH_AVIC_IPIV_ON_ERRATUM_1235.id]);
  t.deepEqual(ids('fixed'), [PATCH_HW_AVIC_ERRATUM_1235.id]);
  t.deepEqual(ids('no-erratum'), []);
  const ipiv = (name: string) => avicEnableIpiv({ patches: new PatchSet(ids(name)) });
  t.true(ipiv('buggy'));
  t.false(ipiv('fixed'));
  t.true(ipiv('no-erratum'));
  t.is(PATCH_AVIC_IPIV_ON_ERRATUM_1235.origin.ref.slice(0, 12), '8de4a1c8164e');
});

test.serial('fixed: 2000 rounds (4 IPIs each) without a lost wake-up or a bad IsRunning', async (t) => {
  const r = await runRace(ID, { variant: 'fixed', iterations: 2000, seed: 7 });
  t.is(r.failure, null);
  t.is(r.first, null);
  t.is(r.violations, 0);
  t.is(r.iterations, 2000);
});

test.serial('no-erratum (IPI virtualization on a correct CPU): 1000 rounds, no violation', async (t) => {
  const r = await runRace(ID, { variant: 'no-erratum', iterations: 1000, seed: 5 });
  t.is(r.failure, null);
  t.is(r.first, null, r.first?.detail);
  t.is(r.iterations, 1000);
});

test.serial('fixed with two senders: 300 rounds, no violation', async (t) => {
  const r = await runRace(ID, { variant: 'fixed', iterations: 300, seed: 11, vcpus: 3 });
  t.is(r.failure, null);
  t.is(r.first, null);
  t.is(r.iterations, 300);
});

/** A sleep record (defaults: asleep, nothing pending, nothing in flight). */
function sleepRound(over: Partial<SleepRound>): SleepRound {
  return { vcpu: 0, sleeping: true, irr: [0, 0, 0, 0, 0, 0, 0, 0], ppr: 0, inFlight: 0, sent: 1, delivered: 1, ...over };
}
const irrWith = (...vectors: number[]) => {
  const irr = [0, 0, 0, 0, 0, 0, 0, 0];
  for (const v of vectors) irr[v >>> 5]! |= 1 << (v & 31);
  return irr;
};

test('deliverableVectors: vectors >= 0x10 whose class is above PPR', (t) => {
  t.deepEqual(deliverableVectors(irrWith(0x05, 0x41, 0x61), 0), [0x41, 0x61]);
  t.deepEqual(deliverableVectors(irrWith(0x41, 0x61), 0x40), [0x61]);
  t.deepEqual(deliverableVectors(irrWith(0xff), 0), [0xff]);
});

test('avicNoSleepWithPendingIrr: asleep with a deliverable IRR bit and nobody in flight is a violation', (t) => {
  const v = avicNoSleepWithPendingIrr(sleepRound({ irr: irrWith(0x41), delivered: 0 }));
  t.is(v.length, 1);
  t.is(v[0]?.vector, 0x41);
  t.is(v[0]?.invariant, 'avicNoSleepWithPendingIrr');
});

test('avicNoSleepWithPendingIrr accepts: running, a sender in flight, empty or masked IRR', (t) => {
  t.deepEqual(avicNoSleepWithPendingIrr(sleepRound({ sleeping: false, irr: irrWith(0x41) })), []);
  t.deepEqual(avicNoSleepWithPendingIrr(sleepRound({ irr: irrWith(0x41), inFlight: 1 })), []);
  t.deepEqual(avicNoSleepWithPendingIrr(sleepRound({})), []);
  t.deepEqual(avicNoSleepWithPendingIrr(sleepRound({ irr: irrWith(0x41), ppr: 0x50 })), []);
  t.deepEqual(avicNoSleepWithPendingIrr(sleepRound({ irr: irrWith(0x0e) })), []);
});

const entry = (isRunning: boolean, hostId = 0, valid = true): PhysIdEntry => ({ valid, isRunning, hostId });

test('avicIsRunningImpliesLoaded rejects IsRunning while blocking, unloaded, on the wrong pCPU or invalid', (t) => {
  const bad: IsRunningRound = {
    writes: [
      { vcpu: 0, copy: 'table', entry: entry(true, 0), loadedHostId: 0, blocking: true },
      { vcpu: 0, copy: 'kvm', entry: entry(true, 0), loadedHostId: -1, blocking: false },
      { vcpu: 0, copy: 'table', entry: entry(true, 2), loadedHostId: 1, blocking: false },
      { vcpu: 0, copy: 'table', entry: entry(true, 0, false), loadedHostId: 0, blocking: false },
    ],
    final: [{ vcpu: 1, table: entry(true, 1), kvm: entry(false, 1), loadedHostId: 1, blocking: true }],
  };
  const v = avicIsRunningImpliesLoaded(bad);
  t.is(v.length, 5);
  t.true(v.every((x) => x.invariant === 'avicIsRunningImpliesLoaded'));
  t.regex(v[0]?.message ?? '', /blocking/);
  t.regex(v[1]?.message ?? '', /not loaded/);
  t.regex(v[2]?.message ?? '', /host APIC ID 2 but the vCPU is loaded on APIC ID 1/);
  t.regex(v[3]?.message ?? '', /not valid/);
  t.regex(v[4]?.message ?? '', /end of the round/);
});

test('avicIsRunningImpliesLoaded accepts a load / block / unblock / put sequence', (t) => {
  const good: IsRunningRound = {
    writes: [
      { vcpu: 0, copy: 'kvm', entry: entry(true, 0), loadedHostId: 0, blocking: false },
      { vcpu: 0, copy: 'table', entry: entry(true, 0), loadedHostId: 0, blocking: false },
      { vcpu: 0, copy: 'table', entry: entry(false, 0), loadedHostId: 0, blocking: false },
      { vcpu: 0, copy: 'kvm', entry: entry(false, 0), loadedHostId: 0, blocking: false },
      { vcpu: 0, copy: 'kvm', entry: entry(true, 0), loadedHostId: 0, blocking: false },
    ],
    final: [
      { vcpu: 0, table: entry(false, 0), kvm: entry(false, 0), loadedHostId: -1, blocking: true },
      { vcpu: 1, table: entry(true, 1), kvm: entry(true, 1), loadedHostId: 1, blocking: false },
    ],
  };
  t.deepEqual(avicIsRunningImpliesLoaded(good), []);
});
