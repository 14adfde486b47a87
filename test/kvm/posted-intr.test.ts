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
import { PATCH_PI_WAKEUP_NO_ON_RECHECK, piInitVcpu, piWakeupHandler, piWakeupListVcpus, vmxDeliverInterrupt, vmxSyncPirToIrr, vmxVcpuPiLoad, vmxVcpuPiPut } from '../../src/kvm/vmx/posted-intr.js';
import { vtdPostInterrupt } from '../../src/hw/vmx/posting.js';
import { piNv } from '../../src/hw/vmx/pi-desc.js';
import { vmxVcpuRun } from '../../src/hw/vmx/cpu.js';
import { handleHostIrqs, vcpuEnterGuest } from '../../src/kvm/x86.js';
import { kvmVcpuBlockBegin, kvmVcpuBlockEnd, kvmVcpuBlockIter } from '../../src/kvm/block.js';
import { kvmVcpuKick, kvmVcpuWakeUp, POSTED_INTR_VECTOR, POSTED_INTR_WAKEUP_VECTOR, RESCHEDULE_VECTOR, TASK_INTERRUPTIBLE } from '../../src/kvm/kick.js';
import { EXITING_GUEST_MODE, IN_GUEST_MODE, OUTSIDE_GUEST_MODE } from '../../src/kvm/modes.js';
import { KVM_REQ_EVENT } from '../../src/kvm/requests.js';
import { ExitReason, type KvmCtx } from '../../src/kvm/x86-ops.js';
import { ScriptGuest, TIMER_VECTOR } from '../../src/guest/programs.js';
import { kvmSetLapicTscdeadlineMsr } from '../../src/kvm/lapic-timer.js';
import { NO_PATCHES, PatchSet } from '../../src/kvm/patches.js';

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

test('vcpu_enter_guest without IPIv: an ICR write goes out through the fastpath and the vCPU leaves guest mode on HLT', (t) => {
  const mem = machine();
  const c = ctx(mem, 0, 0, 0);
  piInitVcpu(c.acc, 0, false);
  const guest = new ScriptGuest([{ msr: 0x830, lo: 0x61, hi: 1 }]);
  t.is(vcpuEnterGuest(c, 0, guest, 100), 'halt');
  t.is(c.acc.peek(c.L.vcpu(0, VCPU.MODE)), OUTSIDE_GUEST_MODE);
  t.true(pirHas(c, 1, 0x61));
  t.is(c.stats.sent[1 * 256 + 0x61], 1);
  t.is(c.stats.misc.vmexits, 2, 'the ICR write exit (fastpath) and the HLT exit');
  t.falsy(c.stats.misc.ipivPosts);
});

test('with IPI virtualization the CPU posts a fixed physical IPI without a VM-exit: PIR, ON, NV to NDST', (t) => {
  const mem = machine();
  const c = ctx(mem, 0, 0, 0);
  const guest = new ScriptGuest([{ msr: 0x830, lo: 0x61, hi: 1 }]);
  t.is(vmxVcpuRun(c, 0, guest, 100).reason, ExitReason.HLT, 'the ICR write did not exit');
  t.true(pirHas(c, 1, 0x61));
  t.true(on(c, 1));
  t.is(c.acc.peek(c.L.pcpu(1, PCPU.HOST_IRR_SYS)), bit(POSTED_INTR_VECTOR), 'NV (POSTED_INTR_VECTOR) sent to NDST = pCPU 1');
  t.is(c.stats.sent[1 * 256 + 0x61], 1);
  t.is(c.stats.misc.ipivPosts, 1);
  // Not virtualized: a logical destination, a shorthand, an NMI -> the APIC-write exit.
  for (const lo of [0x62 | (1 << 11), 0x62 | (1 << 18), 0x400]) {
    t.is(vmxVcpuRun(c, 0, new ScriptGuest([{ msr: 0x830, lo, hi: 1 }]), 100).reason, ExitReason.MSR_WRITE);
  }
});

/** vCPU 1 blocking on pCPU 1 (prepare_to_rcuwait done, TASK_INTERRUPTIBLE), loaded there. */
function blocking(mem: MachineMemory): KvmCtx {
  const r = ctx(mem, 1, 1, 1);
  vmxVcpuPiLoad(r, 1, 1);
  r.acc.writeOnce(r.L.vcpu(1, VCPU.CPU), 1, 't');
  kvmVcpuBlockBegin(r, 1);
  r.acc.writeOnce(r.L.vcpu(1, VCPU.TASK_STATE), TASK_INTERRUPTIBLE, 't');
  return r;
}

test('vmx_vcpu_pi_put of a blocking vCPU: on its pCPU\'s wakeup list, NV = wakeup vector; a device post then rings the wakeup vector and pi_wakeup_handler wakes it', (t) => {
  const mem = machine();
  const r = blocking(mem);
  vmxVcpuPiPut(r, 1);
  t.deepEqual(piWakeupListVcpus(r.acc, 1), [1]);
  t.is(piNv(r.acc.peek(r.L.pid(1, PID.CONTROL))), POSTED_INTR_WAKEUP_VECTOR);
  t.is(r.acc.peek(r.L.pcpu(1, PCPU.HOST_IRR_SYS)), 0, 'ON was clear: no self-IPI');
  const dev = ctx(mem, 0, -1, -1);
  vtdPostInterrupt(dev, 1, 0x44);
  t.is(r.acc.peek(r.L.pcpu(1, PCPU.HOST_IRR_SYS)), bit(POSTED_INTR_WAKEUP_VECTOR), 'the hardware notifies NV = wakeup vector at NDST');
  // pCPU 1's idle task takes it: pi_wakeup_handler.
  const idle = ctx(mem, 2, -1, 1);
  handleHostIrqs(idle);
  t.is(r.acc.peek(r.L.vcpu(1, VCPU.TASK_STATE)), 0, 'woken');
  t.is(idle.stats.misc.piWakeupHandlers, 1);
  // Sched-in: off the list, NV back to POSTED_INTR_VECTOR, ON still set for the entry sync.
  vmxVcpuPiLoad(r, 1, 1);
  t.deepEqual(piWakeupListVcpus(r.acc, 1), []);
  t.is(piNv(r.acc.peek(r.L.pid(1, PID.CONTROL))), POSTED_INTR_VECTOR);
  t.true(on(r, 1));
});

