/**
 * The VMX posted-interrupt path as plain functions on one thread: sender protocol, wake-ups,
 * notification, pre-entry sync, posted-interrupt processing in the guest, blocking, and the
 * non-APICv fallback. (The same functions run concurrently in test/runtime.)
 */
import test from 'ava';
import { Access, createMachineMemory, type MachineMemory } from '../../src/mem/access.js';
import { PCPU, PID, VCPU } from '../../src/mem/layout.js';
import { APIC_IRR, APIC_ISR } from '../../src/mem/apicdef.js';
import { ActorStats } from '../../src/kvm/stats.js';
import { Tracer, sharedClockMs } from '../../src/trace/events.js';
import { vmxX86Ops } from '../../src/kvm/vmx/vmx.js';
import { vendorModule } from '../../src/kvm/vendors.js';
import { initMachineState } from '../../src/runtime/vm-init.js';
import { vmxDeliverInterrupt, vmxSyncPirToIrr } from '../../src/kvm/vmx/posted-intr.js';
import { vmxVcpuRun } from '../../src/hw/vmx/cpu.js';
import { vcpuEnterGuest } from '../../src/kvm/x86.js';
import { kvmVcpuBlockBegin, kvmVcpuBlockEnd, kvmVcpuBlockIter } from '../../src/kvm/block.js';
import { kvmVcpuKick, POSTED_INTR_VECTOR, RESCHEDULE_VECTOR, TASK_INTERRUPTIBLE } from '../../src/kvm/kick.js';
import { EXITING_GUEST_MODE, IN_GUEST_MODE, OUTSIDE_GUEST_MODE } from '../../src/kvm/modes.js';
import { KVM_REQ_EVENT } from '../../src/kvm/requests.js';
import { ExitReason, type KvmCtx } from '../../src/kvm/x86-ops.js';
import { ScriptGuest, TIMER_VECTOR } from '../../src/guest/programs.js';
import { kvmSetLapicTscdeadlineMsr } from '../../src/kvm/lapic-timer.js';
import { NO_PATCHES } from '../../src/kvm/patches.js';

function machine(vcpus = 2, pcpus = 2): MachineMemory {
  const mem = createMachineMemory({ vcpus, pcpus });
  initMachineState(new Access(mem, { actor: mem.layout.mainActor, name: 'main' }), vendorModule('vmx'));
  return mem;
}

function ctx(mem: MachineMemory, actor: number, runningVcpu: number, cpu: number): KvmCtx {
  const acc = new Access(mem, { actor, name: `a${actor}` });
  return { acc, L: mem.layout, nrVcpus: mem.layout.config.vcpus, ops: vmxX86Ops, stats: new ActorStats(acc, mem.layout.config.vcpus), trace: new Tracer(acc, false, sharedClockMs()), runningVcpu, cpu, needResched: () => false, clockUs: () => 1, patches: NO_PATCHES };
}

const bit = (vector: number) => 1 << (vector - 0xe0);
const pirHas = (c: KvmCtx, v: number, vec: number) => (c.acc.peek(c.L.pid(v, PID.PIR, vec >> 5)) & (1 << (vec & 31))) !== 0;
const irrHas = (c: KvmCtx, v: number, vec: number) => (c.acc.peek(c.L.apicBitmapWord(v, APIC_IRR, vec >> 5)) & (1 << (vec & 31))) !== 0;
const on = (c: KvmCtx, v: number) => (c.acc.peek(c.L.pid(v, PID.CONTROL)) & 1) !== 0;

test('post to a vCPU outside guest mode: PIR + ON, no notification IPI, a wake-up attempt', (t) => {
  const mem = machine();
  const s = ctx(mem, 0, 0, 0);
  vmxDeliverInterrupt(s, 1, 0x45);
  t.true(pirHas(s, 1, 0x45));
  t.true(on(s, 1));
  t.is(s.acc.peek(s.L.pcpu(1, PCPU.HOST_IRR_SYS)), 0);
  t.is(s.acc.peek(s.L.vcpu(1, VCPU.READY)), 0, 'nobody was asleep: kvm_vcpu_wake_up leaves vcpu->ready alone');
  t.is(s.stats.misc.notifications, 0);
});

