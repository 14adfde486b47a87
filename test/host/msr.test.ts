/**
 * Host CPU state model: the register table (MSR numbers, INIT values, 64-bit words), the
 * user-return MSR cache with kvm_set_user_return_msr / kvm_user_return_msr_update_cache /
 * kvm_on_user_return semantics, and the host software state (perf LBR, breakpoints, GS base
 * save/load at a context switch). Single-threaded, on scratch words.
 */
import test from 'ava';
import { Access, createMachineMemory } from '../../src/mem/access.js';
import type { EmuError } from '../../src/errors.js';
import {
  DEBUGCTLMSR_FREEZE_LBRS_ON_PMI,
  DEBUGCTLMSR_LBR,
  DR6_RESERVED,
  DR7_FIXED_1,
  HOST_REG,
  HOST_REGS,
  HOST_REG_BLOCK_WORDS,
  MSR_IA32_DEBUGCTLMSR,
  MSR_KERNEL_GS_BASE,
  MSR_LSTAR,
  MSR_STAR,
  MSR_SYSCALL_MASK,
  MSR_TSC_AUX,
  hostRegByMsr,
  hostRegInfo,
  initHostRegs,
  rdmsr,
  readHostReg,
  snapshotHostRegs,
  writeHostReg,
  wrmsr,
} from '../../src/host/msr.js';
import {
  KVM_URET_REGS,
  URET_BLOCK_WORDS,
  fireUserReturnNotifiers,
  kvmFindUserReturnMsr,
  kvmOnUserReturn,
  kvmSetUserReturnMsr,
  kvmUserReturnMsrCpuOnline,
  kvmUserReturnMsrUpdateCache,
  snapshotUretCache,
  type UretPlaces,
} from '../../src/host/uret.js';
import {
  HOST_CPU_BLOCK_WORDS,
  TASK_BLOCK_WORDS,
  archInstallHwBreakpoint,
  archUninstallHwBreakpoint,
  debugctlWant,
  hwBreakpointActive,
  hwBreakpointRestore,
  initHostCpu,
  initTask,
  intelPmuLbrDisable,
  intelPmuLbrEnable,
  saveFsgs,
  switchToNext,
  taskGsbase,
  currentTask,
  type HostSwPlaces,
} from '../../src/host/host-state.js';

type Places = UretPlaces & HostSwPlaces;

/** Two pCPUs' blocks and two tasks on scratch words. */
function machine(): { acc: Access; P: Places } {
  const mem = createMachineMemory({ vcpus: 1, pcpus: 2, scratchWords: 512 });
  const L = mem.layout;
  const acc = new Access(mem, { actor: L.mainActor, name: 'main' });
  const uret0 = 2 * HOST_REG_BLOCK_WORDS;
  const cpu0 = uret0 + 2 * URET_BLOCK_WORDS;
  const task0 = cpu0 + 2 * HOST_CPU_BLOCK_WORDS;
  const P: Places = {
    regs: (p) => L.scratch(p * HOST_REG_BLOCK_WORDS),
    uret: (p) => L.scratch(uret0 + p * URET_BLOCK_WORDS),
    hostCpu: (p) => L.scratch(cpu0 + p * HOST_CPU_BLOCK_WORDS),
    task: (t) => L.scratch(task0 + t * TASK_BLOCK_WORDS),
  };
  return { acc, P };
}

const HOST_LSTAR = 0xffffffff81a00080n;
const HOST_STAR = 0x0023001000000000n;
const HOST_FMASK = 0x257fd5n;
const HOST_TSC_AUX = 0x1000n;
const BOOT = { LSTAR: HOST_LSTAR, STAR: HOST_STAR, SYSCALL_MASK: HOST_FMASK, TSC_AUX: HOST_TSC_AUX };

