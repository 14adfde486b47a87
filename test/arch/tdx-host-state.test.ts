/**
 * TD entry/exit and the pCPU's host state: what the TDX module leaves behind (domain 9.1 table),
 * and KVM's restores in the kernel's order — DEBUGCTL and XSAVE state before tdx_vcpu_run
 * returns, KERNEL_GS_BASE and the user-return cache at vcpu_put, the host SYSCALL MSRs at the
 * return to user mode. Single-threaded, on scratch words.
 */
import test from 'ava';
import { Access, createMachineMemory } from '../../src/mem/access.js';
import {
  DEBUGCTLMSR_BTF,
  DEBUGCTLMSR_FREEZE_LBRS_ON_PMI,
  DEBUGCTLMSR_FREEZE_PERFMON_ON_PMI,
  DEBUGCTLMSR_LBR,
  DR6_RESERVED,
  DR7_FIXED_1,
  HOST_REG_BLOCK_WORDS,
  initHostRegs,
  readHostReg,
  snapshotHostRegs,
  writeHostReg,
  type HostRegName,
} from '../../src/host/msr.js';
import { URET_BLOCK_WORDS, fireUserReturnNotifiers, kvmUserReturnMsrCpuOnline, snapshotUretCache } from '../../src/host/uret.js';
import { HOST_CPU_BLOCK_WORDS, INIT_PKRU_VALUE, KVM_HOST_XCR0, KVM_HOST_XSS, TASK_BLOCK_WORDS, initHostCpu, initTask, type HostPoint } from '../../src/host/host-state.js';
import {
  TDX_DEBUGCTL_PRESERVED,
  TDX_LP_BLOCK_WORDS,
  TD_HS_BLOCK_WORDS,
  TD_LINUX_GUEST,
  kvmSnapshotHostDebugctl,
  PATCH_TDX_GUEST_ENTERED_IN_EXIT_HANDLER,
  PATCH_TDX_NO_DEBUGCTL_RESTORE,
  peekTdHostState,
  tdhVpEnter,
  tdxPrepareSwitchToGuest,
  tdxPrepareSwitchToHost,
  tdxVcpuHostStateInit,
  tdxVcpuLoad,
  tdxVcpuPut,
  tdxVcpuRun,
  type TdExitReason,
  type TdHostConfig,
  type TdxHostStatePlaces,
  type TdxRunHooks,
} from '../../src/kvm/vmx/tdx-host-state.js';
import { PatchSet } from '../../src/kvm/patches.js';
import { uretCacheCoherent } from '../../src/invariants/host-state.js';

const HOST = {
  DR6: DR6_RESERVED,
  DR7: DR7_FIXED_1,
  XCR0: KVM_HOST_XCR0,
  XSS: KVM_HOST_XSS,
  PKRU: INIT_PKRU_VALUE,
  KERNEL_GS_BASE: 0x7f3a2c000000n,
  STAR: 0x0023001000000000n,
  LSTAR: 0xffffffff81a00080n,
  SYSCALL_MASK: 0x257fd5n,
  TSC_AUX: 0x1000n,
  TSX_CTRL: 0n,
  UMWAIT_CONTROL: 0x186a0n,
} satisfies Partial<Record<HostRegName, bigint>>;

function machine(): { acc: Access; P: TdxHostStatePlaces } {
  const mem = createMachineMemory({ vcpus: 1, pcpus: 1, scratchWords: 512 });
  const L = mem.layout;
  const acc = new Access(mem, { actor: L.mainActor, name: 'main' });
  let next = 0;
  const area = (n: number) => {
    const at = next;
    next += n;
    return at;
  };
  const regs = area(HOST_REG_BLOCK_WORDS);
  const uret = area(URET_BLOCK_WORDS);
  const cpu = area(HOST_CPU_BLOCK_WORDS);
  const tasks = area(2 * TASK_BLOCK_WORDS);
  const td = area(TD_HS_BLOCK_WORDS);
  const lp = area(TDX_LP_BLOCK_WORDS);
  const P: TdxHostStatePlaces = {
    regs: () => L.scratch(regs),
    uret: () => L.scratch(uret),
    hostCpu: () => L.scratch(cpu),
    task: (t) => L.scratch(tasks + t * TASK_BLOCK_WORDS),
    td: () => L.scratch(td),
    tdxLp: () => L.scratch(lp),
  };
  initHostRegs(acc, P, 0, HOST);
  initTask(acc, P, 0, HOST.KERNEL_GS_BASE);
  initHostCpu(acc, P, 0, 0n, 0);
  kvmUserReturnMsrCpuOnline(acc, P, 0);
  tdxVcpuHostStateInit(acc, P, 0, 0);
  tdxVcpuLoad(acc, P, 0, 0);
  return { acc, P };
}

