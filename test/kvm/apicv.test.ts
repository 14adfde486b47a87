/**
 * APICv inhibits: the per-vendor tables equal the kernel's, the update protocol on one thread,
 * and concurrent set/clear from several actors under a running storm ends consistent.
 */
import test from 'ava';
import {
  APICV_INHIBIT_REASON_NAMES,
  AVIC_REQUIRED_APICV_INHIBITS,
  REQUIRED_APICV_INHIBITS,
  VMX_REQUIRED_APICV_INHIBITS,
  apicvInhibitNames,
  kvmSetOrClearApicvInhibit,
  kvmVcpuUpdateApicv,
} from '../../src/kvm/apicv.js';
import { Access, createMachineMemory } from '../../src/mem/access.js';
import { VCPU, VM } from '../../src/mem/layout.js';
import { ActorStats } from '../../src/kvm/stats.js';
import { Tracer, sharedClockMs } from '../../src/trace/events.js';
import { vmxX86Ops } from '../../src/kvm/vmx/vmx.js';
import { vendorModule } from '../../src/kvm/vendors.js';
import { initMachineState } from '../../src/runtime/vm-init.js';
import { KVM_REQ_APICV_UPDATE, KVM_REQ_EVENT } from '../../src/kvm/requests.js';
import type { KvmCtx } from '../../src/kvm/x86-ops.js';
import { Machine } from '../../src/runtime/machine.js';
import { closeSharedPool } from '../../src/runtime/pool.js';
import { NO_PATCHES } from '../../src/kvm/patches.js';

test.after.always(async () => {
  await closeSharedPool();
});

test('enum kvm_apicv_inhibit order and the required sets match the kernel (6.16)', (t) => {
  t.deepEqual(
    [...APICV_INHIBIT_REASON_NAMES],
    ['DISABLED', 'HYPERV', 'ABSENT', 'BLOCKIRQ', 'PHYSICAL_ID_ALIASED', 'APIC_ID_MODIFIED', 'APIC_BASE_MODIFIED', 'NESTED', 'IRQWIN', 'PIT_REINJ', 'SEV', 'LOGICAL_ID_ALIASED'],
  );
  // vmx/main.c VMX_REQUIRED_APICV_INHIBITS
  t.deepEqual(apicvInhibitNames(VMX_REQUIRED_APICV_INHIBITS).sort(), ['ABSENT', 'APIC_BASE_MODIFIED', 'APIC_ID_MODIFIED', 'BLOCKIRQ', 'DISABLED', 'HYPERV', 'PHYSICAL_ID_ALIASED']);
  // svm/svm.h AVIC_REQUIRED_APICV_INHIBITS
  t.deepEqual(
    apicvInhibitNames(AVIC_REQUIRED_APICV_INHIBITS).sort(),
    ['ABSENT', 'APIC_BASE_MODIFIED', 'APIC_ID_MODIFIED', 'BLOCKIRQ', 'DISABLED', 'HYPERV', 'IRQWIN', 'LOGICAL_ID_ALIASED', 'NESTED', 'PHYSICAL_ID_ALIASED', 'PIT_REINJ', 'SEV'],
  );
  t.is(REQUIRED_APICV_INHIBITS.vmx, VMX_REQUIRED_APICV_INHIBITS);
  t.is(REQUIRED_APICV_INHIBITS.svm, AVIC_REQUIRED_APICV_INHIBITS);
});

function ctxOn(vcpus = 2): KvmCtx {
  const mem = createMachineMemory({ vcpus, pcpus: 1 });
  const acc = new Access(mem, { actor: mem.layout.mainActor, name: 'main' });
  initMachineState(acc, vendorModule('vmx'));
  return { acc, L: mem.layout, nrVcpus: vcpus, ops: vmxX86Ops, stats: new ActorStats(acc, vcpus), trace: new Tracer(acc, false, sharedClockMs()), runningVcpu: -1, cpu: -1, needResched: () => false, clockUs: () => 0, patches: NO_PATCHES };
}

test('set: the request goes to every vCPU, then the mask is published; the vCPU deactivates with KVM_REQ_EVENT', (t) => {
  const c = ctxOn();
  kvmSetOrClearApicvInhibit(c, 3 /* BLOCKIRQ */, true);
  t.is(c.acc.peek(c.L.vm(VM.APICV_INHIBIT_REASONS)), 1 << 3);
  for (const v of [0, 1]) t.not(c.acc.peek(c.L.vcpu(v, VCPU.REQUESTS)) & (1 << KVM_REQ_APICV_UPDATE), 0);
  kvmVcpuUpdateApicv(c, 0);
  t.is(c.acc.peek(c.L.vcpu(0, VCPU.APICV_ACTIVE)), 0);
  t.is(c.acc.peek(c.L.vcpu(0, VCPU.IRR_PENDING)), 1, 'irr_pending stays set on deactivation');
  t.not(c.acc.peek(c.L.vcpu(0, VCPU.REQUESTS)) & (1 << KVM_REQ_EVENT), 0);
  kvmSetOrClearApicvInhibit(c, 3, false);
  kvmVcpuUpdateApicv(c, 0);
  t.is(c.acc.peek(c.L.vcpu(0, VCPU.APICV_ACTIVE)), 1);
});

test('a reason the vendor does not honour (AVIC-only NESTED on VMX) is ignored', (t) => {
  const c = ctxOn();
  kvmSetOrClearApicvInhibit(c, 7 /* NESTED */, true);
  t.is(c.acc.peek(c.L.vm(VM.APICV_INHIBIT_REASONS)), 0);
  t.is(c.acc.peek(c.L.vcpu(0, VCPU.REQUESTS)), 0);
});

test.serial('concurrent set/clear from two pCPU threads during a storm: nothing lost, no stale apicv_active', async (t) => {
  const h = Machine.create({ vcpus: 4, pcpus: 2 }).run({ seconds: 120, seed: 5 });
  await new Promise<void>((resolve) => {
    const sub = h.progress$.subscribe(() => {
      sub.unsubscribe();
      resolve();
    });
  });
  // Two actors toggle two different reasons, interleaving freely.
  const toggler = async (reason: number, via: number) => {
    for (let i = 0; i < 30; i++) {
      await h.setApicvInhibit(reason, i % 2 === 0, via);
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  await Promise.all([toggler(3, 0), toggler(4, 1)]);
  h.stop();
  const r = await h.result;
  t.is(r.failure, undefined, r.failure?.message);
  t.true(r.quiescent);
  t.deepEqual(r.violations, [], JSON.stringify(r.violations.slice(0, 3)));
  t.is(r.accounting.totals.lost, 0);
  t.true(r.accounting.totals.delivered > 0);
});
