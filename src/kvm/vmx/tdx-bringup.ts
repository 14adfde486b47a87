/**
 * KVM's side of TDX on the host (arch/x86/kvm/vmx/tdx.c, vmx/main.c): bringing the TDX module
 * up when kvm_intel loads, the TDX cpuhp state, disabling virtualization on a CPU with TD vCPUs
 * associated, and the part of a TD's life that touches keys and CPUs (HKID, key configuration
 * per package, TD vCPUs associated with CPUs, the reclaim on destruction).
 *
 * 6.16 bring-up (tdx_bringup, Kai Huang's "KVM: VMX: Initialize TDX during KVM module load"):
 * ```
 *  kvm_enable_virtualization()          VMXON on every online CPU; KVM's cpuhp state does it on
 *                                       every CPU that comes up from now on (usage held forever)
 *  cpus_read_lock()
 *    cpuhp_setup_state_cpuslocked(CPUHP_AP_ONLINE_DYN, "kvm/cpu/tdx:online",
 *                                 tdx_online_cpu, tdx_offline_cpu)
 *                                       tdx_cpu_enable on every online CPU (TDH.SYS.INIT once,
 *                                       TDH.SYS.LP.INIT), and on every CPU that comes up
 *    tdx_enable()                       TDH.SYS.CONFIG, TDH.SYS.KEY.CONFIG per package
 *  cpus_read_unlock()
 * ```
 * The TDX v19 series ("KVM: TDX: Initialize the TDX module when loading the KVM intel kernel
 * module", seed 004) instead did, under cpus_read_lock: VMXON + tdx_cpu_enable on every online
 * CPU by IPI, tdx_enable, VMXOFF on every CPU — and left VMXON to KVM's per-VM
 * hardware_enable_all ({@link tdxHardwareSetupV19}).
 *
 * KVM-global ({@link KVM_TDX}): enable_tdx, tdx_cpuhp_state, nr_configured_hkid, tdx_lock, the
 * TD's HKID, WARN count. Per CPU ({@link KVM_TDX_CPU}): associated_tdvcpus as a bitmask of TD
 * vCPU ids. Per TD vCPU ({@link KVM_TDX_VCPU}): vcpu->cpu. A TD vCPU `v` runs on CPU `v` only.
 */
import type { Access } from '../../mem/access.js';
import type { Addr } from '../../mem/layout.js';
import { mutexLock, mutexUnlock, wordAt } from '../../sync/index.js';
import { planScratch } from '../../mem/layout.js';
import { badParam } from '../../errors.js';
import {
  CPUHP,
  CPUHP_GLOBAL_WORDS,
  PER_CPU_WORDS,
  cpuActive,
  cpuhpBoot,
  cpuhpPlaces,
  cpuhpRemoveStateCpuslocked,
  cpuhpSetupStateCpuslocked,
  cpusReadLock,
  cpusReadUnlock,
  onCpu,
  onEachCpu,
  onlineCpus,
  perCpuWord,
  smpCallFunctionSingle,
  topologyPhysicalPackageId,
  withCpusReadLock,
  type CpuhpCallbacks,
  type CpuhpStep,
} from '../../host/cpuhp.js';
import { cr4Vmxe, virtCpuBoot } from '../../host/virt-cpu.js';
import { ERRNO } from '../../host/errno.js';
import { definePatch, NO_PATCHES, type PatchSet } from '../patches.js';
import { cpuEmergencyRegisterVirtCallback } from '../../host/virt-cpu.js';
import {
  KVM_CPUHP_ONLINE,
  KVM_CPUHP_ONLINE_V69,
  VMX_EMERGENCY_CALLBACK,
  hardwareDisableAll,
  hardwareEnableAll,
  kvmCpuhpStep,
  kvmCpuhpStepV69,
  kvmDisableVirtualization,
  kvmEnableVirtualization,
  kvmInitV69,
  kvmInitVirtualization,
  kvmVirtInit,
  KVM_VIRT_WORDS,
  vmxDisableVirtualizationCpu,
  vmxEmergencyDisableVirtualizationCpu,
  vmxEnableVirtualizationCpu,
  type KvmVirtOps,
  type KvmVirtPlaces,
} from '../virt-enable.js';
import {
  TDX_HOST_WORDS,
  TDX_SEAM_WORDS,
  TDX_STATUS,
  TdxLeaf,
  seamcall,
  seamcallPrerr,
  tdxCpuEnable,
  tdxEnable,
  tdxGuestKeyidAlloc,
  tdxGuestKeyidFree,
  tdxLogWords,
  tdxModuleBoot,
  type TdxModulePlaces,
} from '../../hw/tdx/module.js';

