/**
 * The TDX host under a TDX machine (domain notes 8): at machine creation the host boots with
 * every pCPU online, kvm_intel loads (tdx_bringup: virtualization enabled at load, VMXON on every
 * CPU through CPUHP_AP_KVM_ONLINE, the TDX cpuhp state runs TDH.SYS.INIT once and
 * TDH.SYS.LP.INIT per CPU, tdx_enable configures the module) and the VMM creates the TD (an HKID
 * programmed on every package). Taking a pCPU offline then runs the cpuhp teardown callbacks in
 * descending order — tdx_offline_cpu refuses the last online CPU of a package while the TD holds
 * its key (-EBUSY), KVM's callback flushes and VMXOFFs — and bringing it online runs VMXON, then
 * tdx_cpu_enable. The state lives in the machine's vendor area, after the host-state blocks.
 */
import type { Access } from '../../mem/access.js';
import type { Addr, Layout, PcpuId } from '../../mem/layout.js';
import { EmuError } from '../../errors.js';
import type { HostVirtState, PcpuVirtState } from '../../host/host-state.js';
import { cpuDown, cpuUp, cpuhpCpuState, perCpuWord, type CpuhpCallbacks } from '../../host/cpuhp.js';
import { cr4Vmxe } from '../../host/virt-cpu.js';
import { errnoName, ERRNO } from '../../host/errno.js';
import { kvmInitVirtualization, kvmUsageCount } from '../virt-enable.js';
import { NO_PATCHES, type PatchSet } from '../patches.js';
import { TDX_HOST_CPU, TdxModuleStatus, tdxModuleStatus } from '../../hw/tdx/module.js';
import { tdxBringup, tdxHostArea, tdxHostBoot, tdxHostCpuhpCallbacks, tdxNrConfiguredHkid, tdxTdInit, vtVirtOps, type TdxPlaces } from './tdx-bringup.js';

/** SEAMCALL log records kept for a machine (the log is for scenarios; a machine keeps a few). */
const LOG_CAPACITY = 16;
/** The pCPU the machine's module-load and VMM threads run on. */
const BOOT_CPU = 0;

/** Words the TDX host state of a machine with `pcpus` pCPUs in `packages` packages takes. @emulator */
export function tdxMachineBringupWords(pcpus: number, packages: number): number {
  return tdxHostArea(pcpus, packages, LOG_CAPACITY).words;
}

const placesCache = new WeakMap<Layout, TdxPlaces>();

/** Where the TDX host state of this machine lives (vendor area from word `offset`). @emulator */
export function tdxMachineBringupPlaces(L: Layout, offset: number): TdxPlaces {
  let b = placesCache.get(L);
  if (!b) placesCache.set(L, (b = tdxHostArea(L.config.pcpus, L.config.packages, LOG_CAPACITY).placesAt((L.vendorArea(0) + offset) as Addr)));
  return b;
}

const callbacksCache = new WeakMap<Access, CpuhpCallbacks>();

/** The cpuhp callbacks as this thread runs them (KVM's VMXON/VMXOFF, then TDX's, with the machine's patches). */
function callbacks(acc: Access, b: TdxPlaces, patches: PatchSet = NO_PATCHES): CpuhpCallbacks {
  let cbs = callbacksCache.get(acc);
  if (!cbs) callbacksCache.set(acc, (cbs = tdxHostCpuhpCallbacks(acc, b, vtVirtOps(acc, b), patches)));
  return cbs;
}

/**
 * Boot the host, load kvm_intel with TDX (tdx_bringup, then the at-load virtualization
 * reference) and create the TD. Emulator set-up on the main thread; a failure is an internal error.
 * @kvm arch/x86/kvm/vmx/tdx.c tdx_bringup; virt/kvm/kvm_main.c kvm_init_virtualization; vmx/tdx.c __tdx_td_init
 */
export function tdxMachineBringup(acc: Access, b: TdxPlaces): void {
  tdxHostBoot(acc, b);
  const cbs = callbacks(acc, b);
  const ops = vtVirtOps(acc, b);
  const steps: [string, () => number][] = [
    ['tdx_bringup', () => tdxBringup(acc, b, ops, cbs, BOOT_CPU)],
    ['kvm_init_virtualization', () => kvmInitVirtualization(acc, b.kvm, ops, cbs)],
    ['KVM_TDX_INIT_VM', () => tdxTdInit(acc, b, BOOT_CPU)],
  ];
  for (const [what, f] of steps) {
    const r = f();
    if (r !== 0) throw new EmuError('EMU_ERR_INTERNAL', `TDX machine: ${what} failed with ${errnoName(r)}`);
  }
}

