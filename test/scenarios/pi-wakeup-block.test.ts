/**
 * pi-wakeup-block: without the ON re-check after NV switches to the wakeup vector, a vCPU sleeps
 * with a posted interrupt pending and no wake in flight (found within a bounded budget); with it,
 * never; the checkers judge hand-built rounds.
 * Here only what is deterministic runs; the buggy variants' free-mode reachability depends on
 * the host's timing and is in test/stress/pi-wakeup-block.test.ts (`npm run test:stress`).
 */
import test from 'ava';
import { runRace } from '../../src/scenarios/runner.js';
import { SCENARIOS } from '../../src/scenarios/index.js';
import { closeSharedPool } from '../../src/runtime/pool.js';
import { POSTED_INTR_VECTOR, POSTED_INTR_WAKEUP_VECTOR } from '../../src/kvm/kick.js';
import { piBlockedHasWakeInFlight, piWakeupListMatchesNv, type PiBlockRound } from '../../src/invariants/posted-intr.js';
import { Machine } from '../../src/runtime/machine.js';
import { DEFAULT_STORM } from '../../src/guest/programs.js';
import { bugPatches } from '../../src/scenarios/bugs.js';

const ID = 'pi-wakeup-block';

test.after.always(async () => {
  await closeSharedPool();
});

test('the scenario is in the catalogue with its variants and invariants', (t) => {
  const def = SCENARIOS.find((s) => s.id === ID);
  t.truthy(def);
  t.deepEqual(def?.variants.map((v) => v.name), ['buggy', 'fixed']);
  t.deepEqual(def?.invariants.map((i) => i.name), ['piBlockedHasWakeInFlight', 'piWakeupListMatchesNv']);
});

test.serial('fixed: 2000 rounds, every sleeping vCPU with ON set has its wake-up, list and NV agree', async (t) => {
  const r = await runRace(ID, { variant: 'fixed', iterations: 2000, seed: 7 });
  t.is(r.failure, null);
  t.is(r.first, null);
  t.is(r.violations, 0);
  t.is(r.iterations, 2000);
});

test.serial('fixed with two devices: 2000 rounds, no violation', async (t) => {
  const r = await runRace(ID, { variant: 'fixed', iterations: 2000, seed: 11, vcpus: 3 });
  t.is(r.failure, null);
  t.is(r.first, null);
  t.is(r.iterations, 2000);
});

// ---- the --bug proof: the ordinary machine (hvemu run) with the variant's patch ----

/** One tickless storm on 2 vCPUs / 2 pCPUs (each vCPU alone on its pCPU's wakeup list), bounded by a send count. */
async function tickless(patches: string[], seed: number) {
  const m = Machine.create({ vendor: 'vmx', vcpus: 2, pcpus: 2, patches });
  return m.run({ sends: 50_000, seconds: 300, seed, drainMs: 2000, workload: { kind: 'ipi-storm', storm: { ...DEFAULT_STORM, tickless: true } } }).result;
}

test.serial('--bug pi-wakeup-block:buggy: a tickless VMX storm (IPIv) loses interrupts; the same storm without the patch loses none', async (t) => {
  t.deepEqual(bugPatches(`${ID}:buggy`), ['vmx-pi-wakeup-no-on-recheck']);
  const fixed = await tickless([], 1);
  t.is(fixed.failure, undefined, fixed.failure?.message);
  t.is(fixed.accounting.totals.lost, 0);
  t.true(fixed.quiescent);
  t.true(fixed.accounting.totals.sent >= 50_000);
  // The race needs a post between the vCPU's last runnable check and the NV switch; in every run
  // we made it happened within the first few thousand sends. A count budget, retried with other
  // seeds, so that a host that happens to miss it in one budget does not fail the test.
  let lost = 0;
  let runs = 0;
  while (lost === 0 && runs < 5) {
    const r = await tickless(bugPatches(`${ID}:buggy`), 1 + runs++);
    t.is(r.failure, undefined, r.failure?.message);
    lost = r.accounting.totals.lost;
    if (lost > 0) {
      t.false(r.quiescent);
      t.true(r.violations.some((v) => v.invariant === 'noSleepingWithPending' && /pending \(ON=1\)/.test(v.message)));
    }
  }
  t.true(lost > 0, `no interrupt lost in ${runs} budgets of 50000 sends`);
  t.log(`lost ${lost} after ${runs} run(s) of 50000 sends`);
});