test('the register table: MSR numbers, INIT values, two words each, labels', (t) => {
  t.is(hostRegInfo('DEBUGCTL').msr, 0x1d9);
  t.is(hostRegInfo('XSS').msr, 0xda0);
  t.is(hostRegInfo('KERNEL_GS_BASE').msr, 0xc0000102);
  t.is(hostRegInfo('STAR').msr, 0xc0000081);
  t.is(hostRegInfo('LSTAR').msr, 0xc0000082);
  t.is(hostRegInfo('SYSCALL_MASK').msr, 0xc0000084);
  t.is(hostRegInfo('TSC_AUX').msr, 0xc0000103);
  t.is(hostRegInfo('TSX_CTRL').msr, 0x122);
  t.is(hostRegInfo('UMWAIT_CONTROL').msr, 0xe1);
  for (const r of ['DR0', 'DR7', 'XCR0', 'PKRU'] as const) t.is(hostRegInfo(r).msr, null, r);
  t.is(hostRegInfo('DR6').init, 0xffff0ff0n);
  t.is(hostRegInfo('DR7').init, 0x400n);
  t.is(hostRegInfo('XCR0').init, 1n);
  t.is(hostRegInfo('DEBUGCTL').writeLabel, 'msr:debugctl-write');
  t.is(hostRegInfo('KERNEL_GS_BASE').readLabel, 'msr:kernel-gs-base-read');
  const words = HOST_REGS.flatMap((r) => [r.word, r.word + 1]);
  t.is(new Set(words).size, words.length, 'no two registers share a word');
  t.true(Math.max(...words) < HOST_REG_BLOCK_WORDS);
  t.is(HOST_REGS.length, Object.keys(HOST_REG).length);
});

test('bad register names, MSR numbers and values are EMU_ERR_BAD_PARAM naming the parameter', (t) => {
  const { acc, P } = machine();
  const e1 = t.throws(() => hostRegInfo('CR3')) as EmuError;
  t.is(e1.code, 'EMU_ERR_BAD_PARAM');
  t.is(e1.detail?.param, 'reg');
  const e2 = t.throws(() => hostRegByMsr(0x10)) as EmuError;
  t.is(e2.detail?.param, 'msr');
  t.regex(e2.message, /0x10 is not a modelled MSR/);
  const e3 = t.throws(() => writeHostReg(acc, P, 0, 'LSTAR', 1n << 64n)) as EmuError;
  t.is(e3.detail?.param, 'value');
  const e4 = t.throws(() => writeHostReg(acc, P, 0, 'LSTAR', -1n)) as EmuError;
  t.is(e4.detail?.param, 'value');
  const e5 = t.throws(() => kvmSetUserReturnMsr(acc, P, 0, 9, 0n)) as EmuError;
  t.is(e5.detail?.param, 'slot');
  const e6 = t.throws(() => archInstallHwBreakpoint(acc, P, 0, 4, 0n)) as EmuError;
  t.is(e6.detail?.param, 'slot');
});

test('64-bit registers round-trip through two words, per pCPU; RDMSR/WRMSR by number', (t) => {
  const { acc, P } = machine();
  initHostRegs(acc, P, 0);
  initHostRegs(acc, P, 1);
  const s = snapshotHostRegs(acc, P, 0);
  for (const r of HOST_REGS) t.is(s[r.name], r.init, `${r.name} INIT`);
  writeHostReg(acc, P, 0, 'LSTAR', HOST_LSTAR);
  t.is(readHostReg(acc, P, 0, 'LSTAR'), HOST_LSTAR);
  t.is(rdmsr(acc, P, 0, MSR_LSTAR), HOST_LSTAR);
  t.is(readHostReg(acc, P, 1, 'LSTAR'), 0n, 'pCPU1 untouched');
  wrmsr(acc, P, 1, MSR_KERNEL_GS_BASE, 0xffffffffffffffffn);
  t.is(readHostReg(acc, P, 1, 'KERNEL_GS_BASE'), 0xffffffffffffffffn);
  wrmsr(acc, P, 0, MSR_IA32_DEBUGCTLMSR, DEBUGCTLMSR_LBR);
  t.is(snapshotHostRegs(acc, P, 0).DEBUGCTL, 1n);
});

