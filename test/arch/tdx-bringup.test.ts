/**
 * TDX module bring-up on the host (hw/tdx/module.ts, kvm/vmx/tdx-bringup.ts) on one thread:
 * what the module accepts when, the 6.16 and v19 bring-up flows, a TD's key life against CPU
 * offlining, and disabling virtualization at shutdown and in an emergency.
 */
import test from 'ava';
import { NO_PATCHES, PatchSet } from '../../src/kvm/patches.js';
import { Access, createMachineMemory } from '../../src/mem/access.js';
import { CPUHP, cpuDown, cpuUp, cpuhpCpuState, type CpuhpCallbacks } from '../../src/host/cpuhp.js';
import { cpuInVmxOperation, cr4Vmxe, nmiShootdownCpus } from '../../src/host/virt-cpu.js';
import { ERRNO, errnoName } from '../../src/host/errno.js';
import {
  KVM_CPUHP_ONLINE,
  hardwareDisableAll,
  hardwareEnableAll,
  kvmCpuhpStep,
  kvmEmergencyCallbacks,
  kvmInitV69,
  kvmShutdown,
  kvmUsageCount,
  KVM_VIRT,
} from '../../src/kvm/virt-enable.js';
import { wordAt } from '../../src/sync/index.js';
import {
  KotState,
  SysState,
  TDX_SEAM,
  TDX_STATUS,
  TdxLeaf,
  TdxModuleStatus,
  readSeamcallLog,
  seamcall,
  tdxKotSnapshot,
  tdxLeafName,
  tdxModuleStatus,
  tdxStatusName,
  tdxSysRuns,
  tryInitModuleGlobal,
} from '../../src/hw/tdx/module.js';
import {
  KVM_TDX,
  TDX_CPUHP_ONLINE,
  tdxBringup,
  tdxCpuhpStep,
  tdxEnabled,
  tdxHardwareSetupV19,
  tdxHostArea,
  tdxHostBoot,
  tdxMmuReleaseHkid,
  tdxNrConfiguredHkid,
  tdxTdInit,
  tdxVcpuRun,
  tdxWarnings,
  vtVirtOps,
  tdxHostCpuhpCallbacks,
  PATCH_TDX_V19_BRINGUP,
  type TdxPlaces,
} from '../../src/kvm/vmx/tdx-bringup.js';
import { EmuError } from '../../src/errors.js';

const N = 4;

interface Host {
  acc: Access;
  b: TdxPlaces;
  cbs: CpuhpCallbacks;
  ops: ReturnType<typeof vtVirtOps>;
}

function host(v19 = false): Host {
  const area = tdxHostArea(N, 2, 256);
  const mem = createMachineMemory({ vcpus: 1, pcpus: 1, scratchWords: area.words });
  const acc = new Access(mem, { actor: mem.layout.mainActor, name: 'main' });
  const b = area.placesAt(mem.layout.scratch(0));
  tdxHostBoot(acc, b);
  const ops = vtVirtOps(acc, b);
  const cbs: CpuhpCallbacks = tdxHostCpuhpCallbacks(acc, b, ops, v19 ? new PatchSet([PATCH_TDX_V19_BRINGUP.id]) : NO_PATCHES);
  return { acc, b, cbs, ops };
}

const postVmxon = (h: Host, c: number) => cr4Vmxe(h.acc, h.b.module.virt, c) && cpuInVmxOperation(h.acc, h.b.module.virt, c);
const log = (h: Host) => readSeamcallLog(h.acc, h.b.module).entries.map((e) => `${tdxLeafName(e.leaf)}@${e.cpu}:${tdxStatusName(e.status)}`);