// ---- the pure checkers on hand-built rounds ----

const none = (): number[] => [0, 0, 0, 0, 0, 0, 0, 0];
function bits(...vs: number[]): number[] {
  const w = none();
  for (const v of vs) w[v >>> 5] = (w[v >>> 5]! | (1 << (v & 31))) >>> 0;
  return w;
}
/** A vCPU asleep on CPU 0's wakeup list with nothing pending. */
function round(over: Partial<PiBlockRound> = {}): PiBlockRound {
  return { vcpu: 0, sleeping: true, on: false, sn: false, nv: POSTED_INTR_WAKEUP_VECTOR, ndst: 0, pir: none(), virr: none(), wakeupPendingAtNdst: false, onListOf: [0], posted: [], ...over };
}

test('checkers accept a quiet sleeper, a sleeper whose wake-up is pending, and a woken vCPU back on POSTED_INTR_VECTOR', (t) => {
  const quiet = round();
  const wakeInFlight = round({ on: true, pir: bits(0x5b), wakeupPendingAtNdst: true, posted: [0x5b] });
  const woken = round({ sleeping: false, nv: POSTED_INTR_VECTOR, onListOf: [], virr: bits(0x5b), posted: [0x5b] });
  // Running again (not asleep) with ON set: the next VM-entry syncs it.
  const runnable = round({ sleeping: false, on: true, pir: bits(0x77), nv: POSTED_INTR_VECTOR, onListOf: [] });
  for (const r of [quiet, wakeInFlight, woken, runnable]) t.deepEqual([...piBlockedHasWakeInFlight(r), ...piWakeupListMatchesNv(r)], []);
});

test('piBlockedHasWakeInFlight rejects a sleeper with ON set and no wakeup vector pending (PI-3)', (t) => {
  const v = piBlockedHasWakeInFlight(round({ on: true, pir: bits(0x5b), posted: [0x5b] }));
  t.is(v.length, 1);
  t.is(v[0]?.invariant, 'piBlockedHasWakeInFlight');
  t.is(v[0]?.vector, 0x5b);
  t.regex(v[0]?.message ?? '', /vcpu0 sleeps in kvm_vcpu_block with ON=1, PIR = \{0x5b\}, vIRR = \{none\}, NV = 0xf1, NDST = 0, and no wakeup vector pending at CPU 0/);
  // A pending wakeup vector does not help if NV is not the wakeup vector (nothing would be sent later either).
  t.is(piBlockedHasWakeInFlight(round({ on: true, pir: bits(0x5b), nv: POSTED_INTR_VECTOR, onListOf: [], wakeupPendingAtNdst: true })).length, 1);
  // A sleeper with a vIRR vector is a lost wake-up as well.
  t.is(piBlockedHasWakeInFlight(round({ virr: bits(0x30) })).length, 1);
});

test('piWakeupListMatchesNv rejects list membership that disagrees with NV / NDST', (t) => {
  const notListed = piWakeupListMatchesNv(round({ onListOf: [] }));
  t.is(notListed.length, 1);
  t.regex(notListed[0]?.message ?? '', /vcpu0 is on no wakeup list but PID.NV = 0xf1, NDST = 0/);
  t.is(piWakeupListMatchesNv(round({ onListOf: [1] })).length, 1);
  const stale = piWakeupListMatchesNv(round({ sleeping: false, nv: POSTED_INTR_VECTOR, onListOf: [0] }));
  t.regex(stale[0]?.message ?? '', /vcpu0 is on the wakeup list of CPU 0 but PID.NV = 0xf2/);
});