/** Word offsets of KVM's global TDX words. */
export const KVM_TDX = {
  /** enable_tdx (module parameter, cleared if bring-up fails). */
  ENABLE_TDX: 0,
  /** tdx_cpuhp_state: the dynamic state "kvm/cpu/tdx:online" got, 0 if none. */
  TDX_CPUHP_STATE: 1,
  /** nr_configured_hkid (atomic). */
  NR_CONFIGURED_HKID: 2,
  /** tdx_lock (mutex, two words): serialises SEAMCALLs that take the module's global lock. */
  TDX_LOCK: 4,
  /** The TD's kvm_tdx->hkid, -1 if none. */
  TD_HKID: 6,
  /** WARN_ON_ONCE hits (tdx_online_cpu without CR4.VMXE, KVM_BUG_ON on a SEAMCALL error). */
  WARNINGS: 7,
} as const;
/** Words of KVM's global TDX area. */
export const KVM_TDX_WORDS = 16;
/** Word offsets of a CPU's KVM TDX line: per_cpu(associated_tdvcpus) as a TD vCPU bitmask. */
export const KVM_TDX_CPU = { ASSOCIATED_TDVCPUS: 0 } as const;
/** Word offsets of a TD vCPU's KVM line: vcpu->cpu (-1 = none). */
export const KVM_TDX_VCPU = { CPU: 0 } as const;

/** Callback id of "kvm/cpu/tdx:online". */
export const TDX_CPUHP_ONLINE = 3;

/**
 * Bug patch (TB-2): tdx_offline_cpu lets the last online CPU of a package go offline although a
 * TD holds an HKID (the teardown always returns 0); the HKID can then not be reclaimed
 * (TDH.PHYMEM.CACHE.WB needs a CPU on every package). Every posted TDX series has the check
 * ("KVM: TDX: Refuse to unplug the last cpu on the package", from v9 of Sep 2022 on); the patch
 * shows why.
 * @kvm arch/x86/kvm/vmx/tdx.c tdx_offline_cpu
 */
export const PATCH_TDX_OFFLINE_CPU_NO_HKID_CHECK = definePatch({
  id: 'tdx-offline-cpu-no-hkid-check',
  step: 'tdx_offline_cpu',
  summary: 'the TDX cpuhp teardown allows offlining the last online CPU of a package while a TD holds an HKID',
  origin: { kind: 'hypothetical', ref: '[PATCH v19 041/130] KVM: TDX: Refuse to unplug the last cpu on the package (2024-02-26; the check is in every version since v9, 2022-09-30)', subject: 'KVM: TDX: Refuse to unplug the last cpu on the package' },
  kernel: 'none (every posted TDX KVM refuses it; 6.16 tdx_offline_cpu returns -EBUSY)',
  vendors: ['tdx'],
});

/**
 * Bug patch (TB-1): tdx_bringup registers the TDX cpuhp state and runs tdx_enable() without
 * cpus_read_lock(), so a CPU can come up (or go down) between the tdx_cpu_enable pass and
 * TDH.SYS.CONFIG / TDH.SYS.KEY.CONFIG. tdx_enable() requires the caller to hold the hotplug lock
 * (and cpuhp_setup_state_cpuslocked asserts it); the patch shows why.
 * @kvm arch/x86/kvm/vmx/tdx.c __tdx_bringup (cpus_read_lock(); __do_tdx_bringup(); cpus_read_unlock())
 */
export const PATCH_TDX_BRINGUP_NO_HOTPLUG_LOCK = definePatch({
  id: 'tdx-bringup-no-hotplug-lock',
  step: '__tdx_bringup',
  summary: 'the TDX cpuhp registration and tdx_enable() run without cpus_read_lock()',
  origin: { kind: 'hypothetical', ref: 'arch/x86/virt/vmx/tdx/tdx.c tdx_enable ("This function assumes the caller has: 1) held read lock of CPU hotplug lock")', subject: 'KVM: VMX: Initialize TDX during KVM module load (Kai Huang) — the bring-up under cpus_read_lock' },
  kernel: 'none (6.16 holds cpus_read_lock around __do_tdx_bringup)',
  vendors: ['tdx'],
});

/**
 * The TDX v19 bring-up with the pre-6.10 KVM enabling it was written against (seed 004): at
 * kvm_intel load, under cpus_read_lock, VMXON + tdx_cpu_enable on every online CPU, tdx_enable,
 * VMXOFF; CPUHP_AP_KVM_ONLINE registered at kvm_init; VMXON later only while a VM holds a
 * reference (hardware_enable_all), `.hardware_enable = vmx_hardware_enable` ("TDX cpu
 * enablement is done by tdx_hardware_setup()"). Not a bug in this model: every LP must run
 * TDH.SYS.LP.INIT before TDH.SYS.CONFIG and keeps it, so no CPU can later lack it.
 * @kvm arch/x86/kvm/vmx/tdx.c tdx_hardware_setup (TDX v19: tdx_on / vmx_off / tdx_module_setup)
 */