test('pi_enable_wakeup_handler: ON set before the NV switch -> self-IPI of the wakeup vector; with vmx-pi-wakeup-no-on-recheck none (PI-3)', (t) => {
  for (const patched of [false, true]) {
    const mem = machine();
    const r0 = blocking(mem);
    const r = patched ? { ...r0, patches: new PatchSet([PATCH_PI_WAKEUP_NO_ON_RECHECK.id]) } : r0;
    // The device posted after the last runnable check, before the NV switch: notified on POSTED_INTR_VECTOR.
    vtdPostInterrupt(ctx(mem, 0, -1, -1), 1, 0x44);
    t.is(r.acc.peek(r.L.pcpu(1, PCPU.HOST_IRR_SYS)), bit(POSTED_INTR_VECTOR));
    vmxVcpuPiPut(r, 1);
    const idle = ctx(mem, 2, -1, 1);
    handleHostIrqs(idle);
    t.is(idle.stats.misc.rootModeNotifications, 1, 'POSTED_INTR_VECTOR in root mode does nothing');
    t.is(r.acc.peek(r.L.vcpu(1, VCPU.TASK_STATE)), patched ? TASK_INTERRUPTIBLE : 0, patched ? 'lost: asleep with ON set' : 'the self-IPI woke it');
  }
});

test('vmx_vcpu_pi_put of a preempted vCPU sets SN: hardware posts set PIR only; vmx_vcpu_pi_load clears SN and sets ON for the entry sync', (t) => {
  const mem = machine();
  const r = ctx(mem, 1, 1, 1);
  vmxVcpuPiLoad(r, 1, 1);
  r.acc.writeOnce(r.L.vcpu(1, VCPU.CPU), 1, 't');
  r.acc.writeOnce(r.L.vcpu(1, VCPU.PREEMPTED), 1, 't');
  vmxVcpuPiPut(r, 1);
  vtdPostInterrupt(ctx(mem, 0, -1, -1), 1, 0x44);
  t.true(pirHas(r, 1, 0x44));
  t.false(on(r, 1), 'SN: no ON');
  t.is(r.acc.peek(r.L.pcpu(1, PCPU.HOST_IRR_SYS)), 0, 'SN: no notification');
  vmxVcpuPiLoad(r, 1, 1);
  t.is(r.acc.peek(r.L.pid(1, PID.CONTROL)) & 2, 0, 'SN clear');
  t.true(on(r, 1), 'PIR not empty: ON set');
});

test('vmx_vcpu_pi_load after migration: leaves the old pCPU\'s list under its lock, NDST follows the vCPU', (t) => {
  const mem = machine(2, 2);
  const r = blocking(mem);
  vmxVcpuPiPut(r, 1);
  t.deepEqual(piWakeupListVcpus(r.acc, 1), [1]);
  kvmVcpuWakeUp(ctx(mem, 0, -1, -1), 1);
  const moved = { ...r, cpu: 0 };
  vmxVcpuPiLoad(moved, 1, 0);
  t.deepEqual(piWakeupListVcpus(r.acc, 1), []);
  t.deepEqual(piWakeupListVcpus(r.acc, 0), []);
  t.is(r.acc.peek(r.L.pid(1, PID.NDST)), 0);
  t.is(piNv(r.acc.peek(r.L.pid(1, PID.CONTROL))), POSTED_INTR_VECTOR);
});

test('wakeup lists: add/del keep both links; the handler walks every entry and wakes only those with ON', (t) => {
  const mem = machine(3, 1);
  const cs = [0, 1, 2].map((v) => {
    const c = ctx(mem, v, v, 0);
    vmxVcpuPiLoad(c, v, 0);
    c.acc.writeOnce(c.L.vcpu(v, VCPU.CPU), 0, 't');
    kvmVcpuBlockBegin(c, v);
    c.acc.writeOnce(c.L.vcpu(v, VCPU.TASK_STATE), TASK_INTERRUPTIBLE, 't');
    vmxVcpuPiPut(c, v);
    return c;
  });
  t.deepEqual(piWakeupListVcpus(cs[0]!.acc, 0), [0, 1, 2]);
  vmxVcpuPiLoad(cs[1]!, 1, 0);
  t.deepEqual(piWakeupListVcpus(cs[0]!.acc, 0), [0, 2]);
  cs[0]!.acc.setBit(cs[0]!.L.pid(2, PID.CONTROL), 0, 't');
  const idle = ctx(mem, 3, -1, 0);
  piWakeupHandler(idle);
  t.is(idle.acc.peek(idle.L.vcpu(0, VCPU.TASK_STATE)), TASK_INTERRUPTIBLE, 'ON clear: left asleep');
  t.is(idle.acc.peek(idle.L.vcpu(2, VCPU.TASK_STATE)), 0, 'ON set: woken');
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