test('a SEAMCALL outside VMX operation #UDs and never reaches the module; TDH.SYS.LP.INIT before TDH.SYS.INIT is not pending', (t) => {
  const h = host();
  t.is(seamcall(h.acc, h.b.module, 1, TdxLeaf.SYS_INIT), TDX_STATUS.TDX_SEAMCALL_UD);
  t.is(h.acc.peek(wordAt(h.b.module.seam, TDX_SEAM.SYS_STATE)), SysState.SYSINIT_PENDING);
  h.ops.enableVirtualizationCpu(1);
  t.is(seamcall(h.acc, h.b.module, 1, TdxLeaf.SYS_LP_INIT), TDX_STATUS.TDX_SYS_LP_INIT_NOT_PENDING);
  t.is(tryInitModuleGlobal(h.acc, h.b.module, 1), 0);
  t.is(tryInitModuleGlobal(h.acc, h.b.module, 1), 0, 'the second caller gets the remembered result');
  t.is(tdxSysRuns(h.acc, h.b.module).sysInit, 1, 'TDH.SYS.INIT ran once');
  t.is(seamcall(h.acc, h.b.module, 1, TdxLeaf.SYS_LP_INIT), TDX_STATUS.TDX_SUCCESS);
  t.is(seamcall(h.acc, h.b.module, 1, TdxLeaf.SYS_LP_INIT), TDX_STATUS.TDX_SYS_LP_INIT_DONE);
  t.is(seamcall(h.acc, h.b.module, 1, TdxLeaf.SYS_CONFIG), TDX_STATUS.TDX_SYS_CONFIG_NOT_PENDING, 'three LPs of the platform have not run TDH.SYS.LP.INIT');
  t.is(seamcall(h.acc, h.b.module, 1, TdxLeaf.MNG_CREATE, 2), TDX_STATUS.TDX_SYS_NOT_READY);
});

test('6.16 bring-up on an idle host: every CPU post-VMXON and initialised, the module ready, usage held', (t) => {
  const h = host();
  t.is(tdxBringup(h.acc, h.b, h.ops, h.cbs, 0), 0);
  t.true(tdxEnabled(h.acc, h.b));
  t.is(tdxModuleStatus(h.acc, h.b.module), TdxModuleStatus.INITIALIZED);
  t.is(h.acc.peek(wordAt(h.b.module.seam, TDX_SEAM.SYS_STATE)), SysState.SYS_READY);
  for (let c = 0; c < N; c++) t.true(postVmxon(h, c), `CPU${c}`);
  t.is(kvmUsageCount(h.acc, h.b.kvm), 1);
  t.deepEqual(tdxSysRuns(h.acc, h.b.module), { sysInit: 1, sysConfig: 1 });
  t.deepEqual(log(h), ['TDH.SYS.INIT@0:TDX_SUCCESS', 'TDH.SYS.LP.INIT@0:TDX_SUCCESS', 'TDH.SYS.LP.INIT@1:TDX_SUCCESS', 'TDH.SYS.LP.INIT@2:TDX_SUCCESS', 'TDH.SYS.LP.INIT@3:TDX_SUCCESS', 'TDH.SYS.CONFIG@0:TDX_SUCCESS', 'TDH.SYS.KEY.CONFIG@0:TDX_SUCCESS', 'TDH.SYS.KEY.CONFIG@2:TDX_SUCCESS']);
  t.is(tdxBringup(h.acc, h.b, h.ops, h.cbs, 0), 0, 'a second enabler: tdx_lp_initialized and INITIALIZED make it a no-op');
  t.deepEqual(tdxSysRuns(h.acc, h.b.module), { sysInit: 1, sysConfig: 1 }, 'TDH.SYS.INIT and TDH.SYS.CONFIG still ran once');
  t.is(kvmUsageCount(h.acc, h.b.kvm), 2);
});

test('6.16: every VMXON happens with the emergency-disable callback already registered', (t) => {
  const h = host();
  const seen: number[] = [];
  const ops = { ...h.ops, enableVirtualizationCpu: (cpu: number) => {
    seen.push(h.acc.peek(h.b.module.virt.global));
    return h.ops.enableVirtualizationCpu(cpu);
  } };
  const cbs: CpuhpCallbacks = new Map([...h.cbs, [KVM_CPUHP_ONLINE, kvmCpuhpStep(h.acc, h.b.kvm, ops)]]);
  t.is(tdxBringup(h.acc, h.b, ops, cbs, 0), 0);
  t.is(seen.length, N);
  t.true(seen.every((id) => id !== 0));
});

test('the module counts every LP MCHECK saw: a CPU offline during bring-up fails TDH.SYS.CONFIG and TDX is disabled', (t) => {
  const h = host();
  t.is(cpuDown(h.acc, h.b.module.cpuhp, 3, h.cbs), 0);
  const r = tdxBringup(h.acc, h.b, h.ops, h.cbs, 0);
  t.is(errnoName(r), '-EIO');
  t.false(tdxEnabled(h.acc, h.b));
  t.is(tdxModuleStatus(h.acc, h.b.module), TdxModuleStatus.ERROR);
  t.true(log(h).includes('TDH.SYS.CONFIG@0:TDX_SYS_CONFIG_NOT_PENDING'));
  t.is(kvmUsageCount(h.acc, h.b.kvm), 0, 'the bring-up reference was dropped');
  for (let c = 0; c < N; c++) t.false(postVmxon(h, c), `CPU${c} VMXOFF again`);
  t.is(h.acc.peek(wordAt(h.b.global, KVM_TDX.TDX_CPUHP_STATE)), 0);
  t.is(cpuUp(h.acc, h.b.module.cpuhp, 3, h.cbs), 0, 'no TDX callback left to fail the online');
});

