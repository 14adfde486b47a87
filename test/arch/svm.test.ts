/**
 * AMD AVIC: accelerated IPIs set the target's backing-page IRR, ring the doorbell only when the
 * target is running and otherwise take the incomplete-IPI exit that KVM turns into a wake-up;
 * IsRunning follows load/put and blocking.
 */
import test from 'ava';
import { Machine } from '../../src/runtime/machine.js';
import { closeSharedPool } from '../../src/runtime/pool.js';
import { Access, createMachineMemory } from '../../src/mem/access.js';
import { AVIC_PHYSID, PCPU, VCPU } from '../../src/mem/layout.js';
import { ActorStats } from '../../src/kvm/stats.js';
import { Tracer, sharedClockMs } from '../../src/trace/events.js';
import { vendorModule } from '../../src/kvm/vendors.js';
import { initMachineState } from '../../src/runtime/vm-init.js';
import { avicHwSendIpi } from '../../src/hw/svm/avic.js';
import { avicVcpuLoad, avicVcpuPut } from '../../src/kvm/svm/avic.js';
import { kvmVcpuBlockBegin, kvmVcpuBlockEnd } from '../../src/kvm/block.js';
import { avicIsRunningConsistent } from '../../src/invariants/checks.js';
import { snapshotMachine } from '../../src/invariants/snapshot.js';
import type { KvmCtx } from '../../src/kvm/x86-ops.js';
import { NO_PATCHES } from '../../src/kvm/patches.js';

test.after.always(async () => {
  await closeSharedPool();
});

function svmCtx(cpu = 0, runningVcpu = 0): KvmCtx {
  const mem = createMachineMemory({ vcpus: 3, pcpus: 2 });
  const acc = new Access(mem, { actor: mem.layout.mainActor, name: 'main' });
  const mod = vendorModule('svm');
  initMachineState(acc, mod);
  return { acc, L: mem.layout, nrVcpus: 3, ops: mod.ops, stats: new ActorStats(acc, 3), trace: new Tracer(acc, false, sharedClockMs()), runningVcpu, cpu, needResched: () => false, clockUs: () => 0, patches: NO_PATCHES };
}

test('doorbell only when IsRunning; a not-running target is returned for the incomplete-IPI exit', (t) => {
  const c = svmCtx();
  avicVcpuLoad(c, 1, 1); // vcpu1 running on pCPU 1
  t.deepEqual(avicHwSendIpi(c, 0, 0x45, 1), []);
  t.is(c.acc.peek(c.L.pcpu(1, PCPU.AVIC_DOORBELL)), 1, 'doorbell rung on the host CPU in the entry');
  t.deepEqual(avicHwSendIpi(c, 0, 0x46, 2), [2], 'vcpu2 is not running: incomplete IPI');
  t.is(c.acc.peek(c.L.pcpu(0, PCPU.AVIC_DOORBELL)), 0);
  t.not(c.acc.peek(c.L.apicBitmapWord(2, 0x200, 0x46 >> 5)) & (1 << (0x46 & 31)), 0, 'IRR set before the IsRunning check');
});

test('IsRunning follows load/put, stays clear while blocking, and returns at unblocking', (t) => {
  const c = svmCtx(1, 1);
  avicVcpuLoad(c, 1, 1);
  t.not(c.acc.peek(c.L.avicPhysId(1)) & AVIC_PHYSID.IS_RUNNING, 0);
  kvmVcpuBlockBegin(c, 1);
  t.is(c.acc.peek(c.L.avicPhysId(1)) & AVIC_PHYSID.IS_RUNNING, 0, 'avic_vcpu_blocking clears IsRunning');
  avicVcpuLoad(c, 1, 1);
  t.is(c.acc.peek(c.L.avicPhysId(1)) & AVIC_PHYSID.IS_RUNNING, 0, 'a load while blocking does not set it');
  kvmVcpuBlockEnd(c, 1);
  t.not(c.acc.peek(c.L.avicPhysId(1)) & AVIC_PHYSID.IS_RUNNING, 0, 'avic_vcpu_unblocking sets it again');
  avicVcpuPut(c, 1);
  t.is(c.acc.peek(c.L.avicPhysId(1)) & AVIC_PHYSID.IS_RUNNING, 0);
});

test('the IsRunning checker flags an entry left running for a blocking vCPU', (t) => {
  const c = svmCtx();
  c.acc.writeOnce(c.L.avicPhysId(2), AVIC_PHYSID.VALID | AVIC_PHYSID.IS_RUNNING, 't');
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
