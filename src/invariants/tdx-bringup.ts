/**
 * TDX bring-up invariants (domain notes 8.4 TB-1, TB-2, TB-4 and 11.12), pure functions over
 * plain records a scenario gathers: the SEAMCALLs made (with the calling CPU's state at entry),
 * the TDH.SYS.CONFIG calls (with which CPUs were online and initialised at that instant), the
 * host at a quiescent point, and samples of which packages hold a TD's key and which have an
 * online CPU.
 */
import type { Violation } from './checks.js';

/** One SEAMCALL and the calling CPU's state when it executed it. */
export interface SeamcallRecord {
  cpu: number;
  /** ABI name of the leaf, e.g. `TDH.SYS.LP.INIT`. */
  leaf: string;
  /** Who made it (a scenario role). */
  by: string;
  /** CR4.VMXE was set. */
  vmxe: boolean;
  /** The CPU was in VMX operation (post-VMXON). */
  inVmx: boolean;
  /** The LP had completed TDH.SYS.LP.INIT before this call. */
  lpInit: boolean;
  /** Completion status name, e.g. `TDX_SUCCESS`, `TDX_SEAMCALL_UD`. */
  status: string;
}

/** One TDH.SYS.CONFIG and the host at that instant. */
export interface SysConfigRecord {
  cpu: number;
  by: string;
  /** CPUs online at the call. */
  online: readonly number[];
  /** CPUs whose LP had completed TDH.SYS.LP.INIT at the call. */
  lpInitialized: readonly number[];
  status: string;
}

/** A CPU at a quiescent point (no actor running). */
export interface QuiescentCpu {
  cpu: number;
  online: boolean;
  vmxe: boolean;
  inVmx: boolean;
}

/** What one round of module bring-up, hotplug and TD use left behind. */
export interface TdxBringupRound {
  seamcalls: readonly SeamcallRecord[];
  configs: readonly SysConfigRecord[];
  /** Successful TDH.SYS.INIT and TDH.SYS.CONFIG executions. */
  sysInitRuns: number;
  sysConfigRuns: number;
  /** The host after every actor finished (null if not sampled). */
  quiescent: { usageCount: number; cpus: readonly QuiescentCpu[] } | null;
}

/** Leaves that may run before the LP's own TDH.SYS.LP.INIT (they are how it gets initialised). */
const BEFORE_LP_INIT = new Set(['TDH.SYS.INIT', 'TDH.SYS.LP.INIT']);

/**
 * A SEAMCALL on CPU c ⇒ c is post-VMXON (CR4.VMXE set, in VMX operation) and — for every leaf
 * but TDH.SYS.INIT and TDH.SYS.LP.INIT — c's LP has run TDH.SYS.LP.INIT.
 * @kvm arch/x86/virt/vmx/tdx/tdx.c tdx_enable ("the caller has done both VMXON and tdx_cpu_enable() on all online cpus") and seamcall (#UD unless post-VMXON)
 */
export function tdxSeamcallOnReadyCpu(r: TdxBringupRound): Violation[] {
  const out: Violation[] = [];
  for (const s of r.seamcalls) {
    if (!s.vmxe || !s.inVmx) {
      out.push({ invariant: 'tdxSeamcallOnReadyCpu', message: `${s.leaf} on CPU${s.cpu} (by ${s.by}) while CPU${s.cpu} was not post-VMXON (CR4.VMXE=${s.vmxe ? 1 : 0}, VMX operation=${s.inVmx ? 1 : 0}): ${s.status}` });
    } else if (!s.lpInit && !BEFORE_LP_INIT.has(s.leaf)) {
      out.push({ invariant: 'tdxSeamcallOnReadyCpu', message: `${s.leaf} on CPU${s.cpu} (by ${s.by}) before TDH.SYS.LP.INIT ran on that LP: ${s.status}` });
    }
  }
  return out;
}

/**
 * TDH.SYS.CONFIG ⇒ every CPU online at that instant has completed TDH.SYS.LP.INIT (the hotplug
 * lock keeps the online set equal to the set tdx_cpu_enable ran on).
 * @kvm arch/x86/virt/vmx/tdx/tdx.c tdx_enable (lockdep_assert_cpus_held) and intel/tdx-module tdh_sys_config (num_of_init_lps < num_of_lps → TDX_SYS_CONFIG_NOT_PENDING)
 */