test('after bring-up a CPU goes down VMXOFF and comes back VMXON without another TDH.SYS.LP.INIT', (t) => {
  const h = host();
  tdxBringup(h.acc, h.b, h.ops, h.cbs, 0);
  const before = log(h).length;
  t.is(cpuDown(h.acc, h.b.module.cpuhp, 2, h.cbs), 0);
  t.false(postVmxon(h, 2));
  t.is(cpuUp(h.acc, h.b.module.cpuhp, 2, h.cbs), 0);
  t.true(postVmxon(h, 2));
  t.is(cpuhpCpuState(h.acc, h.b.module.cpuhp, 2), CPUHP.ONLINE);
  t.is(log(h).length, before, 'tdx_lp_initialized: no SEAMCALL on the way up');
  t.is(tdxWarnings(h.acc, h.b), 0);
});

test('a TD: key on every package, vCPUs associated, the last CPU of a package refuses to go offline, HKID reclaimed', (t) => {
  const h = host();
  tdxBringup(h.acc, h.b, h.ops, h.cbs, 0);
  t.is(tdxTdInit(h.acc, h.b, 0), 0);
  t.is(tdxNrConfiguredHkid(h.acc, h.b), 1);
  t.is(tdxKotSnapshot(h.acc, h.b.module).state, KotState.CONFIGURED);
  for (let v = 0; v < N; v++) t.is(tdxVcpuRun(h.acc, h.b, v), TDX_STATUS.TDX_SUCCESS);
  t.is(cpuDown(h.acc, h.b.module.cpuhp, 2, h.cbs), 0, 'CPU3 keeps package 1 online');
  t.is(tdxVcpuRun(h.acc, h.b, 2), null, 'CPU2 is not active');
  t.is(cpuDown(h.acc, h.b.module.cpuhp, 3, h.cbs), -ERRNO.EBUSY);
  t.true(postVmxon(h, 3), 'the refused offline left CPU3 as it was');
  const rel = tdxMmuReleaseHkid(h.acc, h.b, 0);
  t.true(rel.released);
  t.is(tdxNrConfiguredHkid(h.acc, h.b), 0);
  t.is(tdxKotSnapshot(h.acc, h.b.module).state, KotState.FREE);
  t.is(cpuDown(h.acc, h.b.module.cpuhp, 3, h.cbs), 0, 'no TD: any CPU may go');
  t.is(errnoName(tdxTdInit(h.acc, h.b, 0)), '-EIO', 'a TD needs an online CPU in every package');
  t.is(tdxNrConfiguredHkid(h.acc, h.b), 0, 'the failed init gave its HKID back');
});

test('without the offline check a TD outlives its package: TDH.MNG.KEY.FREEID fails and the HKID leaks', (t) => {
  const h = host();
  const tdx = tdxCpuhpStep(h.acc, h.b);
  const cbs: CpuhpCallbacks = new Map([...h.cbs, [TDX_CPUHP_ONLINE, { ...tdx, teardown: () => 0 }]]);
  tdxBringup(h.acc, h.b, h.ops, cbs, 0);
  tdxTdInit(h.acc, h.b, 0);
  t.is(cpuDown(h.acc, h.b.module.cpuhp, 2, cbs), 0);
  t.is(cpuDown(h.acc, h.b.module.cpuhp, 3, cbs), 0);
  const rel = tdxMmuReleaseHkid(h.acc, h.b, 0);
  t.false(rel.released);
  t.is(tdxStatusName(rel.status), 'TDX_WBCACHE_NOT_COMPLETE');
  t.is(tdxNrConfiguredHkid(h.acc, h.b), 1);
});