test('post to a vCPU in guest mode rings its pCPU once; ON already set means no second IPI', (t) => {
  const mem = machine();
  const s = ctx(mem, 0, 0, 0);
  s.acc.writeOnce(s.L.vcpu(1, VCPU.MODE), IN_GUEST_MODE, 't');
  s.acc.writeOnce(s.L.vcpu(1, VCPU.CPU), 1, 't');
  vmxDeliverInterrupt(s, 1, 0x45);
  vmxDeliverInterrupt(s, 1, 0x46);
  t.is(s.acc.peek(s.L.pcpu(1, PCPU.HOST_IRR_SYS)), bit(POSTED_INTR_VECTOR));
  t.is(s.stats.misc.notifications, 1);
  t.true(pirHas(s, 1, 0x46));
});

test('the same vector posted twice before a sync coalesces', (t) => {
  const mem = machine();
  const s = ctx(mem, 0, 0, 0);
  vmxDeliverInterrupt(s, 1, 0x45);
  vmxDeliverInterrupt(s, 1, 0x45);
  t.is(s.stats.coalesced[1 * 256 + 0x45], 1);
});

test('a sleeping target is woken (rcuwait + TASK_INTERRUPTIBLE -> TASK_RUNNING)', (t) => {
  const mem = machine();
  const s = ctx(mem, 0, 0, 0);
  s.acc.writeOnce(s.L.vcpu(1, VCPU.WAIT_TASK), 1, 't');
  s.acc.writeOnce(s.L.vcpu(1, VCPU.TASK_STATE), TASK_INTERRUPTIBLE, 't');
  vmxDeliverInterrupt(s, 1, 0x45);
  t.is(s.acc.peek(s.L.vcpu(1, VCPU.TASK_STATE)), 0);
  t.is(s.stats.misc.wakeups, 1);
  t.is(s.acc.peek(s.L.vcpu(1, VCPU.READY)), 1, 'a real wake-up sets vcpu->ready');
});

test('vmx_sync_pir_to_irr: ON cleared, PIR moved to vIRR, RVI = highest, duplicates counted as coalesced', (t) => {
  const mem = machine();
  const s = ctx(mem, 0, 0, 0);
  const r = ctx(mem, 1, 1, 1);
  r.acc.setBit(r.L.apicBitmapWord(1, APIC_IRR, 0x45 >> 5), 0x45 & 31, 't');
  vmxDeliverInterrupt(s, 1, 0x45);
  vmxDeliverInterrupt(s, 1, 0x81);
  const max = vmxSyncPirToIrr(r, 1);
  t.is(max, 0x81);
  t.false(on(r, 1));
  t.false(pirHas(r, 1, 0x81));
  t.true(irrHas(r, 1, 0x81) && irrHas(r, 1, 0x45));
  t.is(r.acc.peek(r.L.vcpu(1, VCPU.GUEST_INTR_STATUS)) & 0xff, 0x81);
  t.is(r.stats.coalesced[1 * 256 + 0x45], 1);
});

test('posted-interrupt processing in guest mode delivers to the guest handler and EOIs', (t) => {
  const mem = machine();
  const s = ctx(mem, 0, 0, 0);
  const r = ctx(mem, 1, 1, 1);
  r.acc.writeOnce(r.L.vcpu(1, VCPU.MODE), IN_GUEST_MODE, 't');
  r.acc.writeOnce(r.L.vcpu(1, VCPU.CPU), 1, 't');
  vmxDeliverInterrupt(s, 1, 0x52);
  const guest = new ScriptGuest([]);
  const exit = vmxVcpuRun(r, 1, guest, 10);
  t.is(exit.reason, ExitReason.HLT);
  t.deepEqual(guest.received, [0x52]);
  t.is(r.stats.misc.hwPiProcessed, 1);
  t.is(r.acc.peek(r.L.pcpu(1, PCPU.HOST_IRR_SYS)), 0, 'notification acked');
  t.is(r.acc.peek(r.L.apicBitmapWord(1, APIC_ISR, 0x52 >> 5)), 0, 'EOI cleared ISR');
  t.is(r.stats.delivered[1 * 256 + 0x52], 1);
});

test('vcpu_enter_guest: an ICR write goes out through the fastpath and the vCPU leaves guest mode on HLT', (t) => {
  const mem = machine();
  const c = ctx(mem, 0, 0, 0);
  const guest = new ScriptGuest([{ msr: 0x830, lo: 0x61, hi: 1 }]);
  t.is(vcpuEnterGuest(c, 0, guest, 100), 'halt');
  t.is(c.acc.peek(c.L.vcpu(0, VCPU.MODE)), OUTSIDE_GUEST_MODE);
  t.true(pirHas(c, 1, 0x61));
  t.is(c.stats.sent[1 * 256 + 0x61], 1);
});