export const PATCH_TDX_V19_BRINGUP = definePatch({
  id: 'tdx-v19-bringup',
  step: 'tdx_hardware_setup / kvm_init',
  summary: 'TDX brought up at kvm_intel load with VMX switched on and off around it, VMXON afterwards only per VM (pre-6.10 hardware_enable_all, usage-conditional kvm_online_cpu)',
  origin: { kind: 'proposal', ref: '[PATCH v19 023/130] KVM: TDX: Initialize the TDX module when loading the KVM intel kernel module (Isaku Yamahata, 2024-02-26, <f028d43abeadaa3134297d28fb99f283445c0333.1708933498.git.isaku.yamahata@intel.com>; seed 004)', subject: 'KVM: TDX: Initialize the TDX module when loading the KVM intel kernel module' },
  kernel: 'none released (TDX v19 series on v6.8-era KVM; 6.16 uses kvm_enable_virtualization + the TDX cpuhp state)',
  vendors: ['tdx'],
});

/**
 * Where KVM's TDX state lives, with the module and KVM enabling state it uses.
 * @kvm arch/x86/kvm/vmx/tdx.c enable_tdx, tdx_cpuhp_state, nr_configured_hkid, tdx_lock, associated_tdvcpus, struct kvm_tdx (hkid)
 */
export interface TdxPlaces {
  readonly module: TdxModulePlaces;
  readonly kvm: KvmVirtPlaces;
  /** Global words ({@link KVM_TDX}). */
  readonly global: Addr;
  /** CPU 0's line ({@link KVM_TDX_CPU}). */
  readonly cpu: Addr;
  /** TD vCPU 0's line ({@link KVM_TDX_VCPU}); one TD vCPU per CPU. */
  readonly vcpu: Addr;
}

/**
 * The words every table of a TDX host with `nrCpus` CPUs in `nrPkgs` packages takes (hotplug,
 * VMX, KVM enabling, the module, the host's TDX words, a SEAMCALL log of `logCapacity` records,
 * KVM's TDX words), each table on its own lines, and where each one is once the area starts at a
 * word `base` (scenario scratch now; a machine-layout region later). Throws EMU_ERR_BAD_PARAM
 * naming `nrCpus` or `nrPkgs` when out of range.
 * @emulator
 */
export function tdxHostArea(nrCpus: number, nrPkgs: number, logCapacity: number): { words: number; placesAt(base: Addr): TdxPlaces } {
  cpuhpPlaces(nrCpus, 0 as Addr, 0 as Addr); // validates nrCpus
  if (!Number.isInteger(nrPkgs) || nrPkgs < 1 || nrPkgs > nrCpus) throw badParam('nrPkgs', `${nrPkgs} (must be an integer in 1..${nrCpus})`);
  const line = nrCpus * PER_CPU_WORDS;
  const { at, words } = planScratch({
    hpGlobal: CPUHP_GLOBAL_WORDS,
    hpCpu: line,
    virtGlobal: 1,
    virtCpu: line,
    kvmGlobal: KVM_VIRT_WORDS,
    kvmCpu: line,
    seam: TDX_SEAM_WORDS,
    lp: line,
    vp: line,
    host: TDX_HOST_WORDS,
    hostCpu: line,
    log: tdxLogWords(logCapacity),
    kvmTdx: KVM_TDX_WORDS,
    kvmTdxCpu: line,
    kvmTdxVcpu: line,
  });
  const placesAt = (base: Addr): TdxPlaces => {
    const a = (k: keyof typeof at) => (base + at[k]) as Addr;
    const cpuhp = cpuhpPlaces(nrCpus, a('hpCpu'), a('hpGlobal'));
    const virt = { nrCpus, cpu: a('virtCpu'), global: a('virtGlobal') };
    const kvm: KvmVirtPlaces = { cpu: a('kvmCpu'), global: a('kvmGlobal'), cpuhp, virt };
    const module: TdxModulePlaces = { nrCpus, nrPkgs, seam: a('seam'), lp: a('lp'), vp: a('vp'), host: a('host'), hostCpu: a('hostCpu'), log: a('log'), logCapacity, cpuhp, virt };
    return { module, kvm, global: a('kvmTdx'), cpu: a('kvmTdxCpu'), vcpu: a('kvmTdxVcpu') };
  };
  return { words, placesAt };
}

/**
 * CPU c's package when `nrCpus` CPUs are split into `nrPkgs` packages of consecutive CPUs.
 * @emulator
 */
export function contiguousPackage(nrCpus: number, nrPkgs: number, cpu: number): number {
  return Math.floor((cpu * nrPkgs) / nrCpus);
}

/**
 * Power on and boot a TDX host: every CPU online in its package, VMX off, KVM and kvm_intel not
 * loaded, the TDX module loaded but uninitialised (MCHECK counted every LP).
 * @emulator
 */
export function tdxHostBoot(acc: Access, b: TdxPlaces): void {
  const m = b.module;
  cpuhpBoot(acc, m.cpuhp, (c) => contiguousPackage(m.nrCpus, m.nrPkgs, c));
  virtCpuBoot(acc, m.virt);
  kvmVirtInit(acc, b.kvm);
  tdxModuleBoot(acc, m);
  kvmTdxInit(acc, b);
}