/**
 * cpuhp teardown of pCPU p (descending: tdx_offline_cpu, then KVM's VMXOFF); -EBUSY becomes
 * EMU_ERR_EBUSY naming the reason, and the pCPU stays online.
 * @kvm kernel/cpu.c _cpu_down (cpuhp_down_callbacks)
 */
export function tdxMachineCpuTeardown(acc: Access, b: TdxPlaces, p: PcpuId, patches: PatchSet = NO_PATCHES): void {
  const r = cpuDown(acc, b.module.cpuhp, p, callbacks(acc, b, patches));
  if (r === -ERRNO.EBUSY) {
    throw new EmuError('EMU_ERR_EBUSY', `pCPU ${p} is the last online CPU of its package and a TD holds a key there: tdx_offline_cpu refused with -EBUSY`);
  }
  if (r !== 0) throw new EmuError('EMU_ERR_INTERNAL', `pCPU ${p}: cpuhp teardown failed with ${errnoName(r)}`);
}

/**
 * cpuhp startup of pCPU p (ascending: VMXON, then tdx_online_cpu → TDH.SYS.LP.INIT if not yet).
 * @kvm kernel/cpu.c _cpu_up (cpuhp_up_callbacks)
 */
export function tdxMachineCpuStartup(acc: Access, b: TdxPlaces, p: PcpuId, patches: PatchSet = NO_PATCHES): void {
  const r = cpuUp(acc, b.module.cpuhp, p, callbacks(acc, b, patches));
  if (r !== 0) throw new EmuError('EMU_ERR_INTERNAL', `pCPU ${p}: cpuhp startup failed with ${errnoName(r)}`);
}

/**
 * TDH.VP.ENTER is a SEAMCALL: pCPU p must be post-VMXON and LP-initialised (domain TB-1's
 * invariant), else the instruction #UDs / the module refuses — a hotplug bug in this machine.
 * @kvm arch/x86/virt/vmx/tdx/tdx.c seamcall (TDX_SEAMCALL_UD); TDX module TDX_SYS_NOT_READY
 */
export function tdxMachineCheckSeamcallCpu(acc: Access, b: TdxPlaces, p: PcpuId, v: number): void {
  const vmxe = cr4Vmxe(acc, b.module.virt, p);
  const lp = acc.readOnce(perCpuWord(b.module.hostCpu, p, TDX_HOST_CPU.LP_INITIALIZED), 'tdx:lp-initialized-read') !== 0;
  if (!vmxe || !lp) throw new EmuError('EMU_ERR_INTERNAL', `TDH.VP.ENTER for vcpu${v} on pCPU ${p} with CR4.VMXE=${vmxe ? 1 : 0}, LP initialised=${lp ? 1 : 0} (tdxSeamcallOnReadyCpu)`);
}

/** pCPU p's virtualization state (bookkeeping reads). @emulator */
export function tdxMachinePcpuVirt(acc: Access, b: TdxPlaces, p: PcpuId): PcpuVirtState {
  return {
    vmxe: cr4Vmxe(acc, b.module.virt, p),
    lpInitialized: acc.peek(perCpuWord(b.module.hostCpu, p, TDX_HOST_CPU.LP_INITIALIZED)) !== 0,
    cpuhpState: cpuhpCpuState(acc, b.module.cpuhp, p),
  };
}

/** The host's virtualization state (reads through the access layer from the main thread). @emulator */
export function tdxMachineHostVirt(acc: Access, b: TdxPlaces): HostVirtState {
  const st = tdxModuleStatus(acc, b.module);
  const name = Object.entries(TdxModuleStatus).find(([, v]) => v === st)?.[0] ?? String(st);
  return { kvmUsageCount: kvmUsageCount(acc, b.kvm), tdxModuleStatus: name, nrConfiguredHkid: tdxNrConfiguredHkid(acc, b) };
}