/** Hooks that record the boundaries and what the registers held at each. */
function recorder(acc: Access, P: TdxHostStatePlaces, exit: TdExitReason = 'tdvmcall') {
  const points: HostPoint[] = [];
  const at: Partial<Record<HostPoint, ReturnType<typeof snapshotHostRegs>>> = {};
  let inGuest: ReturnType<typeof snapshotHostRegs> | undefined;
  const hooks: TdxRunHooks = {
    at: (p) => {
      points.push(p);
      at[p] = snapshotHostRegs(acc, P, 0);
    },
    guest: () => {
      inGuest = snapshotHostRegs(acc, P, 0);
      return exit;
    },
    handleNmi: () => {
      points.push('vmx-handle-nmi');
    },
  };
  return { hooks, points, at, guest: () => inGuest };
}

test('what a TD exit leaves behind: INIT debug state, DEBUGCTL bits 1/12/14 only, TD XSAVE state, PKRU 0, zeroed SYSCALL MSRs, FMASK 20200H', (t) => {
  const { acc, P } = machine();
  const host = DEBUGCTLMSR_LBR | DEBUGCTLMSR_FREEZE_LBRS_ON_PMI | DEBUGCTLMSR_BTF | DEBUGCTLMSR_FREEZE_PERFMON_ON_PMI;
  writeHostReg(acc, P, 0, 'DEBUGCTL', host);
  writeHostReg(acc, P, 0, 'DR0', 0xffffffff81234560n);
  writeHostReg(acc, P, 0, 'DR7', DR7_FIXED_1 | 2n);
  let during: ReturnType<typeof snapshotHostRegs> | undefined;
  tdhVpEnter(acc, P, 0, TD_LINUX_GUEST, () => {
    during = snapshotHostRegs(acc, P, 0);
    return 'tdvmcall';
  });
  t.is(during?.LSTAR, TD_LINUX_GUEST.guest.LSTAR, 'the guest runs with its own LSTAR');
  t.is(during?.TSX_CTRL, 3n, 'TSX disabled while a TD without TSX runs');
  const r = snapshotHostRegs(acc, P, 0);
  t.is(r.DR0, 0n);
  t.is(r.DR6, DR6_RESERVED);
  t.is(r.DR7, DR7_FIXED_1);
  t.is(r.DEBUGCTL, host & TDX_DEBUGCTL_PRESERVED);
  t.is(r.DEBUGCTL, DEBUGCTLMSR_BTF | DEBUGCTLMSR_FREEZE_PERFMON_ON_PMI);
  t.is(r.XCR0, TD_LINUX_GUEST.xfam);
  t.is(r.XSS, 0n);
  t.is(r.PKRU, 0n);
  t.is(r.KERNEL_GS_BASE, 0n);
  t.is(r.STAR, 0n);
  t.is(r.LSTAR, 0n);
  t.is(r.TSC_AUX, 0n);
  t.is(r.SYSCALL_MASK, 0x20200n);
  t.is(r.TSX_CTRL, HOST.TSX_CTRL, 'the module restores the host TSX_CTRL for a TD without TSX');
  t.is(r.UMWAIT_CONTROL, HOST.UMWAIT_CONTROL, 'untouched for a TD without WAITPKG');
});