test('user-return cache: CPU online records host = curr = the MSR, notifier unregistered', (t) => {
  const { acc, P } = machine();
  initHostRegs(acc, P, 0, BOOT);
  kvmUserReturnMsrCpuOnline(acc, P, 0);
  const s = snapshotUretCache(acc, P, 0);
  t.false(s.registered);
  t.deepEqual(s.slots.map((x) => x.reg), ['SYSCALL_MASK', 'LSTAR', 'TSC_AUX', 'STAR']);
  for (const x of s.slots) {
    t.is(x.host, BOOT[x.reg as keyof typeof BOOT]);
    t.is(x.curr, x.host);
    t.is(x.hw, x.host);
  }
  t.is(kvmFindUserReturnMsr(MSR_STAR), 3);
  t.is(kvmFindUserReturnMsr(MSR_SYSCALL_MASK), 0);
  t.is(kvmFindUserReturnMsr(MSR_IA32_DEBUGCTLMSR), -1);
  t.deepEqual(KVM_URET_REGS, ['SYSCALL_MASK', 'LSTAR', 'TSC_AUX', 'STAR']);
});

test('kvm_set_user_return_msr writes and registers; skips the WRMSR when curr already matches; honours the mask', (t) => {
  const { acc, P } = machine();
  initHostRegs(acc, P, 0, BOOT);
  kvmUserReturnMsrCpuOnline(acc, P, 0);
  const lstar = kvmFindUserReturnMsr(MSR_LSTAR);
  kvmSetUserReturnMsr(acc, P, 0, lstar, 0xffffffff81e00080n);
  t.is(readHostReg(acc, P, 0, 'LSTAR'), 0xffffffff81e00080n);
  t.true(snapshotUretCache(acc, P, 0).registered);
  // The cache is trusted: if something changed the MSR behind KVM's back, an equal value is skipped.
  writeHostReg(acc, P, 0, 'SYSCALL_MASK', 0x20200n);
  kvmSetUserReturnMsr(acc, P, 0, kvmFindUserReturnMsr(MSR_SYSCALL_MASK), HOST_FMASK);
  t.is(readHostReg(acc, P, 0, 'SYSCALL_MASK'), 0x20200n, 'skipped: curr said it was already loaded');
  // mask: the bits outside it come from the host value.
  kvmSetUserReturnMsr(acc, P, 0, kvmFindUserReturnMsr(MSR_TSC_AUX), 0x7n, 0xfn);
  t.is(readHostReg(acc, P, 0, 'TSC_AUX'), 0x1007n);
});

test('update_cache records a value without WRMSR; kvm_on_user_return writes back only slots with curr != host, then unregisters', (t) => {
  const { acc, P } = machine();
  initHostRegs(acc, P, 0, BOOT);
  kvmUserReturnMsrCpuOnline(acc, P, 0);
  t.is(fireUserReturnNotifiers(acc, P, 0), 0, 'nothing registered: nothing runs');
  // What the TDX module leaves behind, told to the cache.
  writeHostReg(acc, P, 0, 'LSTAR', 0n);
  writeHostReg(acc, P, 0, 'SYSCALL_MASK', 0x20200n);
  kvmUserReturnMsrUpdateCache(acc, P, 0, kvmFindUserReturnMsr(MSR_LSTAR), 0n);
  kvmUserReturnMsrUpdateCache(acc, P, 0, kvmFindUserReturnMsr(MSR_SYSCALL_MASK), 0x20200n);
  t.is(readHostReg(acc, P, 0, 'LSTAR'), 0n, 'no WRMSR');
  t.true(snapshotUretCache(acc, P, 0).registered);
  t.is(fireUserReturnNotifiers(acc, P, 0), 2);
  t.is(readHostReg(acc, P, 0, 'LSTAR'), HOST_LSTAR);
  t.is(readHostReg(acc, P, 0, 'SYSCALL_MASK'), HOST_FMASK);
  const s = snapshotUretCache(acc, P, 0);
  t.false(s.registered);
  t.true(s.slots.every((x) => x.curr === x.host && x.hw === x.host));
  // A stale cache (MSR clobbered, cache not told): the notifier skips the slot.
  writeHostReg(acc, P, 0, 'STAR', 0n);
  kvmUserReturnMsrUpdateCache(acc, P, 0, kvmFindUserReturnMsr(MSR_LSTAR), 0n);
  writeHostReg(acc, P, 0, 'LSTAR', 0n);
  t.is(kvmOnUserReturn(acc, P, 0), 1);
  t.is(readHostReg(acc, P, 0, 'STAR'), 0n, 'STAR stays clobbered: curr said host');
});

