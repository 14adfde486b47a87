/**
 * TDX protected APIC: posted interrupts only, KVM never syncs the TD's PIR, KVM_GET/SET_LAPIC
 * and APIC base writes fail with EINVAL, and an APICv inhibit raised at runtime bugs the VM.
 */
import test from 'ava';
import { Machine } from '../../src/runtime/machine.js';
import { closeSharedPool } from '../../src/runtime/pool.js';
import { Access, createMachineMemory } from '../../src/mem/access.js';
import { ActorStats } from '../../src/kvm/stats.js';
import { Tracer, sharedClockMs } from '../../src/trace/events.js';
import { vendorModule, type Vendor } from '../../src/kvm/vendors.js';
import { initMachineState } from '../../src/runtime/vm-init.js';
import { kvmSetApicBase, kvmVcpuIoctlGetLapic, kvmVcpuIoctlSetLapic } from '../../src/kvm/lapic-ioctl.js';
import type { KvmCtx } from '../../src/kvm/x86-ops.js';
import type { EmuError } from '../../src/errors.js';
import { INIT_PKRU_VALUE, KVM_HOST_XCR0 } from '../../src/host/host-state.js';
import { NO_PATCHES } from '../../src/kvm/patches.js';
import { bugPatches } from '../../src/scenarios/bugs.js';
import { kvmInjectNmi, kvmInjectPendingNmi, processNmi } from '../../src/kvm/nmi.js';
import { VCPU } from '../../src/mem/layout.js';
import { tdxX86Ops } from '../../src/kvm/vmx/tdx.js';

test.after.always(async () => {
  await closeSharedPool();
});

function ctxFor(vendor: Vendor): KvmCtx {
  const mem = createMachineMemory({ vcpus: 2, pcpus: 1 });
  const acc = new Access(mem, { actor: mem.layout.mainActor, name: 'main' });
  const mod = vendorModule(vendor);
  initMachineState(acc, mod);
  return { acc, L: mem.layout, nrVcpus: 2, ops: mod.ops, stats: new ActorStats(acc, 2), trace: new Tracer(acc, false, sharedClockMs()), runningVcpu: -1, cpu: -1, needResched: () => false, clockUs: () => 0, patches: NO_PATCHES };
}

test('TD: KVM_GET_LAPIC, KVM_SET_LAPIC and an APIC base write fail with EINVAL; VMX allows them', (t) => {
  const td = ctxFor('tdx');
  for (const f of [() => kvmVcpuIoctlGetLapic(td, 0), () => kvmVcpuIoctlSetLapic(td, 0, new Int32Array(1024)), () => kvmSetApicBase(td, 0, 0xfee00c00)]) {
    const e = t.throws(f) as EmuError;
    t.is(e.code, 'EMU_ERR_EINVAL');
    t.regex(e.message, /-EINVAL/);
  }
  const vmx = ctxFor('vmx');
  const regs = kvmVcpuIoctlGetLapic(vmx, 0);
  t.is(regs.length, 1024);
  t.notThrows(() => kvmVcpuIoctlSetLapic(vmx, 0, regs));
});

test.serial('TD storm: every interrupt arrives by posted-interrupt processing; KVM never syncs the PIR', async (t) => {
  const r = await Machine.create({ vendor: 'tdx', vcpus: 4, pcpus: 2 }).run({ sends: 2000, seed: 2 }).result;
  t.true(r.ok, r.failure?.message ?? JSON.stringify(r.violations.slice(0, 2)));
  t.is(r.accounting.totals.lost, 0);
  t.true(r.accounting.totals.delivered > 0);
  t.is(r.accounting.misc.pirSyncs ?? 0, 0, 'sync_pir_to_irr is a no-op for a TD');
  t.true((r.accounting.misc.hwPiProcessed ?? 0) > 0);
});

test.serial('--bug proof: the storm with tdx-apicv-inhibit:buggy-no-self-ipi loses interrupts; the same storm on the unpatched TDX machine loses none', async (t) => {
  // A count budget, not seconds: the patch makes the first vector posted to a halted TD vCPU wait
  // in its PIR with ON = 1 for good (no self-IPI at entry, and with ON set nobody notifies
  // again), so every storm long enough for one HLT wake-up loses; 4000 sends is far beyond that.
  const patches = bugPatches('tdx-apicv-inhibit:buggy-no-self-ipi');
  t.deepEqual(patches, ['tdx-no-pi-self-ipi']);
  const bug = await Machine.create({ vendor: 'tdx', vcpus: 4, pcpus: 2, patches }).run({ sends: 4000, seed: 2, drainMs: 2000 }).result;
  t.is(bug.failure, undefined, bug.failure?.message);
  t.true(bug.accounting.totals.lost > 0, `lost ${bug.accounting.totals.lost}`);
  t.true(bug.violations.some((v) => v.invariant === 'noLostInterrupt'));
  const clean = await Machine.create({ vendor: 'tdx', vcpus: 4, pcpus: 2 }).run({ sends: 4000, seed: 2 }).result;
  t.true(clean.ok, clean.failure?.message ?? JSON.stringify(clean.violations.slice(0, 2)));
  t.is(clean.accounting.totals.lost, 0);
});