export function tdxConfigAllOnlineLpsInit(r: TdxBringupRound): Violation[] {
  const out: Violation[] = [];
  for (const c of r.configs) {
    const init = new Set(c.lpInitialized);
    const missing = c.online.filter((cpu) => !init.has(cpu));
    if (missing.length > 0) {
      out.push({ invariant: 'tdxConfigAllOnlineLpsInit', message: `TDH.SYS.CONFIG on CPU${c.cpu} (by ${c.by}) while CPU${missing.join(', CPU')} ${missing.length > 1 ? 'were' : 'was'} online without TDH.SYS.LP.INIT: ${c.status}` });
    }
  }
  return out;
}

/**
 * At a quiescent point: kvm_usage_count > 0 ⇒ every online CPU is post-VMXON (KVM's cpuhp state
 * covers every CPU that came up while virtualization was enabled).
 * @kvm virt/kvm/kvm_main.c kvm_enable_virtualization / kvm_online_cpu
 */
export function kvmOnlineCpusVmxOn(r: TdxBringupRound): Violation[] {
  const q = r.quiescent;
  if (!q || q.usageCount === 0) return [];
  return q.cpus
    .filter((c) => c.online && !(c.vmxe && c.inVmx))
    .map((c) => ({ invariant: 'kvmOnlineCpusVmxOn', message: `CPU${c.cpu} is online with kvm_usage_count = ${q.usageCount} but not post-VMXON (CR4.VMXE=${c.vmxe ? 1 : 0}, VMX operation=${c.inVmx ? 1 : 0})` }));
}

/**
 * TDH.SYS.INIT and TDH.SYS.CONFIG each execute (successfully) at most once.
 * @kvm arch/x86/virt/vmx/tdx/tdx.c try_init_module_global (sysinit_done under sysinit_lock) and tdx_enable (tdx_module_status under tdx_module_lock)
 */
export function tdxInitOnce(r: TdxBringupRound): Violation[] {
  const out: Violation[] = [];
  if (r.sysInitRuns > 1) out.push({ invariant: 'tdxInitOnce', message: `TDH.SYS.INIT executed ${r.sysInitRuns} times` });
  if (r.sysConfigRuns > 1) out.push({ invariant: 'tdxInitOnce', message: `TDH.SYS.CONFIG executed ${r.sysConfigRuns} times` });
  return out;
}

/** A sample of a TD's key and the online packages. */
export interface TdPackageSample {
  /** Where it was taken (e.g. `after cpu_down(CPU3)`). */
  when: string;
  /** Packages whose memory controller holds the TD's key (bit = package). */
  keyPackages: number;
  /** Packages with at least one online CPU (bit = package). */
  onlinePackages: number;
  nrPackages: number;
}

/** What a round of TD life against CPU offlining left behind. */
export interface TdOfflineRound {
  samples: readonly TdPackageSample[];
  /** How the HKID release at destruction ended, if the TD was destroyed. */
  release: { released: boolean; status: string } | null;
}

function pkgList(mask: number, n: number): number[] {
  const out: number[] = [];
  for (let p = 0; p < n; p++) if (mask & (1 << p)) out.push(p);
  return out;
}

/**
 * A TD exists (its HKID's key is programmed on some package) ⇒ every package has an online CPU
 * (reclaiming the HKID needs TDH.PHYMEM.CACHE.WB on a CPU of every package).
 * @kvm arch/x86/kvm/vmx/tdx.c tdx_offline_cpu (-EBUSY for the last online CPU of a package while nr_configured_hkid > 0)
 */
export function tdxTdKeepsPackagesOnline(r: TdOfflineRound): Violation[] {
  const out: Violation[] = [];
  for (const s of r.samples) {
    const all = (1 << s.nrPackages) - 1;
    if (s.keyPackages === 0 || (s.onlinePackages & all) === all) continue;
    const dark = pkgList(all & ~s.onlinePackages, s.nrPackages);
    const leak = r.release && !r.release.released ? `; at destruction the HKID could not be reclaimed (${r.release.status}): leaked` : '';
    out.push({ invariant: 'tdxTdKeepsPackagesOnline', message: `a TD holds its key on package(s) ${pkgList(s.keyPackages, s.nrPackages).join(', ')} while package ${dark.join(', ')} has no online CPU (${s.when})${leak}` });
  }
  return out;
}
