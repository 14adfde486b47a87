/**
 * AMD AVIC: the physical APIC ID table as 64-bit entries (two words); accelerated IPIs set the
 * target's backing-page IRR, ring the doorbell only when the target is running and otherwise
 * take #VMEXIT(AVIC_INCOMPLETE_IPI) with its exit info, which KVM decodes and turns into a
 * wake-up; IsRunning follows load/put and blocking, and stays out of the table when IPI
 * virtualization is off (erratum #1235 hosts); the CPU looks at a new IRR bit only on a doorbell
 * or at VMRUN.
 */
import test from 'ava';
import { Machine } from '../../src/runtime/machine.js';
import { closeSharedPool } from '../../src/runtime/pool.js';
import { Access, createMachineMemory } from '../../src/mem/access.js';
import { AVIC_PHYSID, PCPU, VCPU } from '../../src/mem/layout.js';
import { APIC_IRR } from '../../src/mem/apicdef.js';
import { ActorStats } from '../../src/kvm/stats.js';
import { Tracer, sharedClockMs } from '../../src/trace/events.js';
import { vendorModule } from '../../src/kvm/vendors.js';
import { initMachineState } from '../../src/runtime/vm-init.js';
import { AVIC_ICR_DONE, AVIC_IPI_FAILURE, AVIC_PHYSICAL_ID_ENTRY, PATCH_HW_AVIC_ERRATUM_1235, avicHwIcrWrite, bootCpuFamily, svmVcpuRun } from '../../src/hw/svm/avic.js';
import { PATCH_AVIC_IPIV_ON_ERRATUM_1235, avicEnableIpiv, avicIncompleteIpiInterception, avicVcpuLoad, avicVcpuPut } from '../../src/kvm/svm/avic.js';
import { kvmVcpuBlockBegin, kvmVcpuBlockEnd } from '../../src/kvm/block.js';
import { TASK_INTERRUPTIBLE } from '../../src/kvm/kick.js';
import { ExitReason, type GuestAction, type GuestExit, type GuestProgram, type KvmCtx } from '../../src/kvm/x86-ops.js';
import { avicIsRunningConsistent } from '../../src/invariants/checks.js';
import { snapshotMachine } from '../../src/invariants/snapshot.js';
import { NO_PATCHES, PatchSet } from '../../src/kvm/patches.js';

test.after.always(async () => {
  await closeSharedPool();
});

function svmCtx(cpu = 0, runningVcpu = 0, patches = NO_PATCHES): KvmCtx {
  const mem = createMachineMemory({ vcpus: 3, pcpus: 3 });
  const acc = new Access(mem, { actor: mem.layout.mainActor, name: 'main' });
  const mod = vendorModule('svm');
  initMachineState(acc, mod);
  return { acc, L: mem.layout, nrVcpus: 3, ops: mod.ops, stats: new ActorStats(acc, 3), trace: new Tracer(acc, false, sharedClockMs()), runningVcpu, cpu, needResched: () => false, clockUs: () => 0, patches };
}
const hi = (c: KvmCtx, v: number) => c.acc.peek(c.L.avicPhysId(v, AVIC_PHYSID.ENTRY_HI));
const lo = (c: KvmCtx, v: number) => c.acc.peek(c.L.avicPhysId(v, AVIC_PHYSID.ENTRY_LO));
const kvmHi = (c: KvmCtx, v: number) => c.acc.peek(c.L.avicPhysId(v, AVIC_PHYSID.KVM_ENTRY_HI));
const running = (w: number) => (w & AVIC_PHYSICAL_ID_ENTRY.IS_RUNNING_MASK_HI) !== 0;
const irrHas = (c: KvmCtx, v: number, vec: number) => (c.acc.peek(c.L.apicBitmapWord(v, APIC_IRR, vec >> 5)) & (1 << (vec & 31))) !== 0;