test.serial('an APICv inhibit raised at runtime in a TD bugs the VM: every vCPU exits, and it never runs again', async (t) => {
  const m = Machine.create({ vendor: 'tdx', vcpus: 2, pcpus: 2 });
  const h = m.run({ seconds: 10, seed: 3 });
  await new Promise<void>((resolve) => {
    const sub = h.progress$.subscribe(() => {
      sub.unsubscribe();
      resolve();
    });
  });
  await h.setApicvInhibit(3 /* BLOCKIRQ */, true);
  const r = await h.result;
  t.false(r.ok);
  t.is(r.failure?.code, 'EMU_ERR_VM_BUGGED');
  t.regex(r.failure?.message ?? '', /KVM_BUG_ON/);
  const again = t.throws(() => m.run({ seconds: 0.1 })) as EmuError;
  t.is(again.code, 'EMU_ERR_VM_BUGGED');
});

test.serial('TD machine: per-pCPU host state in snapshots — the module left LSTAR/STAR/TSC_AUX reset, the user-return cache says so, DEBUGCTL/XCR0/PKRU restored', async (t) => {
  const h = Machine.create({ vendor: 'tdx', vcpus: 4, pcpus: 2 }).run({ sends: 2000, seed: 6 });
  await new Promise<void>((resolve) => {
    const sub = h.progress$.subscribe(() => {
      sub.unsubscribe();
      resolve();
    });
  });
  const live = h.snapshot();
  t.truthy(live.pcpus[0]?.host, 'a running TD machine shows host state per pCPU');
  const r = await h.result;
  t.true(r.ok, r.failure?.message ?? JSON.stringify(r.violations.slice(0, 2)));
  t.true(r.quiescent);
  for (const p of h.snapshot().pcpus) {
    const host = p.host!;
    t.is(host.regs.LSTAR, '0x0', 'TD exit reset LSTAR; the notifier restores it only on a return to user space');
    t.is(host.regs.SYSCALL_MASK, '0x20200');
    t.true(host.uret.registered, 'the user-return notifier is armed');
    for (const s of host.uret.slots) t.is(s.curr, s.msr, `${s.reg}: cache matches the MSR`);
    t.is(host.regs.DEBUGCTL, '0x0');
    t.is(host.regs.XCR0, '0x' + KVM_HOST_XCR0.toString(16), 'tdx_load_host_xsave_state put XCR0 back');
    t.is(host.regs.PKRU, '0x' + INIT_PKRU_VALUE.toString(16));
    t.regex(host.current, /^idle\d$/);
  }
});

test('vNMIs into a TD: process_nmi keeps at most two of three queued NMIs; tdx_inject_nmi writes PEND_NMI and collapses the second; the module injects one at entry', (t) => {
  const c = ctxFor('tdx');
  const k = { ...c, runningVcpu: 0, cpu: 0 };
  for (let i = 0; i < 3; i++) kvmInjectNmi(c, 0);
  t.is(c.acc.peek(c.L.vcpu(0, VCPU.NMI_QUEUED)), 3);
  processNmi(k, 0);
  t.is(c.acc.peek(c.L.vcpu(0, VCPU.NMI_QUEUED)), 0);
  t.is(c.acc.peek(c.L.vcpu(0, VCPU.NMI_PENDING)), 2, 'two pending: NMIs unmasked (vt_get_nmi_mask) and none in flight');
  t.is(k.stats.misc.nmisDropped, 1, 'the third is dropped, as on bare metal');
  kvmInjectPendingNmi(k, 0);
  t.is(c.acc.peek(c.L.vcpu(0, VCPU.TD_PEND_NMI)), 1, 'PEND_NMI in the TDVPS');
  t.is(c.acc.peek(c.L.vcpu(0, VCPU.NMI_PENDING)), 0, 'the second pending vNMI collapses into the one the module holds');
  t.is(c.acc.peek(c.L.vcpu(0, VCPU.NMI_INJECTED)), 0, 'injection complete from KVM\'s view');
  let nmis = 0;
  tdxX86Ops.vcpuRun(k, 0, { onInterrupt: () => undefined, onNmi: () => void nmis++, step: () => ({ kind: 'hlt' }) }, 4);
  t.is(nmis, 1);
  t.is(c.acc.peek(c.L.vcpu(0, VCPU.TD_PEND_NMI)), 0);
});