const gw = (b: TdxPlaces, f: number) => wordAt(b.global, f);
const vcpuCpu = (b: TdxPlaces, v: number) => perCpuWord(b.vcpu, v, KVM_TDX_VCPU.CPU);
const assocWord = (b: TdxPlaces, cpu: number) => perCpuWord(b.cpu, cpu, KVM_TDX_CPU.ASSOCIATED_TDVCPUS);

/**
 * KVM's TDX state at kvm_intel load: enable_tdx set, no cpuhp state, no TD, no TD vCPU loaded.
 * @kvm arch/x86/kvm/vmx/tdx.c (static state) and __tdx_bringup (INIT_LIST_HEAD(&per_cpu(associated_tdvcpus)))
 */
export function kvmTdxInit(acc: Access, b: TdxPlaces): void {
  acc.writeOnce(gw(b, KVM_TDX.ENABLE_TDX), 1, 'kvm-tdx:init');
  acc.writeOnce(gw(b, KVM_TDX.TDX_CPUHP_STATE), 0, 'kvm-tdx:init');
  acc.writeOnce(gw(b, KVM_TDX.NR_CONFIGURED_HKID), 0, 'kvm-tdx:init');
  acc.writeOnce(gw(b, KVM_TDX.TD_HKID), -1, 'kvm-tdx:init');
  acc.writeOnce(gw(b, KVM_TDX.WARNINGS), 0, 'kvm-tdx:init');
  for (let c = 0; c < b.module.nrCpus; c++) {
    acc.writeOnce(assocWord(b, c), 0, 'kvm-tdx:init');
    acc.writeOnce(vcpuCpu(b, c), -1, 'kvm-tdx:init');
  }
}

/**
 * enable_tdx now.
 * @kvm arch/x86/kvm/vmx/tdx.c enable_tdx
 */
export function tdxEnabled(acc: Access, b: TdxPlaces): boolean {
  return acc.readOnce(gw(b, KVM_TDX.ENABLE_TDX), 'kvm-tdx:enable-read') !== 0;
}

/**
 * nr_configured_hkid now.
 * @kvm arch/x86/kvm/vmx/tdx.c nr_configured_hkid
 */
export function tdxNrConfiguredHkid(acc: Access, b: TdxPlaces): number {
  return acc.readOnce(gw(b, KVM_TDX.NR_CONFIGURED_HKID), 'kvm-tdx:nr-hkid-read');
}

function warn(acc: Access, b: TdxPlaces): void {
  acc.atomicAdd(gw(b, KVM_TDX.WARNINGS), 1, 'kvm-tdx:warn');
}

/**
 * The TDX cpuhp startup callback (runs on `cpu`, which KVM's state already put post-VMXON):
 * WARN if CR4.VMXE is clear, then tdx_cpu_enable with interrupts off.
 * @kvm arch/x86/kvm/vmx/tdx.c tdx_online_cpu
 */
export function tdxOnlineCpu(acc: Access, b: TdxPlaces, cpu: number): number {
  if (!cr4Vmxe(acc, b.module.virt, cpu)) warn(acc, b); // WARN_ON_ONCE(!(cr4_read_shadow() & X86_CR4_VMXE))
  return tdxCpuEnable(acc, b.module, cpu);
}

/**
 * The TDX cpuhp teardown callback: while any HKID is configured, refuse (-EBUSY) to offline the
 * last online CPU of a package — reclaiming a TD's HKID needs TDH.PHYMEM.CACHE.WB on a CPU of
 * every package.
 * @kvm arch/x86/kvm/vmx/tdx.c tdx_offline_cpu
 */
export function tdxOfflineCpu(acc: Access, b: TdxPlaces, cpu: number, patches: PatchSet = NO_PATCHES): number {
  if (patches.has(PATCH_TDX_OFFLINE_CPU_NO_HKID_CHECK)) return 0;
  if (tdxNrConfiguredHkid(acc, b) === 0) return 0;
  const pl = b.module.cpuhp;
  const pkg = topologyPhysicalPackageId(acc, pl, cpu);
  for (const i of onlineCpus(acc, pl)) if (i !== cpu && topologyPhysicalPackageId(acc, pl, i) === pkg) return 0;
  return -ERRNO.EBUSY; // "TDX requires all packages to have an online CPU. Delete all TDs in order to offline all CPUs of a package."
}

/**
 * "kvm/cpu/tdx:online" as 6.16 registers it.
 * @kvm arch/x86/kvm/vmx/tdx.c __do_tdx_bringup (cpuhp_setup_state_cpuslocked(CPUHP_AP_ONLINE_DYN, "kvm/cpu/tdx:online", tdx_online_cpu, tdx_offline_cpu))
 */
