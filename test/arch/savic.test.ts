/**
 * AMD Secure AVIC as a machine vendor: guest IPIs through the #VC handler and the MSR_PROT
 * VMGEXIT (has_pending_ipi, fence, doorbell or kick), KVM-originated interrupts through
 * RequestedIRR at VMRUN, the idle-HLT intercept, vNMI and NMI_REQUEST, a protected APIC.
 */
import test from 'ava';
import { Machine } from '../../src/runtime/machine.js';
import { closeSharedPool } from '../../src/runtime/pool.js';
import { Access, createMachineMemory } from '../../src/mem/access.js';
import { PCPU, SAVIC_ALLOWED_IRR, SAVIC_NMI_REQUEST, VCPU, VMCB } from '../../src/mem/layout.js';
import { APIC_IRR } from '../../src/mem/apicdef.js';
import { ActorStats } from '../../src/kvm/stats.js';
import { Tracer, sharedClockMs } from '../../src/trace/events.js';
import { vendorModule } from '../../src/kvm/vendors.js';
import { initMachineState } from '../../src/runtime/vm-init.js';
import { IN_GUEST_MODE, OUTSIDE_GUEST_MODE } from '../../src/kvm/modes.js';
import { ExitReason, type GuestAction, type GuestProgram, type KvmCtx } from '../../src/kvm/x86-ops.js';
import { kvmSetApicBase, kvmVcpuIoctlGetLapic, kvmVcpuIoctlSetLapic } from '../../src/kvm/lapic-ioctl.js';
import { savicDeliverInterrupt, savicHandleIcrWrite, savicInjectIrq, savicInjectNmi, savicProtectedApicHasInterrupt } from '../../src/kvm/svm/sev.js';
import { savicGuestVcIcrWrite } from '../../src/hw/svm/savic.js';
import { avicDoorbellMsrWrite } from '../../src/hw/svm/avic.js';
import { savicX86Ops } from '../../src/kvm/svm/savic.js';
import { snapshotMachine } from '../../src/invariants/snapshot.js';
import { isQuiescent, noSleepingWithPending } from '../../src/invariants/checks.js';
import type { EmuError } from '../../src/errors.js';
import { NO_PATCHES } from '../../src/kvm/patches.js';

test.after.always(async () => {
  await closeSharedPool();
});

function savicCtx(runningVcpu = 0, cpu = 0): KvmCtx {
  const mem = createMachineMemory({ vcpus: 3, pcpus: 2, savic: true });
  const acc = new Access(mem, { actor: mem.layout.mainActor, name: 'main' });
  const mod = vendorModule('savic');
  initMachineState(acc, mod);
  return { acc, L: mem.layout, nrVcpus: 3, ops: mod.ops, stats: new ActorStats(acc, 3), trace: new Tracer(acc, false, sharedClockMs()), runningVcpu, cpu, needResched: () => false, clockUs: () => 0, patches: NO_PATCHES };
}

/** A guest that records what it takes and otherwise executes `then` (HLT by default). */
class Recorder implements GuestProgram {
  readonly vectors: number[] = [];
  nmis = 0;
  constructor(private readonly then: GuestAction = { kind: 'hlt' }) {}
  onInterrupt(v: number): void {
    this.vectors.push(v);
  }
  onNmi(): void {
    this.nmis++;
  }
  step(): GuestAction {
    return this.then;
  }
}

const bit = (c: KvmCtx, v: number, base: number, vec: number) => (c.acc.peek(c.L.savicBacking(v, base + 0x10 * (vec >> 5))) >>> (vec & 31)) & 1;

test('a guest IPI: the #VC handler writes the target backing page, then KVM sets has_pending_ipi and kicks or rings the doorbell', (t) => {
  const c = savicCtx(0, 0);
  // vcpu1 is running on pCPU 1; vcpu2 is outside guest mode.
  c.acc.writeOnce(c.L.vcpu(1, VCPU.MODE), IN_GUEST_MODE, 't');
  c.acc.writeOnce(c.L.vcpu(1, VCPU.CPU), 1, 't');
  t.true(savicGuestVcIcrWrite(c, 0, 0x45, 1));
  t.is(bit(c, 1, APIC_IRR, 0x45), 1, 'guest code set IRR in the target backing page');
  t.is(c.acc.peek(c.L.apicBitmapWord(1, APIC_IRR, 0x45 >> 5)), 0, "KVM's own IRR is untouched");
  savicHandleIcrWrite(c, 0, 0x45, 1);
  t.is(c.acc.peek(c.L.vmcb(1, VMCB.HAS_PENDING_IPI)), 1);
  t.is(c.acc.peek(c.L.pcpu(1, PCPU.AVIC_DOORBELL)), 1, 'IN_GUEST_MODE target: doorbell to its pCPU');
  t.true(savicProtectedApicHasInterrupt(c, 1));
  // An IPI to a vCPU outside guest mode: no doorbell, the flag alone makes it runnable.
  savicGuestVcIcrWrite(c, 0, 0x46, 2);
  savicHandleIcrWrite(c, 0, 0x46, 2);
  t.is(c.acc.peek(c.L.vmcb(2, VMCB.HAS_PENDING_IPI)), 1);
  t.is(c.acc.peek(c.L.pcpu(0, PCPU.AVIC_DOORBELL)), 0);
  t.is(c.stats.sent[2 * 256 + 0x46], 1);
});