test('kvm_shutdown flushes the TD vCPUs of each CPU, then VMXOFF everywhere: every later SEAMCALL #UDs', (t) => {
  const h = host();
  tdxBringup(h.acc, h.b, h.ops, h.cbs, 0);
  tdxTdInit(h.acc, h.b, 0);
  for (let v = 0; v < N; v++) tdxVcpuRun(h.acc, h.b, v);
  kvmShutdown(h.acc, h.b.kvm, h.ops);
  t.is(h.acc.peek(wordAt(h.b.kvm.global, KVM_VIRT.REBOOTING)), 1);
  t.is(log(h).filter((l) => l.startsWith('TDH.VP.FLUSH') && l.endsWith('TDX_SUCCESS')).length, N);
  for (let c = 0; c < N; c++) {
    t.false(postVmxon(h, c));
    t.is(seamcall(h.acc, h.b.module, c, TdxLeaf.VP_ENTER, c), TDX_STATUS.TDX_SEAMCALL_UD);
  }
});

test('emergency disable (NMI shootdown) runs VMX\'s callback on every CPU: VMXOFF, no TDH.VP.FLUSH, every SEAMCALL #UDs', (t) => {
  const h = host();
  tdxBringup(h.acc, h.b, h.ops, h.cbs, 0);
  tdxTdInit(h.acc, h.b, 0);
  for (let v = 0; v < N; v++) tdxVcpuRun(h.acc, h.b, v);
  const flushes = () => log(h).filter((l) => l.startsWith('TDH.VP.FLUSH')).length;
  nmiShootdownCpus(h.acc, h.b.module.virt, h.b.module.cpuhp, 1, kvmEmergencyCallbacks(h.ops));
  t.is(h.acc.peek(wordAt(h.b.kvm.global, KVM_VIRT.REBOOTING)), 1);
  t.is(flushes(), 0, 'the emergency path does not flush TD vCPUs');
  for (let c = 0; c < N; c++) {
    t.false(postVmxon(h, c), `CPU${c}`);
    t.is(seamcall(h.acc, h.b.module, c, TdxLeaf.SYS_KEY_CONFIG), TDX_STATUS.TDX_SEAMCALL_UD);
  }
  // A second shootdown finds CR4.VMXE clear everywhere: it returns and changes nothing.
  t.notThrows(() => nmiShootdownCpus(h.acc, h.b.module.virt, h.b.module.cpuhp, 1, kvmEmergencyCallbacks(h.ops)));
  t.is(flushes(), 0);
  for (let c = 0; c < N; c++) t.false(postVmxon(h, c), `CPU${c} after the second shootdown`);
});

test('v19 bring-up: VMXON + LP.INIT under the hotplug lock, then VMXOFF; VMXON comes back per VM', (t) => {
  const h = host(true);
  t.is(tdxHardwareSetupV19(h.acc, h.b, 0), 0);
  t.is(kvmInitV69(h.acc, h.b.kvm, h.cbs), 0);
  for (let c = 0; c < N; c++) t.false(postVmxon(h, c), `CPU${c} VMXOFF after bring-up`);
  t.is(kvmUsageCount(h.acc, h.b.kvm), 0);
  t.is(cpuDown(h.acc, h.b.module.cpuhp, 1, h.cbs), 0);
  t.is(cpuUp(h.acc, h.b.module.cpuhp, 1, h.cbs), 0);
  t.false(postVmxon(h, 1), 'no VM: the pre-6.10 online callback does nothing');
  t.is(hardwareEnableAll(h.acc, h.b.kvm, h.ops), 0);
  for (let c = 0; c < N; c++) t.true(postVmxon(h, c));
  t.is(tdxTdInit(h.acc, h.b, 0), 0);
  for (let v = 0; v < N; v++) t.is(tdxVcpuRun(h.acc, h.b, v), TDX_STATUS.TDX_SUCCESS);
  t.true(tdxMmuReleaseHkid(h.acc, h.b, 0).released);
  hardwareDisableAll(h.acc, h.b.kvm, h.ops);
  for (let c = 0; c < N; c++) t.false(postVmxon(h, c));
  t.throws(() => hardwareDisableAll(h.acc, h.b.kvm, h.ops), { instanceOf: EmuError }, 'BUG_ON(!kvm_usage_count)');
});

test('bad topologies are EMU_ERR_BAD_PARAM naming the parameter', (t) => {
  for (const [cpus, pkgs, param] of [[0, 1, 'nrCpus'], [4, 5, 'nrPkgs'], [4, 0, 'nrPkgs']] as const) {
    const e = t.throws(() => tdxHostArea(cpus, pkgs, 16), { instanceOf: EmuError });
    t.is(e?.code, 'EMU_ERR_BAD_PARAM');
    t.regex(e?.message ?? '', new RegExp(param));
  }
});