export function tdxCpuhpStep(acc: Access, b: TdxPlaces, patches: PatchSet = NO_PATCHES): CpuhpStep {
  return { name: 'kvm/cpu/tdx:online', startup: (cpu) => tdxOnlineCpu(acc, b, cpu), teardown: (cpu) => tdxOfflineCpu(acc, b, cpu, patches) };
}

/** Delete the vCPU from its CPU's list, then (smp_wmb) vcpu->cpu = -1. */
function tdxDisassociateVp(acc: Access, b: TdxPlaces, v: number, cpu: number): void {
  acc.atomicAnd(assocWord(b, cpu), ~(1 << v), 'kvm-tdx:assoc-del');
  // Pairs with the smp_rmb() in tdxVcpuRun(): the list is updated before vcpu->cpu = -1.
  acc.writeOnce(vcpuCpu(b, v), -1, 'kvm-tdx:vcpu-cpu-clear');
}

/**
 * On `cpu` (interrupts off): TDH.VP.FLUSH the TD vCPU if it is still associated here, then take
 * it off the CPU's list. Returns the SEAMCALL error (0 if none or TDX_VCPU_NOT_ASSOCIATED).
 * @kvm arch/x86/kvm/vmx/tdx.c tdx_flush_vp ("Task migration can race with CPU offlining")
 */
export function tdxFlushVp(acc: Access, b: TdxPlaces, v: number, cpu: number): number {
  if (acc.readOnce(vcpuCpu(b, v), 'kvm-tdx:vcpu-cpu-read') !== cpu) return 0;
  const st = seamcall(acc, b.module, cpu, TdxLeaf.VP_FLUSH, v);
  tdxDisassociateVp(acc, b, v, cpu);
  return st === TDX_STATUS.TDX_VCPU_NOT_ASSOCIATED ? 0 : st;
}

/**
 * On `cpu`: flush every TD vCPU associated with it (before VMXOFF).
 * @kvm arch/x86/kvm/vmx/tdx.c tdx_disable_virtualization_cpu
 */
export function tdxDisableVirtualizationCpu(acc: Access, b: TdxPlaces, cpu: number): void {
  const m = acc.readOnce(assocWord(b, cpu), 'kvm-tdx:assoc-read');
  for (let v = 0; v < b.module.nrCpus; v++) if (m & (1 << v) && tdxFlushVp(acc, b, v, cpu) !== 0) warn(acc, b);
}

/**
 * The vendor hooks of a TDX-capable host: disabling flushes the CPU's TD vCPUs first, then
 * VMXOFF; the emergency path is VMX's (VMCLEAR + VMXOFF, no TDH.VP.FLUSH).
 * @kvm arch/x86/kvm/vmx/main.c vt_x86_ops (vmx_enable_virtualization_cpu, vt_disable_virtualization_cpu, vmx_emergency_disable_virtualization_cpu)
 */
export function vtVirtOps(acc: Access, b: TdxPlaces): KvmVirtOps {
  return {
    enableVirtualizationCpu: (cpu) => vmxEnableVirtualizationCpu(acc, b.kvm, cpu),
    disableVirtualizationCpu: (cpu) => {
      if (tdxEnabled(acc, b)) tdxDisableVirtualizationCpu(acc, b, cpu);
      vmxDisableVirtualizationCpu(acc, b.kvm, cpu);
    },
    emergencyDisableVirtualizationCpu: (cpu) => vmxEmergencyDisableVirtualizationCpu(acc, b.kvm, cpu),
  };
}

/**
 * Register "kvm/cpu/tdx:online" (runs tdx_cpu_enable on every online CPU) and initialise the
 * module; on failure remove the state again. The caller holds the hotplug lock.
 * @kvm arch/x86/kvm/vmx/tdx.c __do_tdx_bringup (__do_tdx_cleanup on failure)
 */
export function doTdxBringup(acc: Access, b: TdxPlaces, cbs: CpuhpCallbacks, callerCpu: number): number {
  const st = cpuhpSetupStateCpuslocked(acc, b.module.cpuhp, CPUHP.AP_ONLINE_DYN, TDX_CPUHP_ONLINE, cbs);
  if (st < 0) return st;
  acc.writeOnce(gw(b, KVM_TDX.TDX_CPUHP_STATE), st, 'kvm-tdx:cpuhp-state');
  const r = tdxEnable(acc, b.module, callerCpu);
  if (r !== 0) {
    cpuhpRemoveStateCpuslocked(acc, b.module.cpuhp, st, cbs, false);
    acc.writeOnce(gw(b, KVM_TDX.TDX_CPUHP_STATE), 0, 'kvm-tdx:cpuhp-state');
  }
  return r;
}

/**
 * Bring TDX up at kvm_intel load (6.16): take a virtualization reference (VMXON everywhere, kept
 * while TDX is enabled), then under the hotplug lock register the TDX cpuhp state and run
 * tdx_enable (without the lock under {@link PATCH_TDX_BRINGUP_NO_HOTPLUG_LOCK}). On failure drop
 * the reference and clear enable_tdx.
 * @kvm arch/x86/kvm/vmx/tdx.c tdx_bringup (__tdx_bringup)
 */