test('a TD with TSX or WAITPKG (what KVM now rejects) leaves TSX_CTRL 0 and the guest UMWAIT_CONTROL behind', (t) => {
  const { acc, P } = machine();
  writeHostReg(acc, P, 0, 'TSX_CTRL', 2n);
  const td: TdHostConfig = { ...TD_LINUX_GUEST, tsx: true, waitpkg: true };
  tdhVpEnter(acc, P, 0, td, () => 'tdvmcall');
  t.is(readHostReg(acc, P, 0, 'TSX_CTRL'), 0n);
  t.is(readHostReg(acc, P, 0, 'UMWAIT_CONTROL'), TD_LINUX_GUEST.guest.UMWAIT_CONTROL ?? -1n);
});

test('tdx_vcpu_run order: enter_exit → DEBUGCTL restore → xsave restore → guest_entered, each visible at the next boundary', (t) => {
  const { acc, P } = machine();
  const lbr = DEBUGCTLMSR_LBR | DEBUGCTLMSR_FREEZE_LBRS_ON_PMI;
  writeHostReg(acc, P, 0, 'DEBUGCTL', lbr);
  tdxPrepareSwitchToGuest(acc, P, 0);
  kvmSnapshotHostDebugctl(acc, P, 0, 0);
  const rec = recorder(acc, P, 'nmi');
  tdxVcpuRun(acc, P, 0, TD_LINUX_GUEST, rec.hooks);
  t.deepEqual(rec.points, ['seamret', 'vmx-handle-nmi', 'enter-exit-done', 'debugctl-restored', 'xsave-restored', 'guest-entered']);
  t.is(rec.at['enter-exit-done']?.DEBUGCTL, 0n, 'clobbered right after the exit');
  t.is(rec.at['debugctl-restored']?.DEBUGCTL, lbr);
  t.is(rec.at['debugctl-restored']?.XCR0, TD_LINUX_GUEST.xfam, 'XCR0 still the TD value');
  t.is(rec.at['xsave-restored']?.XCR0, KVM_HOST_XCR0);
  t.is(rec.at['xsave-restored']?.XSS, KVM_HOST_XSS);
  t.is(rec.at['xsave-restored']?.PKRU, INIT_PKRU_VALUE);
  t.is(rec.at['xsave-restored']?.LSTAR, 0n, 'user-return MSRs stay clobbered (restored lazily)');
  t.true(peekTdHostState(acc, P, 0).guestEntered);
});

test('with the patches tdx-no-debugctl-restore and tdx-guest-entered-in-exit-handler, perf LBR stays off after the run; without guest_entered the cache is not told at vcpu_put', (t) => {
  const { acc, P } = machine();
  writeHostReg(acc, P, 0, 'DEBUGCTL', DEBUGCTLMSR_LBR);
  tdxPrepareSwitchToGuest(acc, P, 0);
  kvmSnapshotHostDebugctl(acc, P, 0, 0);
  tdxVcpuRun(acc, P, 0, TD_LINUX_GUEST, recorder(acc, P).hooks, new PatchSet([PATCH_TDX_NO_DEBUGCTL_RESTORE.id, PATCH_TDX_GUEST_ENTERED_IN_EXIT_HANDLER.id]));
  t.is(readHostReg(acc, P, 0, 'DEBUGCTL'), 0n);
  tdxVcpuPut(acc, P, 0);
  const before = snapshotUretCache(acc, P, 0);
  t.false(before.registered);
  t.true(before.slots.some((s) => s.curr !== s.hw), 'stale: curr says host, the MSRs hold the TD-exit values');
  t.is(uretCacheCoherent({ pcpu: 0, observations: [{ kind: 'user-return', pcpu: 0, point: 'user-return', task: 'vmm', regs: snapshotHostRegs(acc, P, 0), expect: { debugctl: 0n, cpuDr7: 0n, cpuDebugreg: [0n, 0n, 0n, 0n], xcr0: KVM_HOST_XCR0, xss: KVM_HOST_XSS, pkru: INIT_PKRU_VALUE, tsxCtrl: 0n, umwaitControl: 0x186a0n, userGsbase: HOST.KERNEL_GS_BASE, uretHost: before.slots.map((s) => s.host) }, uret: before }] }).length, 1);
  fireUserReturnNotifiers(acc, P, 0);
  t.is(readHostReg(acc, P, 0, 'LSTAR'), 0n, 'user mode would SYSCALL through LSTAR = 0');
});

