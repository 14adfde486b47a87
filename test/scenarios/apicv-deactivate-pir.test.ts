/**
 * apicv-deactivate-pir: with the pre-fix entry sync a vector the device posts around the APICv
 * deactivation stays in the PIR; the fixed variant delivers everything by injection; the
 * checker judges hand-built rounds; the device's posting and the irr_pending completion behave.
 * Here only what is deterministic runs; the buggy variants' free-mode reachability depends on
 * the host's timing and is in test/stress/apicv-deactivate-pir.test.ts (`npm run test:stress`).
 */
import test from 'ava';
import { runRace } from '../../src/scenarios/runner.js';
import { SCENARIOS } from '../../src/scenarios/index.js';
import { closeSharedPool } from '../../src/runtime/pool.js';
import { apicvPostedNotLost, type ApicvPirRound } from '../../src/invariants/apicv.js';
import { vtdPostInterrupt } from '../../src/hw/vmx/posting.js';
import { Access, createMachineMemory } from '../../src/mem/access.js';
import { PCPU, PID, VCPU } from '../../src/mem/layout.js';
import { ActorStats } from '../../src/kvm/stats.js';
import { Tracer, sharedClockMs } from '../../src/trace/events.js';
import { vendorModule } from '../../src/kvm/vendors.js';
import { vmxX86Ops } from '../../src/kvm/vmx/vmx.js';
import { vmxSyncPirToIrr } from '../../src/kvm/vmx/posted-intr.js';
import { initMachineState } from '../../src/runtime/vm-init.js';
import { apicFindHighestIrr } from '../../src/apic/index.js';
import { POSTED_INTR_VECTOR, FIRST_SYSTEM_VECTOR_WORD } from '../../src/kvm/kick.js';
import type { KvmCtx } from '../../src/kvm/x86-ops.js';
import { NO_PATCHES } from '../../src/kvm/patches.js';

const ID = 'apicv-deactivate-pir';

test.after.always(async () => {
  await closeSharedPool();
});

test('the scenario is in the catalogue with buggy and fixed and its invariant', (t) => {
  const def = SCENARIOS.find((s) => s.id === ID);
  t.truthy(def);
  t.deepEqual(def?.variants.map((v) => v.name), ['buggy', 'fixed']);
  t.deepEqual(def?.invariants.map((i) => i.name), ['apicvPostedNotLost']);
});

test.serial('fixed: 2000 rounds, every posted vector reaches the guest while APICv is inhibited', async (t) => {
  const r = await runRace(ID, { variant: 'fixed', iterations: 2000, seed: 7 });
  t.is(r.failure, null);
  t.is(r.first, null);
  t.is(r.violations, 0);
  t.is(r.iterations, 2000);
});

test.serial('fixed with two target vCPUs: 1000 rounds, no violation', async (t) => {
  const r = await runRace(ID, { variant: 'fixed', iterations: 1000, seed: 11, vcpus: 2 });
  t.is(r.failure, null);
  t.is(r.first, null);
  t.is(r.iterations, 1000);
});

/** A round record (defaults: everything posted arrived). */
function round(over: Partial<ApicvPirRound>): ApicvPirRound {
  const zero = [0, 0, 0, 0, 0, 0, 0, 0];
  return { vcpu: 0, apicvActive: false, inhibitReasons: 1 << 3, posted: [0x41, 0x62], received: [0x41, 0x62], pir: zero, on: false, irr: zero, isr: zero, injected: -1, inactiveEntries: 40, ...over };
}

