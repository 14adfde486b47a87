/**
 * tdx-apicv-inhibit: with the old approach a runtime inhibit makes KVM run the TD with
 * apicv_active = 0 (while the TDX module keeps delivering: no vector is lost); with the new one an
 * inhibit bugs the VM and all vCPUs leave KVM_RUN with -EIO, vectors stranded in the TD's PIR or
 * vIRR, never gone; a PID-only wake-up check loses the vector a TD halted with in RVI; every
 * checker runs in every variant and judges hand-built rounds here. The machine's own parts
 * (tdx_protected_apic_has_interrupt's gating, TDH.VP.RD) are tested directly.
 * Here only what is deterministic runs; the buggy variants' free-mode reachability depends on
 * the host's timing and is in test/stress/tdx-apicv-inhibit.test.ts (`npm run test:stress`).
 */
import test from 'ava';
import { runRace } from '../../src/scenarios/runner.js';
import { SCENARIOS } from '../../src/scenarios/index.js';
import { closeSharedPool } from '../../src/runtime/pool.js';
import { tdxApicvActiveAtEntry, tdxBuggedVmAllExited, tdxSentReachesGuest, type TdApicvRound, type TdVcpuRound } from '../../src/invariants/apicv.js';
import { tdKvmRun } from '../../src/scenarios/tdx-apicv-inhibit/scenario.js';
import { Access, createMachineMemory } from '../../src/mem/access.js';
import { ActorStats } from '../../src/kvm/stats.js';
import { Tracer, sharedClockMs } from '../../src/trace/events.js';
import { vendorModule } from '../../src/kvm/vendors.js';
import { tdxX86Ops } from '../../src/kvm/vmx/tdx.js';
import { initMachineState } from '../../src/runtime/vm-init.js';
import { kvmVmBugged } from '../../src/kvm/vm-bug.js';
import type { KvmCtx } from '../../src/kvm/x86-ops.js';
import type { EmuError } from '../../src/errors.js';
import { NO_PATCHES, PatchSet } from '../../src/kvm/patches.js';
import { PATCH_TDX_HAS_INTERRUPT_PID_ONLY, tdxProtectedApicHasInterrupt } from '../../src/kvm/vmx/tdx.js';
import { tdhVpRdVcpuStateDetails, TDX_VCPU_STATE_DETAILS_INTR_PENDING } from '../../src/hw/tdx/td-cpu.js';
import { VCPU } from '../../src/mem/layout.js';
import { APIC_PROCPRI } from '../../src/mem/apicdef.js';
import { ExitReason } from '../../src/kvm/x86-ops.js';

const ID = 'tdx-apicv-inhibit';

test.after.always(async () => {
  await closeSharedPool();
});

test('the scenario is in the catalogue with its variants (each one machine patch) and its three invariants, checked in every variant', (t) => {
  const def = SCENARIOS.find((s) => s.id === ID);
  t.truthy(def);
  t.deepEqual(def?.variants.map((v) => v.name), ['buggy', 'buggy-hlt-pid-only', 'buggy-no-self-ipi', 'fixed']);
  t.deepEqual(def?.variants.map((v) => v.patches?.map((p) => p.id) ?? []), [['tdx-apicv-inhibit-accepted'], ['tdx-has-interrupt-pid-only'], ['tdx-no-pi-self-ipi'], []]);
  t.true(def?.invariants.every((i) => i.variants === undefined), 'no invariant is switched off for a variant');
  t.deepEqual(def?.invariants.map((i) => i.name), ['tdxApicvActiveAtEntry', 'tdxSentReachesGuest', 'tdxBuggedVmAllExited']);
  t.is(def?.seedFile, '000_12335ea9bf6ce8f5.txt');
});

test.serial('fixed: 2000 rounds with two TD vCPUs (half of them with an inhibit that bugs the VM), no violation of any checker', async (t) => {
  const r = await runRace(ID, { variant: 'fixed', iterations: 2000, seed: 7 });
  t.is(r.failure, null, r.failure?.message);
  t.is(r.first, null);
  t.is(r.violations, 0);
  t.is(r.iterations, 2000);
});