test('DEBUGCTL with only preserved bits needs no restore; PKRU 0 on the host is not rewritten', (t) => {
  const { acc, P } = machine();
  writeHostReg(acc, P, 0, 'DEBUGCTL', DEBUGCTLMSR_FREEZE_PERFMON_ON_PMI);
  writeHostReg(acc, P, 0, 'PKRU', 0n);
  tdxVcpuLoad(acc, P, 0, 0);
  tdxPrepareSwitchToGuest(acc, P, 0);
  kvmSnapshotHostDebugctl(acc, P, 0, 0);
  tdxVcpuRun(acc, P, 0, TD_LINUX_GUEST, recorder(acc, P).hooks);
  t.is(readHostReg(acc, P, 0, 'DEBUGCTL'), DEBUGCTLMSR_FREEZE_PERFMON_ON_PMI);
  t.is(readHostReg(acc, P, 0, 'PKRU'), 0n);
});

test('prepare_switch_to_guest saves KERNEL_GS_BASE once per load; prepare_switch_to_host restores it, tells the cache, clears both flags', (t) => {
  const { acc, P } = machine();
  tdxPrepareSwitchToGuest(acc, P, 0);
  initTask(acc, P, 0, 0x1234n);
  tdxPrepareSwitchToGuest(acc, P, 0);
  t.is(peekTdHostState(acc, P, 0).hostKernelGsBase, HOST.KERNEL_GS_BASE, 'second call while loaded is a no-op');
  kvmSnapshotHostDebugctl(acc, P, 0, 0);
  tdxVcpuRun(acc, P, 0, TD_LINUX_GUEST, recorder(acc, P).hooks);
  t.is(readHostReg(acc, P, 0, 'KERNEL_GS_BASE'), 0n);
  tdxPrepareSwitchToHost(acc, P, 0);
  t.is(readHostReg(acc, P, 0, 'KERNEL_GS_BASE'), HOST.KERNEL_GS_BASE);
  const s = peekTdHostState(acc, P, 0);
  t.false(s.guestStateLoaded);
  t.false(s.guestEntered);
  const c = snapshotUretCache(acc, P, 0);
  t.true(c.registered);
  t.true(c.slots.every((x) => x.curr === x.hw), 'the cache describes what the module left');
  t.is(c.slots.find((x) => x.reg === 'SYSCALL_MASK')?.curr, 0x20200n);
  // Nothing loaded: a second put writes nothing.
  writeHostReg(acc, P, 0, 'KERNEL_GS_BASE', 0x99n);
  tdxPrepareSwitchToHost(acc, P, 0);
  t.is(readHostReg(acc, P, 0, 'KERNEL_GS_BASE'), 0x99n);
});

test('a whole KVM_RUN: entries, vcpu_put, return to user mode — every host value back', (t) => {
  const { acc, P } = machine();
  const before = snapshotHostRegs(acc, P, 0);
  for (let i = 0; i < 3; i++) {
    tdxPrepareSwitchToGuest(acc, P, 0);
    kvmSnapshotHostDebugctl(acc, P, 0, 0);
    tdxVcpuRun(acc, P, 0, TD_LINUX_GUEST, recorder(acc, P).hooks);
  }
  tdxVcpuPut(acc, P, 0);
  t.is(fireUserReturnNotifiers(acc, P, 0), 4);
  t.deepEqual(snapshotHostRegs(acc, P, 0), before);
  const c = snapshotUretCache(acc, P, 0);
  t.false(c.registered);
  t.true(c.slots.every((x) => x.curr === x.host && x.hw === x.host));
});