test('a pending posted interrupt makes kvm_vcpu_block return without sleeping', (t) => {
  const mem = machine();
  const s = ctx(mem, 0, 0, 0);
  const r = ctx(mem, 1, 1, -1);
  vmxDeliverInterrupt(s, 1, 0x70);
  kvmVcpuBlockBegin(r, 1);
  let scheduled = 0;
  t.true(kvmVcpuBlockIter(r, 1, () => scheduled++));
  kvmVcpuBlockEnd(r, 1);
  t.is(scheduled, 0);
});

test('with nothing pending kvm_vcpu_block schedules away', (t) => {
  const mem = machine();
  const r = ctx(mem, 1, 1, -1);
  kvmVcpuBlockBegin(r, 1);
  let scheduled = 0;
  t.false(kvmVcpuBlockIter(r, 1, () => scheduled++));
  t.is(scheduled, 1);
  t.is(r.acc.peek(r.L.vcpu(1, VCPU.TASK_STATE)), TASK_INTERRUPTIBLE);
  kvmVcpuBlockEnd(r, 1);
});

test('kick: a vCPU in guest mode goes EXITING_GUEST_MODE and gets a reschedule IPI on its pCPU', (t) => {
  const mem = machine();
  const s = ctx(mem, 0, 0, 0);
  s.acc.writeOnce(s.L.vcpu(1, VCPU.MODE), IN_GUEST_MODE, 't');
  s.acc.writeOnce(s.L.vcpu(1, VCPU.CPU), 1, 't');
  kvmVcpuKick(s, 1);
  t.is(s.acc.peek(s.L.vcpu(1, VCPU.MODE)), EXITING_GUEST_MODE);
  t.is(s.acc.peek(s.L.pcpu(1, PCPU.HOST_IRR_SYS)), bit(RESCHEDULE_VECTOR));
});

test('APICv inactive: IRR + KVM_REQ_EVENT + kick, then KVM injects the vector at entry', (t) => {
  const mem = machine();
  const s = ctx(mem, 0, 0, 0);
  const r = ctx(mem, 1, 1, 1);
  s.acc.writeOnce(s.L.vcpu(1, VCPU.APICV_ACTIVE), 0, 't');
  vmxDeliverInterrupt(s, 1, 0x55);
  t.false(pirHas(s, 1, 0x55));
  t.true(irrHas(s, 1, 0x55));
  t.not(s.acc.peek(s.L.vcpu(1, VCPU.REQUESTS)) & (1 << KVM_REQ_EVENT), 0);
  vmxX86Ops.injectPending(r, 1);
  t.is(r.acc.peek(r.L.vcpu(1, VCPU.INJECTED)), 0x55);
  t.false(irrHas(r, 1, 0x55));
});

test('APICv inactive: the injected vector reaches the guest at the next entry and its EOI is emulated', (t) => {
  const mem = machine();
  const s = ctx(mem, 0, 0, 0);
  const r = ctx(mem, 1, 1, 1);
  s.acc.writeOnce(s.L.vcpu(1, VCPU.APICV_ACTIVE), 0, 't');
  vmxDeliverInterrupt(s, 1, 0x55);
  const guest = new ScriptGuest([]);
  t.is(vcpuEnterGuest(r, 1, guest, 10), 'halt');
  t.deepEqual(guest.received, [0x55]);
  t.is(r.acc.peek(r.L.apicBitmapWord(1, APIC_ISR, 0x55 >> 5)), 0);
  t.is(r.stats.delivered[1 * 256 + 0x55], 1);
});

test('LAPIC timer (TSC-deadline): an expired deadline raises the LVTT vector and makes a halted vCPU runnable', (t) => {
  const mem = machine();
  let now = 100;
  const r = { ...ctx(mem, 1, 1, -1), clockUs: () => now };
  kvmSetLapicTscdeadlineMsr(r, 1, 150);
  kvmVcpuBlockBegin(r, 1);
  let scheduled = 0;
  t.false(kvmVcpuBlockIter(r, 1, () => scheduled++), 'deadline not reached: sleeps');
  now = 151;
  t.true(kvmVcpuBlockIter(r, 1, () => scheduled++), 'deadline passed: runnable');
  kvmVcpuBlockEnd(r, 1);
  t.is(scheduled, 1);
  t.is(r.acc.peek(r.L.vcpu(1, VCPU.TIMER_DEADLINE)), 0, 'one-shot: disarmed');
  t.is(r.stats.sent[1 * 256 + TIMER_VECTOR], 1);
  t.true(pirHas(r, 1, TIMER_VECTOR) || irrHas(r, 1, TIMER_VECTOR));
});