test('VMRUN: pre_sev_run clears has_pending_ipi; the CPU delivers from the backing page', (t) => {
  const c = savicCtx(1, 1);
  savicGuestVcIcrWrite(c, 0, 0x50, 1);
  savicHandleIcrWrite(c, 0, 0x50, 1);
  const g = new Recorder();
  const exit = savicX86Ops.vcpuRun(c, 1, g, 16);
  t.deepEqual(g.vectors, [0x50]);
  t.is(exit.reason, ExitReason.HLT, 'nothing left pending: idle HLT exits');
  t.is(c.acc.peek(c.L.vmcb(1, VMCB.HAS_PENDING_IPI)), 0);
  t.false(savicProtectedApicHasInterrupt(c, 1));
});

test('idle-HLT: HLT does not exit while a vector is pending above PPR; with TPR masking it, it exits', (t) => {
  const c = savicCtx(1, 1);
  let steps = 0;
  const g: GuestProgram & { got: number[] } = {
    got: [],
    onInterrupt(v) {
      this.got.push(v);
    },
    step() {
      steps++;
      // The IPI lands exactly while the guest executes HLT: the sender's #VC handler writes the
      // backing page, and KVM (the target is in guest mode) rings the doorbell.
      if (steps === 1) {
        savicGuestVcIcrWrite(c, 0, 0x61, 1);
        avicDoorbellMsrWrite(c, 1);
      }
      return { kind: 'hlt' };
    },
  };
  const exit = savicX86Ops.vcpuRun(c, 1, g, 16);
  t.deepEqual(g.got, [0x61], 'no HLT exit: the vector was taken instead');
  t.is(exit.reason, ExitReason.HLT);
  // TPR 0x70 masks vector 0x61: HLT exits with it pending in the backing page.
  c.acc.writeOnce(c.L.savicBacking(1, 0x80), 0x70, 't');
  savicGuestVcIcrWrite(c, 0, 0x62, 1);
  avicDoorbellMsrWrite(c, 1);
  const g2 = new Recorder();
  t.is(savicX86Ops.vcpuRun(c, 1, g2, 16).reason, ExitReason.HLT);
  t.deepEqual(g2.vectors, []);
});

test('KVM-originated interrupts: KVM IRR -> RequestedIRR (inject_irq) -> backing page at VMRUN, filtered by ALLOWED_IRR', (t) => {
  const c = savicCtx(-1, -1);
  savicDeliverInterrupt(c, 1, 0x30);
  savicDeliverInterrupt(c, 1, 0x31);
  t.is(c.acc.peek(c.L.vcpu(1, VCPU.REQUESTS)) !== 0, true, 'KVM_REQ_EVENT');
  // The guest refuses vector 0x31.
  c.acc.writeOnce(c.L.savicBacking(1, SAVIC_ALLOWED_IRR + 0x10), ~(1 << (0x31 - 32)), 't');
  const own: KvmCtx = { ...c, runningVcpu: 1, cpu: 1 };
  savicInjectIrq(own, 1);
  t.is(c.acc.peek(c.L.vmcb(1, VMCB.UPDATE_IRR)), 1);
  t.is(c.acc.peek(c.L.apicBitmapWord(1, APIC_IRR, 1)), 0, 'moved out of KVM IRR');
  const g = new Recorder();
  savicX86Ops.vcpuRun(own, 1, g, 8);
  t.deepEqual(g.vectors, [0x30]);
  t.is(c.acc.peek(c.L.vmcb(1, VMCB.UPDATE_IRR)), 0, 'VMRUN cleared UpdateIRR');
  t.is(c.acc.peek(c.L.vmcb(1, VMCB.REQUESTED_IRR, 1)), 0, 'and RequestedIRR');
  t.is(c.stats.misc.savicFiltered, 1, 'the refused vector is dropped, and counted');
});

