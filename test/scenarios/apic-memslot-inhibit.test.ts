/**
 * apic-memslot-inhibit: buggy-srcu-held deadlocks in its first round under every interleaving
 * (reported as noDeadlock, the run still ends), the fixed variant runs clean, and the pure
 * checkers judge hand-built rounds.
 * Here only what is deterministic runs; the buggy variants' free-mode reachability depends on
 * the host's timing and is in test/stress/apic-memslot-inhibit.test.ts (`npm run test:stress`).
 */
import test from 'ava';
import { runRace } from '../../src/scenarios/runner.js';
import { runControlledRace } from '../../src/scenarios/controlled.js';
import { SCENARIOS } from '../../src/scenarios/index.js';
import { closeSharedPool } from '../../src/runtime/pool.js';
import { memslotDisabledImpliesGone, memslotInhibitSticky, type MemslotLookup, type MemslotRound } from '../../src/invariants/memslot.js';

const ID = 'apic-memslot-inhibit';

test.after.always(async () => {
  await closeSharedPool();
});

test('the scenario is in the catalogue with its four variants and three invariants', (t) => {
  const def = SCENARIOS.find((s) => s.id === ID);
  t.truthy(def);
  t.deepEqual(def?.variants.map((v) => v.name), ['buggy-srcu-held', 'buggy-flag-order', 'buggy-no-inhibited', 'fixed']);
  t.deepEqual(def?.invariants.map((i) => i.name), ['noDeadlock', 'memslotInhibitSticky', 'memslotDisabledImpliesGone']);
  t.is(def?.seedFile, '001_a8da36bbce728554.txt');
});

test.serial('buggy-srcu-held: synchronize_srcu under the vCPU\'s own read lock is caught as noDeadlock, and the run still ends', async (t) => {
  // Count-bounded: the deadlock is certain in round 1, whichever thread gets there first. The
  // deadline only has to tell a deadlock from a slow host, so it is generous.
  const r = await runRace(ID, { variant: 'buggy-srcu-held', iterations: 50, seed: 1, deadlineMs: 2000 });
  t.is(r.failure, null);
  t.is(r.first?.invariant, 'noDeadlock');
  t.is(r.iterations, 0, 'no round completes');
  // Self-deadlock (MS-1) or ABBA with the VMM's synchronize_srcu under slots_lock (MS-2): which
  // actor's deadline fires first varies with the interleaving, so match only the stable part.
  t.regex(r.first?.detail ?? '', /synchronize_srcu\(kvm->srcu\)/);
  // Lock holders and SRCU readers are named by the scenario's roles, not by layout slots.
  t.notRegex(r.first?.detail ?? '', /extra\d/);
  for (const m of (r.first?.detail ?? '').matchAll(/held by ([\w-]+)/g)) t.regex(m[1]!, /^(vcpu\d|vmm)$/);
});

test.serial('buggy-srcu-held in controlled mode: MS-1 is reported as the self-deadlock and MS-2 as the ABBA it is, each with its cycle', async (t) => {
  // Seeds whose first schedule is MS-1 (seed 1: a vCPU wins slots_lock and synchronizes under its
  // own read lock) and MS-2 (seed 2: the VMM holds slots_lock in synchronize_srcu, waiting for a
  // vCPU that holds kvm->srcu and waits for slots_lock). Controlled mode: the same every run.
  const ms1 = await runControlledRace(ID, { variant: 'buggy-srcu-held', seed: 1, schedules: 1 });
  t.is(ms1.first?.invariant, 'noDeadlock');
  t.regex(ms1.first?.detail ?? '', /^self-deadlock: (vcpu\d) → \1: \1 waits for synchronize_srcu\(kvm->srcu\)/);
  const ms2 = await runControlledRace(ID, { variant: 'buggy-srcu-held', seed: 2, schedules: 1 });
  t.is(ms2.first?.invariant, 'noDeadlock');
  t.regex(ms2.first?.detail ?? '', /^ABBA deadlock: (vcpu\d) → vmm → \1: \1 waits for slots_lock held by vmm; vmm waits for synchronize_srcu\(kvm->srcu\).*readers inside: .*\1/);
});

for (const vcpus of [2, 3, 5]) {
  test.serial(`fixed (${vcpus} vCPUs): 2000 rounds, no violation, no failure`, async (t) => {
    const r = await runRace(ID, { variant: 'fixed', iterations: 2000, seed: 40 + vcpus, vcpus });
    t.is(r.failure, null);
    t.is(r.first, null);
    t.is(r.violations, 0);
    t.is(r.iterations, 2000);
  });
}

// ---- the pure checkers on hand-built rounds ----