export function tdxBringup(acc: Access, b: TdxPlaces, ops: KvmVirtOps, cbs: CpuhpCallbacks, callerCpu: number, patches: PatchSet = NO_PATCHES): number {
  let r = kvmEnableVirtualization(acc, b.kvm, ops, cbs);
  if (r === 0) {
    const bringup = () => doTdxBringup(acc, b, cbs, callerCpu);
    r = patches.has(PATCH_TDX_BRINGUP_NO_HOTPLUG_LOCK) ? bringup() : withCpusReadLock(acc, b.module.cpuhp, bringup);
    if (r !== 0) kvmDisableVirtualization(acc, b.kvm, ops, cbs);
  }
  if (r !== 0) acc.writeOnce(gw(b, KVM_TDX.ENABLE_TDX), 0, 'kvm-tdx:enable-clear');
  return r;
}

/**
 * The TDX v19 bring-up (seed 004), under cpus_read_lock: on every online CPU VMXON and
 * tdx_cpu_enable (tdx_on), then tdx_enable, then VMXOFF on every CPU VMXON'd here (vmx_off).
 * VMX is on afterwards only while a VM holds a reference (hardware_enable_all). enable_tdx is
 * cleared on failure.
 * @kvm arch/x86/kvm/vmx/tdx.c tdx_hardware_setup (TDX v19: tdx_on / vmx_off / tdx_module_setup)
 */
export function tdxHardwareSetupV19(acc: Access, b: TdxPlaces, callerCpu: number): number {
  const pl = b.module.cpuhp;
  let enabled = 0;
  let err = 0;
  let r: number;
  cpusReadLock(acc, pl);
  try {
    onEachCpu(acc, pl, (cpu) => {
      let e = vmxEnableVirtualizationCpu(acc, b.kvm, cpu);
      if (e === 0) {
        enabled |= 1 << cpu;
        e = tdxCpuEnable(acc, b.module, cpu);
      }
      if (e !== 0) err = e;
    });
    r = err === 0 ? tdxEnable(acc, b.module, callerCpu) : -ERRNO.EIO;
    onEachCpu(acc, pl, (cpu) => {
      if (enabled & (1 << cpu)) vmxDisableVirtualizationCpu(acc, b.kvm, cpu);
    });
  } finally {
    cpusReadUnlock(acc, pl);
  }
  if (r !== 0) acc.writeOnce(gw(b, KVM_TDX.ENABLE_TDX), 0, 'kvm-tdx:enable-clear');
  return r;
}

/**
 * The cpuhp callbacks of a TDX host as thread `acc` runs them: 6.16 — KVM's VMXON state, then
 * "kvm/cpu/tdx:online"; under {@link PATCH_TDX_V19_BRINGUP} — only KVM's pre-6.10 state
 * (VMXON only while a VM holds a reference). `ops` are the vendor hooks ({@link vtVirtOps}: in
 * v19 too `.hardware_enable` is plain VMXON).
 * @kvm kernel/cpu.c cpuhp_invoke_callback (CPUHP_AP_KVM_ONLINE, "kvm/cpu/tdx:online")
 */
export function tdxHostCpuhpCallbacks(acc: Access, b: TdxPlaces, ops: KvmVirtOps, patches: PatchSet = NO_PATCHES): CpuhpCallbacks {
  if (patches.has(PATCH_TDX_V19_BRINGUP)) return new Map([[KVM_CPUHP_ONLINE_V69, kvmCpuhpStepV69(acc, b.kvm, ops)]]);
  return new Map([
    [KVM_CPUHP_ONLINE, kvmCpuhpStep(acc, b.kvm, ops)],
    [TDX_CPUHP_ONLINE, tdxCpuhpStep(acc, b, patches)],
  ]);
}

/**
 * kvm_intel's module init on `callerCpu`: the TDX bring-up, then kvm_init (/dev/kvm last).
 * 6.16: tdx_bringup, then kvm_init_virtualization (the enable-at-load reference). Under
 * {@link PATCH_TDX_V19_BRINGUP}: tdx_hardware_setup (v19), the emergency-disable callback
 * registered by vmx_init after kvm_x86_vendor_init, and the pre-6.10 kvm_init (CPUHP_AP_KVM_ONLINE
 * registered without calls). Returns the bring-up's result (0: TDX on).
 * @kvm arch/x86/kvm/vmx/main.c vt_init (6.16) / vmx_init (v6.9 with TDX v19)
 */