test('a fresh entry is Valid, names the vCPU backing page (KVM APIC page) and is not running', (t) => {
  const c = svmCtx();
  t.not(hi(c, 1) & AVIC_PHYSICAL_ID_ENTRY.VALID_MASK_HI, 0);
  t.false(running(hi(c, 1)));
  t.is(c.L.wordAtPhys((lo(c, 1) & AVIC_PHYSICAL_ID_ENTRY.BACKING_PAGE_MASK_LO) >>> 0), c.L.apicReg(1, 0));
});

test('doorbell only when IsRunning; a not-running target exits AVIC_INCOMPLETE_IPI with the exit info decoded', (t) => {
  const c = svmCtx();
  avicVcpuLoad(c, 1, 1); // vcpu1 running on pCPU 1
  t.is(lo(c, 1) & AVIC_PHYSICAL_ID_ENTRY.HOST_PHYSICAL_ID_MASK_LO, 1, 'host physical APIC ID of pCPU 1');
  t.is(avicHwIcrWrite(c, 0, 0x45, 1), AVIC_ICR_DONE);
  t.is(c.acc.peek(c.L.pcpu(1, PCPU.AVIC_DOORBELL)), 1, 'doorbell rung on the host CPU in the entry');
  const exit = avicHwIcrWrite(c, 0, 0x46, 2) as GuestExit;
  t.is(exit.reason, ExitReason.AVIC_INCOMPLETE_IPI);
  t.deepEqual(exit.exitInfo1, { hi: 2, lo: 0x46 }, 'exit_info_1 = ICR');
  t.deepEqual(exit.exitInfo2, { hi: AVIC_IPI_FAILURE.TARGET_NOT_RUNNING, lo: 2 }, 'exit_info_2 = TARGET_NOT_RUNNING : index 2');
  t.true(irrHas(c, 2, 0x46), 'IRR set before the IsRunning check');
  // KVM: avic_incomplete_ipi_interception -> kick -> vcpu2 (asleep) is woken.
  c.acc.poke(c.L.vcpu(2, VCPU.WAIT_TASK), 1);
  c.acc.poke(c.L.vcpu(2, VCPU.TASK_STATE), TASK_INTERRUPTIBLE);
  avicIncompleteIpiInterception(c, 0, exit);
  t.is(c.acc.peek(c.L.vcpu(2, VCPU.TASK_STATE)), 0, 'kvm_vcpu_wake_up woke the target');
  t.is(c.acc.peek(c.L.vcpu(2, VCPU.IRR_PENDING)), 1);
});

test('non-fixed and invalid-target IPIs exit for KVM to emulate; vector < 16 is INVALID_IPI_VECTOR', (t) => {
  const c = svmCtx();
  const nmi = avicHwIcrWrite(c, 0, 0x400, 1) as GuestExit;
  t.is(nmi.exitInfo2?.hi, AVIC_IPI_FAILURE.INVALID_INT_TYPE);
  c.acc.poke(c.L.avicPhysId(2, AVIC_PHYSID.ENTRY_HI), 0);
  const inv = avicHwIcrWrite(c, 0, 0x50, 2) as GuestExit;
  t.deepEqual(inv.exitInfo2, { hi: AVIC_IPI_FAILURE.INVALID_TARGET, lo: 2 });
  t.false(irrHas(c, 2, 0x50), 'nothing delivered by the CPU for an invalid target');
  avicIncompleteIpiInterception(c, 0, inv);
  t.true(irrHas(c, 2, 0x50), 'KVM emulated the IPI (kvm_apic_send_ipi)');
  t.is((avicHwIcrWrite(c, 0, 0x05, 1) as GuestExit).exitInfo2?.hi, AVIC_IPI_FAILURE.INVALID_IPI_VECTOR);
});

test('IsRunning follows load/put, stays clear while blocking, and returns at unblocking', (t) => {
  const c = svmCtx(1, 1);
  avicVcpuLoad(c, 1, 1);
  t.true(running(hi(c, 1)));
  kvmVcpuBlockBegin(c, 1);
  t.false(running(hi(c, 1)), 'avic_vcpu_blocking clears IsRunning');
  avicVcpuLoad(c, 1, 1);
  t.false(running(hi(c, 1)), 'a load while blocking does not set it');
  c.acc.poke(c.L.vcpu(1, VCPU.CPU), 1);
  kvmVcpuBlockEnd(c, 1);
  t.true(running(hi(c, 1)), 'avic_vcpu_unblocking sets it again');
  avicVcpuPut(c, 1);
  t.false(running(hi(c, 1)));
});