test('checker: a posted vector left in the PIR with ON=1 is a violation that says where it sits', (t) => {
  const pir = [0, 0, 1 << 2, 0, 0, 0, 0, 0]; // 0x42
  const v = apicvPostedNotLost([round({ posted: [0x41, 0x42], received: [0x41], pir, on: true })]);
  t.is(v.length, 1);
  t.is(v[0]?.vector, 0x42);
  t.regex(v[0]?.message ?? '', /vcpu0 vector 0x42 was posted by the device but never reached the guest: it sits in PIR with ON=1 \(apicv_active=0, inhibit reasons BLOCKIRQ; 40 VM-entries/);
  const irr = [0, 0, 1 << 2, 0, 0, 0, 0, 0];
  t.regex(apicvPostedNotLost([round({ posted: [0x42], received: [], irr })])[0]?.message ?? '', /sits in vIRR/);
  t.regex(apicvPostedNotLost([round({ posted: [0x42], received: [] })])[0]?.message ?? '', /nowhere \(gone\)/);
});

test('checker: accepts a round where everything posted arrived, and checks every target', (t) => {
  t.deepEqual(apicvPostedNotLost([round({}), round({ vcpu: 1, posted: [], received: [] })]), []);
  t.is(apicvPostedNotLost([round({}), round({ vcpu: 1, posted: [0x50], received: [] })])[0]?.vcpu, 1);
});

function ctx(): KvmCtx {
  const mem = createMachineMemory({ vcpus: 1, pcpus: 1 });
  const acc = new Access(mem, { actor: mem.layout.mainActor, name: 'main' });
  initMachineState(acc, vendorModule('vmx'));
  return { acc, L: mem.layout, nrVcpus: 1, ops: vmxX86Ops, stats: new ActorStats(acc, 1), trace: new Tracer(acc, false, sharedClockMs()), runningVcpu: -1, cpu: -1, needResched: () => false, clockUs: () => 0, patches: NO_PATCHES };
}

test('the device posts like VT-d: PIR, ON, one notification to NDST; a second post while ON is set sends none; SN suppresses it', (t) => {
  const k = ctx();
  const { acc, L } = k;
  const nvBit = 1 << (POSTED_INTR_VECTOR - FIRST_SYSTEM_VECTOR_WORD);
  t.true(vtdPostInterrupt(k, 0, 0x41));
  t.is(acc.peek(L.pid(0, PID.PIR, 2)), 1 << 1);
  t.is(acc.peek(L.pid(0, PID.CONTROL)) & 1, 1);
  t.is(acc.peek(L.pcpu(0, PCPU.HOST_IRR_SYS)), nvBit);
  acc.poke(L.pcpu(0, PCPU.HOST_IRR_SYS), 0);
  t.true(vtdPostInterrupt(k, 0, 0x42));
  t.is(acc.peek(L.pcpu(0, PCPU.HOST_IRR_SYS)), 0, 'ON already set: no second notification');
  t.false(vtdPostInterrupt(k, 0, 0x42), 'coalesced');
  acc.poke(L.pid(0, PID.CONTROL), (acc.peek(L.pid(0, PID.CONTROL)) & ~1) | 2); // ON = 0, SN = 1
  t.true(vtdPostInterrupt(k, 0, 0x43));
  t.is(acc.peek(L.pid(0, PID.CONTROL)) & 1, 0, 'SN: ON stays clear');
  t.is(acc.peek(L.pcpu(0, PCPU.HOST_IRR_SYS)), 0, 'SN: no notification');
});

test('without APICv, the PIR sync raises irr_pending (kvm_apic_update_irr), so injection sees the vector', (t) => {
  const k = ctx();
  const { acc, L } = k;
  acc.poke(L.vcpu(0, VCPU.APICV_ACTIVE), 0);
  acc.poke(L.vcpu(0, VCPU.IRR_PENDING), 0); // everything injected so far: the hint is clear
  vtdPostInterrupt(k, 0, 0x51);
  vmxSyncPirToIrr(k, 0);
  t.is(acc.peek(L.vcpu(0, VCPU.IRR_PENDING)), 1);
  t.is(apicFindHighestIrr(acc, 0), 0x51);
  // Nothing in the IRR: the hint is left alone.
  const e = ctx();
  e.acc.poke(e.L.vcpu(0, VCPU.APICV_ACTIVE), 0);
  e.acc.poke(e.L.vcpu(0, VCPU.IRR_PENDING), 0);
  vmxSyncPirToIrr(e, 0);
  t.is(e.acc.peek(e.L.vcpu(0, VCPU.IRR_PENDING)), 0);
});