test('perf LBR enable/disable and hardware breakpoints keep the host expectation and the registers together', (t) => {
  const { acc, P } = machine();
  initHostRegs(acc, P, 0);
  initHostCpu(acc, P, 0, 0n, 0);
  intelPmuLbrEnable(acc, P, 0);
  t.is(readHostReg(acc, P, 0, 'DEBUGCTL'), DEBUGCTLMSR_LBR | DEBUGCTLMSR_FREEZE_LBRS_ON_PMI);
  t.is(debugctlWant(acc, P, 0), DEBUGCTLMSR_LBR | DEBUGCTLMSR_FREEZE_LBRS_ON_PMI);
  intelPmuLbrDisable(acc, P, 0);
  t.is(readHostReg(acc, P, 0, 'DEBUGCTL'), 0n);
  t.false(hwBreakpointActive(acc, P, 0));
  archInstallHwBreakpoint(acc, P, 0, 1, 0xffffffff81234560n);
  t.true(hwBreakpointActive(acc, P, 0));
  t.is(readHostReg(acc, P, 0, 'DR1'), 0xffffffff81234560n);
  t.is(readHostReg(acc, P, 0, 'DR7'), DR7_FIXED_1 | 0x8n);
  // A TD exit leaves INIT values; hw_breakpoint_restore brings the host's back.
  writeHostReg(acc, P, 0, 'DR1', 0n);
  writeHostReg(acc, P, 0, 'DR7', DR7_FIXED_1);
  hwBreakpointRestore(acc, P, 0);
  t.is(readHostReg(acc, P, 0, 'DR1'), 0xffffffff81234560n);
  t.is(readHostReg(acc, P, 0, 'DR7'), DR7_FIXED_1 | 0x8n);
  t.is(readHostReg(acc, P, 0, 'DR6'), DR6_RESERVED);
  archUninstallHwBreakpoint(acc, P, 0, 1);
  t.false(hwBreakpointActive(acc, P, 0));
  t.is(readHostReg(acc, P, 0, 'DR7'), DR7_FIXED_1);
});

test('context switch on an FSGSBASE host: save_fsgs stores the inactive GS base, the next task gets its own', (t) => {
  const { acc, P } = machine();
  initHostRegs(acc, P, 0, { KERNEL_GS_BASE: 0x7f0000001000n });
  initTask(acc, P, 0, 0x7f0000001000n);
  initTask(acc, P, 1, 0x7f0000002000n, 0x55555550n);
  initHostCpu(acc, P, 0, 0n, 0);
  t.is(saveFsgs(acc, P, 0, 0), 0x7f0000001000n);
  switchToNext(acc, P, 0, 1);
  t.is(readHostReg(acc, P, 0, 'KERNEL_GS_BASE'), 0x7f0000002000n);
  t.is(readHostReg(acc, P, 0, 'PKRU'), 0x55555550n);
  t.is(currentTask(acc, P, 0), 1);
  // A clobbered inactive GS base at switch-out becomes the task's saved GS base (HS-1).
  writeHostReg(acc, P, 0, 'KERNEL_GS_BASE', 0n);
  saveFsgs(acc, P, 0, 1);
  t.is(taskGsbase(acc, P, 1), 0n);
});