test.serial('fixed with one and with three TD vCPUs: no violation', async (t) => {
  const one = await runRace(ID, { variant: 'fixed', iterations: 2000, seed: 3, vcpus: 1 });
  t.is(one.failure, null);
  t.is(one.first, null);
  const three = await runRace(ID, { variant: 'fixed', iterations: 300, seed: 5, vcpus: 3 });
  t.is(three.failure, null);
  t.is(three.first, null);
});

/** A TD vCPU's record (defaults: one live round, everything sent arrived, APICv active throughout). */
function vcpu(over: Partial<TdVcpuRound>): TdVcpuRound {
  const zero = [0, 0, 0, 0, 0, 0, 0, 0];
  return { vcpu: 0, apicvActive: true, entries: 50, inactiveLiveEntries: 0, firstInactiveLiveEntry: -1, dyingEntries: 0, kvmRun: 'returned', rerun: 'not-tried', sent: [0x40], received: [0x40], pir: zero, on: false, irr: zero, ...over };
}

const ALIASED = 1 << 4;

test('checkers: entries with APICv inactive in a live TD, and a vector stuck in its PIR', (t) => {
  const pir = [0, 0, 1 << 2, 0, 0, 0, 0, 0]; // 0x42
  const r: TdApicvRound = {
    vmBugged: false,
    inhibitReasons: ALIASED,
    vcpus: [vcpu({ apicvActive: false, inactiveLiveEntries: 30, firstInactiveLiveEntry: 20, sent: [0x40, 0x42], received: [0x40], pir, on: true }), vcpu({ vcpu: 1 })],
  };
  const e = tdxApicvActiveAtEntry(r);
  t.is(e.length, 1);
  t.regex(e[0]?.message ?? '', /vcpu0 entered the TD with APICv inactive in a live VM: 30 of 50 TD entries \(first: entry #20\), inhibit reasons PHYSICAL_ID_ALIASED/);
  const l = tdxSentReachesGuest(r);
  t.is(l.length, 1);
  t.regex(l[0]?.message ?? '', /vcpu0 vector 0x42 was sent to the TD but never reached the guest: it sits in PIR with ON=1/);
  t.deepEqual(tdxBuggedVmAllExited(r), [], 'a live VM whose KVM_RUNs returned normally');
});

test('checkers: the new approach — a bugged VM with every vCPU out with -EIO and refused after, its untaken vectors stranded in PIR/vIRR, is the expected outcome', (t) => {
  const r: TdApicvRound = {
    vmBugged: true,
    inhibitReasons: ALIASED,
    vcpus: [
      vcpu({ apicvActive: false, kvmRun: 'eio', rerun: 'refused', sent: [0x40, 0x41], received: [0x40] }),
      // Raced through the APICv update after vcpu0 had bugged the VM: entered again before its KVM_REQ_VM_DEAD arrived.
      vcpu({ vcpu: 1, apicvActive: false, dyingEntries: 3, kvmRun: 'eio', rerun: 'refused' }),
    ],
  };
  t.deepEqual([...tdxBuggedVmAllExited(r), ...tdxApicvActiveAtEntry(r)], []);
  // 0x41 is nowhere: even a dead VM may not have lost it.
  const gone = tdxSentReachesGuest(r);
  t.is(gone.length, 1);
  t.regex(gone[0]?.message ?? '', /vcpu0 vector 0x41 .* nowhere \(gone\) .*VM bugged/);
  const stranded: TdApicvRound = { ...r, vcpus: [vcpu({ apicvActive: false, kvmRun: 'eio', rerun: 'refused', sent: [0x40, 0x41], received: [0x40], irr: [0, 0, 1 << 1, 0, 0, 0, 0, 0] })] };
  t.deepEqual(tdxSentReachesGuest(stranded), [], 'a vector left in the vIRR of a killed TD is stranded, not lost');
  t.is(tdxSentReachesGuest({ ...stranded, vmBugged: false }).length, 1, 'the same in a live TD is lost');
});

test('tdx_protected_apic_has_interrupt: PID first; RVI (the module\'s VCPU_STATE_DETAILS) only after a TDVMCALL(HLT) with interrupts enabled; the PID-only patch never looks', (t) => {
  const mem = createMachineMemory({ vcpus: 1, pcpus: 1 });
  const acc = new Access(mem, { actor: mem.layout.mainActor, name: 'main' });
  const L = mem.layout;
  initMachineState(acc, vendorModule('tdx'));
  const ctx = (patches = NO_PATCHES): KvmCtx => ({ acc, L, nrVcpus: 1, ops: tdxX86Ops, stats: new ActorStats(acc, 1), trace: new Tracer(acc, false, sharedClockMs()), runningVcpu: 0, cpu: 0, needResched: () => false, clockUs: () => 0, patches });
  // RVI = 0x51 above VPPR 0x00: a virtual interrupt is pending in the TD VMCS.
  acc.poke(L.vcpu(0, VCPU.GUEST_INTR_STATUS), 0x51);
  acc.poke(L.apicReg(0, APIC_PROCPRI), 0);
  t.is(tdhVpRdVcpuStateDetails(ctx(), 0), TDX_VCPU_STATE_DETAILS_INTR_PENDING);
  acc.poke(L.vcpu(0, VCPU.EXIT_REASON), ExitReason.HLT);
  acc.poke(L.vcpu(0, VCPU.TDX_HLT_IRQ_BLOCKED), 0);
  t.true(tdxProtectedApicHasInterrupt(ctx(), 0), 'HLT with IRQs on: RVI counts');
  t.false(tdxProtectedApicHasInterrupt(ctx(new PatchSet([PATCH_TDX_HAS_INTERRUPT_PID_ONLY.id])), 0), 'PID-only: RVI is invisible');
  acc.poke(L.vcpu(0, VCPU.TDX_HLT_IRQ_BLOCKED), 1);
  t.false(tdxProtectedApicHasInterrupt(ctx(), 0), 'HLT with IRQs blocked: not an interrupt the TD can take');
  acc.poke(L.vcpu(0, VCPU.EXIT_REASON), ExitReason.MSR_WRITE);
  acc.poke(L.vcpu(0, VCPU.TDX_HLT_IRQ_BLOCKED), 0);
  t.false(tdxProtectedApicHasInterrupt(ctx(), 0), 'not a HLT: KVM does not care about RVI');
  acc.poke(L.apicReg(0, APIC_PROCPRI), 0x60);
  t.is(tdhVpRdVcpuStateDetails(ctx(), 0), 0, 'RVI not above VPPR: nothing pending');
});

test('checkers: a bugged VM with a vCPU still in KVM_RUN, or run again, is a violation; -EIO without a bug too', (t) => {
  const still: TdApicvRound = { vmBugged: true, inhibitReasons: ALIASED, vcpus: [vcpu({ kvmRun: 'eio', rerun: 'refused' }), vcpu({ vcpu: 1, kvmRun: 'returned' })] };
  t.regex(tdxBuggedVmAllExited(still)[0]?.message ?? '', /vcpu1: the VM is bugged but its KVM_RUN returned without -EIO/);
  const again: TdApicvRound = { vmBugged: true, inhibitReasons: ALIASED, vcpus: [vcpu({ kvmRun: 'eio', rerun: 'ran' })] };
  t.regex(tdxBuggedVmAllExited(again)[0]?.message ?? '', /KVM_RUN after -EIO ran the vCPU again/);
  const eio: TdApicvRound = { vmBugged: false, inhibitReasons: 0, vcpus: [vcpu({ kvmRun: 'eio', rerun: 'refused' })] };
  t.regex(tdxBuggedVmAllExited(eio)[0]?.message ?? '', /failed with -EIO but the VM is not bugged/);
});

test('KVM_RUN on a TD vCPU of a bugged VM fails with -EIO before entering', (t) => {
  const mem = createMachineMemory({ vcpus: 2, pcpus: 2 });
  const acc = new Access(mem, { actor: mem.layout.mainActor, name: 'main' });
  initMachineState(acc, vendorModule('tdx'));
  const k: KvmCtx = { acc, L: mem.layout, nrVcpus: 2, ops: tdxX86Ops, stats: new ActorStats(acc, 2), trace: new Tracer(acc, false, sharedClockMs()), runningVcpu: -1, cpu: -1, needResched: () => false, clockUs: () => 0, patches: NO_PATCHES };
  kvmVmBugged(k, 'test');
  let entered = false;
  const e = t.throws(() =>
    tdKvmRun(k, 1, { onInterrupt: () => undefined, step: () => ((entered = true), { kind: 'run' }) }, () => true),
  ) as EmuError;
  t.is(e.code, 'EMU_ERR_VM_BUGGED');
  t.regex(e.message, /-EIO/);
  t.false(entered);
});