export function vtInit(acc: Access, b: TdxPlaces, ops: KvmVirtOps, cbs: CpuhpCallbacks, callerCpu: number, patches: PatchSet = NO_PATCHES): number {
  if (patches.has(PATCH_TDX_V19_BRINGUP)) {
    const r = tdxHardwareSetupV19(acc, b, callerCpu);
    cpuEmergencyRegisterVirtCallback(acc, b.kvm.virt, VMX_EMERGENCY_CALLBACK);
    kvmInitV69(acc, b.kvm, cbs);
    return r;
  }
  const r = tdxBringup(acc, b, ops, cbs, callerCpu, patches);
  kvmInitVirtualization(acc, b.kvm, ops, cbs);
  return r;
}

/**
 * KVM_CREATE_VM's virtualization reference (6.16 kvm_enable_virtualization; pre-6.10
 * hardware_enable_all under {@link PATCH_TDX_V19_BRINGUP}).
 * @kvm virt/kvm/kvm_main.c kvm_create_vm
 */
export function kvmCreateVmVirt(acc: Access, b: TdxPlaces, ops: KvmVirtOps, cbs: CpuhpCallbacks, patches: PatchSet = NO_PATCHES): number {
  return patches.has(PATCH_TDX_V19_BRINGUP) ? hardwareEnableAll(acc, b.kvm, ops) : kvmEnableVirtualization(acc, b.kvm, ops, cbs);
}

/**
 * kvm_destroy_vm's virtualization reference drop (6.16 kvm_disable_virtualization; pre-6.10
 * hardware_disable_all under {@link PATCH_TDX_V19_BRINGUP}).
 * @kvm virt/kvm/kvm_main.c kvm_destroy_vm
 */
export function kvmDestroyVmVirt(acc: Access, b: TdxPlaces, ops: KvmVirtOps, cbs: CpuhpCallbacks, patches: PatchSet = NO_PATCHES): void {
  if (patches.has(PATCH_TDX_V19_BRINGUP)) hardwareDisableAll(acc, b.kvm, ops);
  else kvmDisableVirtualization(acc, b.kvm, ops, cbs);
}

/** The first online CPU of every package (the hotplug lock is held). */
function firstCpuPerPackage(acc: Access, b: TdxPlaces): number[] {
  const pl = b.module.cpuhp;
  let seen = 0;
  const out: number[] = [];
  for (const c of onlineCpus(acc, pl)) {
    const bit = 1 << topologyPhysicalPackageId(acc, pl, c);
    if (seen & bit) continue;
    seen |= bit;
    out.push(c);
  }
  return out;
}

/**
 * Create the TD's key: allocate an HKID and count it in nr_configured_hkid (before the hotplug
 * lock, so tdx_offline_cpu sees it), then under cpus_read_lock: every package must have an online
 * CPU (-EIO otherwise), TDH.MNG.CREATE under tdx_lock, and TDH.MNG.KEY.CONFIG on the first online
 * CPU of each package. On failure the HKID is released again. `callerCpu` runs the VMM thread.
 * @kvm arch/x86/kvm/vmx/tdx.c __tdx_td_init (tdx_guest_keyid_alloc, atomic_inc(&nr_configured_hkid), tdh_mng_create, tdx_do_tdh_mng_key_config)
 */
export function tdxTdInit(acc: Access, b: TdxPlaces, callerCpu: number): number {
  const hkid = tdxGuestKeyidAlloc(acc, b.module);
  if (hkid < 0) return hkid;
  acc.writeOnce(gw(b, KVM_TDX.TD_HKID), hkid, 'kvm-tdx:hkid-set');
  acc.atomicAdd(gw(b, KVM_TDX.NR_CONFIGURED_HKID), 1, 'kvm-tdx:nr-hkid-inc');
  const pl = b.module.cpuhp;
  let r: number;
  let created = false;
  cpusReadLock(acc, pl);
  try {
    const firsts = firstCpuPerPackage(acc, b);
    if (firsts.length !== b.module.nrPkgs) {
      r = -ERRNO.EIO; // "All packages need to have online CPU to create TD. Online CPU and retry."
    } else {
      const lock = gw(b, KVM_TDX.TDX_LOCK);
      mutexLock(acc, lock, 'tdx_lock');
      try {
        r = onCpu(acc, pl, callerCpu, () => seamcallPrerr(seamcall(acc, b.module, callerCpu, TdxLeaf.MNG_CREATE, hkid)));
      } finally {
        mutexUnlock(acc, lock, 'tdx_lock');
      }
      created = r === 0;
      for (const c of created ? firsts : []) {
        r = smpCallFunctionSingle(acc, pl, c, () => seamcallPrerr(seamcall(acc, b.module, c, TdxLeaf.MNG_KEY_CONFIG)));
        if (r !== 0) {
          warn(acc, b);
          break;
        }
      }
    }
  } finally {
    cpusReadUnlock(acc, pl);
  }
  if (r !== 0) {
    if (created) tdxMmuReleaseHkid(acc, b, callerCpu);
    else tdxHkidFree(acc, b);
  }
  return r;
}