function lookup(over: Partial<MemslotLookup> = {}): MemslotLookup {
  return { vcpu: 0, step: 0, gen: 0, x2apic: false, sawDisabled: false, reachedApicPage: true, stale: false, ...over };
}

function round(over: Partial<MemslotRound> = {}): MemslotRound {
  return {
    lookups: [],
    updates: [],
    final: { enabled: false, inhibited: true, activeGen: 1, apicSlotInActive: false },
    ...over,
  };
}

/** The fixed ordering's typical round: xAPIC lookups reach the page, x2APIC ones after the inhibit do not. */
const GOOD = round({
  lookups: [lookup({ vcpu: 0, step: 0 }), lookup({ vcpu: 1, step: 0 }), lookup({ vcpu: 0, step: 2, gen: 1, x2apic: true, sawDisabled: true, reachedApicPage: false }), lookup({ vcpu: 1, step: 3, gen: 1, x2apic: true, sawDisabled: true, reachedApicPage: false })],
  updates: [
    { op: 'ram', by: 'vmm', inhibit: false },
    { op: 'apic-delete', by: 'vcpu0', inhibit: true },
    { op: 'ram', by: 'vmm', inhibit: false },
  ],
});

test('checkers accept a good round and a round with nothing inhibited yet', (t) => {
  t.deepEqual(memslotDisabledImpliesGone(GOOD), []);
  t.deepEqual(memslotInhibitSticky(GOOD), []);
  const untouched = round({ lookups: [lookup()], final: { enabled: true, inhibited: false, activeGen: 0, apicSlotInActive: true } });
  t.deepEqual(memslotDisabledImpliesGone(untouched), []);
  t.deepEqual(memslotInhibitSticky(untouched), []);
  // Creation before any inhibit (the first vCPU's kvm_alloc_apic_access_page) is fine.
  const created = round({ updates: [{ op: 'apic-create', by: 'vmm', inhibit: false }], final: { enabled: true, inhibited: false, activeGen: 1, apicSlotInActive: true } });
  t.deepEqual(memslotInhibitSticky(created), []);
});

test('memslotDisabledImpliesGone rejects a reader that saw enabled == false and still reached the APIC page (MS-3)', (t) => {
  const bad = round({ lookups: [...GOOD.lookups, lookup({ vcpu: 2, step: 1, gen: 0, x2apic: true, sawDisabled: true, reachedApicPage: true })] });
  const v = memslotDisabledImpliesGone(bad);
  t.is(v.length, 1);
  t.is(v[0]?.invariant, 'memslotDisabledImpliesGone');
  t.is(v[0]?.vcpu, 2);
  t.regex(v[0]?.message ?? '', /vcpu2 \(x2APIC\) saw apic_access_memslot_enabled == false, then \(step 1\) still reached the APIC-access page through memslots generation 0/);
});

test('memslotDisabledImpliesGone rejects a freed array in use and a disabled VM whose active memslots hold the slot', (t) => {
  const stale = memslotDisabledImpliesGone(round({ lookups: [lookup({ vcpu: 1, gen: 0, stale: true })] }));
  t.is(stale.length, 1);
  t.regex(stale[0]?.message ?? '', /vcpu1 \(step 0\) used memslots generation 0 after it was freed/);
  const final = memslotDisabledImpliesGone(round({ final: { enabled: false, inhibited: true, activeGen: 0, apicSlotInActive: true } }));
  t.is(final.length, 1);
  t.regex(final[0]?.message ?? '', /apic_access_memslot_enabled == false but the active memslots \(generation 0\) still hold the APIC-access slot/);
});

test('memslotInhibitSticky rejects re-creation after the x2APIC inhibit (MS-4) and an inhibited VM with the slot present', (t) => {
  const recreated = round({
    updates: [
      { op: 'apic-delete', by: 'vcpu1', inhibit: true },
      { op: 'apic-create', by: 'vmm', inhibit: false },
    ],
    final: { enabled: true, inhibited: false, activeGen: 0, apicSlotInActive: true },
  });
  const v = memslotInhibitSticky(recreated);
  t.is(v.length, 1);
  t.is(v[0]?.invariant, 'memslotInhibitSticky');
  t.regex(v[0]?.message ?? '', /vmm re-created the APIC-access memslot \(update 2 of 2\) after vcpu1 deleted it for x2APIC/);
  const flagged = memslotInhibitSticky(round({ final: { enabled: false, inhibited: true, activeGen: 1, apicSlotInActive: true } }));
  t.is(flagged.length, 1);
  t.regex(flagged[0]?.message ?? '', /apic_access_memslot_inhibited is set but the active memslots \(generation 1\) hold the APIC-access slot/);
});