test('erratum #1235 host: KVM turns IPI virtualization off (the table never says IsRunning, KVM’s copy does); the revert patch leaves it on', (t) => {
  const erratum = new PatchSet([PATCH_HW_AVIC_ERRATUM_1235.id]);
  t.is(bootCpuFamily({ patches: erratum }), 0x17);
  t.is(bootCpuFamily({ patches: NO_PATCHES }), 0x19);
  t.false(avicEnableIpiv({ patches: erratum }));
  t.true(avicEnableIpiv({ patches: NO_PATCHES }));
  t.true(avicEnableIpiv({ patches: new PatchSet([PATCH_HW_AVIC_ERRATUM_1235.id, PATCH_AVIC_IPIV_ON_ERRATUM_1235.id]) }));
  const c = svmCtx(1, 1, erratum);
  avicVcpuLoad(c, 1, 1);
  t.false(running(hi(c, 1)), 'table: not running');
  t.true(running(kvmHi(c, 1)), "KVM's copy: running");
  t.is((avicHwIcrWrite(c, 0, 0x47, 1) as GuestExit).exitInfo2?.hi, AVIC_IPI_FAILURE.TARGET_NOT_RUNNING, 'every IPI exits to KVM');
});

test('the CPU notices an IRR bit set while it runs the guest only after a doorbell (or at VMRUN)', (t) => {
  const c = svmCtx(1, 1);
  avicVcpuLoad(c, 1, 1);
  const got: [number, number][] = [];
  let steps = 0;
  const guest: GuestProgram = {
    onInterrupt: (v) => got.push([v, steps]),
    step(): GuestAction {
      steps++;
      if (steps === 2) c.acc.atomicOr(c.L.apicBitmapWord(1, APIC_IRR, 0x55 >> 5), 1 << (0x55 & 31), 't'); // another CPU sets IRR, no doorbell
      if (steps === 6) c.acc.poke(c.L.pcpu(1, PCPU.AVIC_DOORBELL), 1);
      return { kind: 'run' };
    },
  };
  svmVcpuRun(c, 1, guest, 10);
  t.deepEqual(got, [[0x55, 6]], 'taken right after the doorbell, not at steps 3..5');
  c.acc.atomicOr(c.L.apicBitmapWord(1, APIC_IRR, 0x56 >> 5), 1 << (0x56 & 31), 't');
  svmVcpuRun(c, 1, guest, 1);
  t.deepEqual(got.at(-1), [0x56, 9], 'VMRUN evaluates the backing page');
});

test('the IsRunning checker flags an entry left running for a blocking vCPU', (t) => {
  const c = svmCtx();
  c.acc.writeOnce(c.L.avicPhysId(2, AVIC_PHYSID.ENTRY_HI), AVIC_PHYSICAL_ID_ENTRY.VALID_MASK_HI | AVIC_PHYSICAL_ID_ENTRY.IS_RUNNING_MASK_HI, 't');
  c.acc.writeOnce(c.L.vcpu(2, VCPU.BLOCKING), 1, 't');
  t.is(avicIsRunningConsistent(snapshotMachine(c.acc))[0]?.vcpu, 2);
});

test.serial('AVIC storm on 4 vCPUs / 2 pCPUs: nothing lost, IsRunning consistent at the end', async (t) => {
  const r = await Machine.create({ vendor: 'svm', vcpus: 4, pcpus: 2 }).run({ sends: 2000, seed: 4 }).result;
  t.true(r.ok, r.failure?.message ?? JSON.stringify(r.violations.slice(0, 2)));
  t.is(r.accounting.totals.lost, 0);
  t.true((r.accounting.misc.wakeups ?? 0) > 0, 'incomplete IPIs woke halted targets');
  t.true((r.accounting.misc.notifications ?? 0) > 0, 'doorbells rang for running targets');
});