/** The kernel's tdx_hkid_free: return the KeyID, forget it, drop nr_configured_hkid. */
function tdxHkidFree(acc: Access, b: TdxPlaces): void {
  const h = gw(b, KVM_TDX.TD_HKID);
  tdxGuestKeyidFree(acc, b.module, acc.readOnce(h, 'kvm-tdx:hkid-read'));
  acc.writeOnce(h, -1, 'kvm-tdx:hkid-clear');
  acc.atomicAdd(gw(b, KVM_TDX.NR_CONFIGURED_HKID), -1, 'kvm-tdx:nr-hkid-dec');
}

/**
 * Run TD vCPU `v` once on CPU `v` (the vCPU thread is scheduled there): if the CPU is not active,
 * nothing happens (null). Otherwise, on the CPU: tdx_vcpu_load (associate the vCPU with it) and
 * TDH.VP.ENTER; returns the SEAMCALL status.
 * @kvm arch/x86/kvm/vmx/tdx.c tdx_vcpu_load + tdx_vcpu_run (tdh_vp_enter)
 */
export function tdxVcpuRun(acc: Access, b: TdxPlaces, v: number): number | null {
  const cpu = v;
  const pl = b.module.cpuhp;
  return onCpu(acc, pl, cpu, () => {
    if (!cpuActive(acc, pl, cpu)) return null;
    if (acc.readOnce(vcpuCpu(b, v), 'kvm-tdx:vcpu-cpu-read') !== cpu) {
      // Pairs with the smp_wmb() in tdxDisassociateVp(): vcpu->cpu is read before the list.
      acc.atomicOr(assocWord(b, cpu), 1 << v, 'kvm-tdx:assoc-add');
      acc.writeOnce(vcpuCpu(b, v), cpu, 'kvm-tdx:vcpu-cpu-set');
    }
    return seamcall(acc, b.module, cpu, TdxLeaf.VP_ENTER, v);
  });
}

/** Outcome of releasing the TD's HKID. */
export interface HkidRelease {
  /** The HKID went back to the pool. */
  released: boolean;
  /** Status of TDH.MNG.KEY.FREEID (or of the step that stopped the release). */
  status: number;
}

/**
 * Release the TD's HKID at destruction, under cpus_read_lock: flush every TD vCPU on its CPU,
 * then under tdx_lock TDH.MNG.VPFLUSHDONE, TDH.PHYMEM.CACHE.WB on the first online CPU of each
 * package, TDH.MNG.KEY.FREEID — which fails (HKID leaked) unless every package's caches were
 * written back.
 * @kvm arch/x86/kvm/vmx/tdx.c tdx_mmu_release_hkid
 */
export function tdxMmuReleaseHkid(acc: Access, b: TdxPlaces, callerCpu: number): HkidRelease {
  const pl = b.module.cpuhp;
  if (acc.readOnce(gw(b, KVM_TDX.TD_HKID), 'kvm-tdx:hkid-read') < 0) return { released: false, status: TDX_STATUS.TDX_SUCCESS };
  cpusReadLock(acc, pl);
  try {
    for (let v = 0; v < b.module.nrCpus; v++) {
      const cpu = acc.readOnce(vcpuCpu(b, v), 'kvm-tdx:vcpu-cpu-read');
      if (cpu >= 0 && smpCallFunctionSingle(acc, pl, cpu, () => tdxFlushVp(acc, b, v, cpu)) !== 0) warn(acc, b); // KVM_BUG_ON(arg.err)
    }
    const lock = gw(b, KVM_TDX.TDX_LOCK);
    mutexLock(acc, lock, 'tdx_lock');
    try {
      const done = onCpu(acc, pl, callerCpu, () => seamcall(acc, b.module, callerCpu, TdxLeaf.MNG_VPFLUSHDONE));
      if (done !== TDX_STATUS.TDX_SUCCESS) {
        warn(acc, b);
        return { released: false, status: done };
      }
      for (const c of firstCpuPerPackage(acc, b)) smpCallFunctionSingle(acc, pl, c, () => seamcall(acc, b.module, c, TdxLeaf.PHYMEM_CACHE_WB));
      const st = onCpu(acc, pl, callerCpu, () => seamcall(acc, b.module, callerCpu, TdxLeaf.MNG_KEY_FREEID));
      if (st !== TDX_STATUS.TDX_SUCCESS) {
        warn(acc, b); // "tdh_mng_key_freeid() failed. HKID %d is leaked."
        return { released: false, status: st };
      }
      tdxHkidFree(acc, b);
      return { released: true, status: st };
    } finally {
      mutexUnlock(acc, lock, 'tdx_lock');
    }
  } finally {
    cpusReadUnlock(acc, pl);
  }
}

/**
 * WARN_ON_ONCE / KVM_BUG_ON hits so far (bookkeeping read).
 * @emulator
 */
export function tdxWarnings(acc: Access, b: TdxPlaces): number {
  return acc.peek(gw(b, KVM_TDX.WARNINGS));
}