test('NMIs: vNMI from KVM (V_NMI_PENDING) and NMI_REQUEST from a guest IPI are both taken, one at a time', (t) => {
  const c = savicCtx(1, 1);
  savicInjectNmi(c, 1);
  savicInjectNmi(c, 1);
  t.is(c.stats.misc.nmisCoalesced, 1, 'a second vNMI collapses into V_NMI_PENDING');
  // NMI IPI from vcpu0: delivery mode NMI (4 << 8).
  savicGuestVcIcrWrite(c, 0, 4 << 8, 1);
  t.is(c.acc.peek(c.L.savicBacking(1, SAVIC_NMI_REQUEST)) & 1, 1);
  const g = new Recorder();
  savicX86Ops.vcpuRun(c, 1, g, 8);
  t.is(g.nmis, 2);
  const m = c.stats.misc;
  t.is(m.nmisSent, 3);
  t.is(m.nmisDelivered, 2);
  t.is(c.acc.peek(c.L.vmcb(1, VMCB.V_NMI_PENDING)), 0);
  t.is(c.acc.peek(c.L.savicBacking(1, SAVIC_NMI_REQUEST)) & 1, 0);
});

test('protected APIC: KVM_GET_LAPIC, KVM_SET_LAPIC and an APIC base write fail with EINVAL', (t) => {
  const c = savicCtx();
  for (const f of [() => kvmVcpuIoctlGetLapic(c, 0), () => kvmVcpuIoctlSetLapic(c, 0, new Int32Array(1024)), () => kvmSetApicBase(c, 0, 0xfee00c00)]) {
    const e = t.throws(f) as EmuError;
    t.is(e.code, 'EMU_ERR_EINVAL');
  }
});

test('the snapshot shows the backing page, RequestedIRR and has_pending_ipi; a sleeper with a pending vector is flagged', (t) => {
  const c = savicCtx(0, 0);
  savicGuestVcIcrWrite(c, 0, 0x70, 2);
  c.acc.writeOnce(c.L.vcpu(2, VCPU.WAIT_TASK), 1, 't');
  c.acc.writeOnce(c.L.vcpu(2, VCPU.TASK_STATE), 1, 't');
  c.acc.writeOnce(c.L.vcpu(2, VCPU.MODE), OUTSIDE_GUEST_MODE, 't');
  const snap = snapshotMachine(c.acc);
  t.is(snap.vcpus[2]?.savic?.irr[3], 1 << (0x70 - 96));
  t.false(isQuiescent(snap));
  const v = noSleepingWithPending(snap);
  t.is(v[0]?.vcpu, 2);
  t.regex(v[0]?.message ?? '', /0x70/);
});

test.serial('Secure AVIC storm on 4 vCPUs / 2 pCPUs: nothing lost, IPIs through VMGEXIT + has_pending_ipi, quiescent at the end', async (t) => {
  const h = Machine.create({ vendor: 'savic', vcpus: 4, pcpus: 2 }).run({ seconds: 120, seed: 5, trace: true });
  const kinds = new Set<string>();
  h.events$.subscribe((e) => kinds.add(e.type));
  // Let the storm send a counted number of IPIs (not "run for a while"), then inject and stop.
  await new Promise<void>((resolve) => {
    const sub = h.progress$.subscribe({
      next: (p) => {
        if (p.sent < 2000) return;
        sub.unsubscribe();
        resolve();
      },
      complete: resolve,
    });
  });
  // A device interrupt at vCPU 2 takes KVM's path: KVM IRR -> RequestedIRR -> VMRUN.
  await h.inject(2, 0x33);
  h.stop();
  const r = await h.result;
  t.true(r.ok, r.failure?.message ?? JSON.stringify(r.violations.slice(0, 2)));
  t.is(r.accounting.totals.lost, 0);
  t.true(r.accounting.totals.delivered > 0);
  t.true(r.quiescent);
  t.is(r.accounting.misc.hwPiProcessed ?? 0, 0, 'no posted interrupts on AMD');
  for (const k of ['savic:pending-ipi', 'savic:requested-irr', 'savic:vmrun-merge']) t.true(kinds.has(k), k);
  t.true((r.accounting.perVector.find((x) => x.vector === 0x33)?.delivered ?? 0) >= 1, 'the device vector was delivered');
});

test.serial('an APICv inhibit on a Secure AVIC VM marks it bugged (APICv cannot be turned off under a protected APIC)', async (t) => {
  const m = Machine.create({ vendor: 'savic', vcpus: 2, pcpus: 2 });
  const h = m.run({ seconds: 10, seed: 3 });
  await new Promise<void>((resolve) => {
    const sub = h.progress$.subscribe(() => {
      sub.unsubscribe();
      resolve();
    });
  });
  await h.setApicvInhibit(3 /* BLOCKIRQ */, true);
  const r = await h.result;
  t.is(r.failure?.code, 'EMU_ERR_VM_BUGGED');
});
