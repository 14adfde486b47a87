/**
 * TD vCPU entry/exit and the pCPU's host state (domain notes 9.1; seed 002).
 *
 * What TDH.VP.ENTER and the TD exit leave in the registers (TDX module 1.5 td_exit.c:
 * initialize_extended_state, load_vmm_state_before_td_exit, then SEAMRET loads DEBUGCTL and DR7
 * from the SEAMCALL VMCS guest fields):
 *
 * | register                    | after the TD exit                                          |
 * |-----------------------------|------------------------------------------------------------|
 * | DR0-DR3, DR6                | RESET values (written only if the guest's value differs)   |
 * | DR7                         | 400H (SEAM VMCS guest DR7 INIT value)                      |
 * | IA32_DEBUGCTL               | KVM's value at SEAMCALL, only bits 1, 12, 14 kept          |
 * | XCR0 / IA32_XSS             | the TD's XFAM-derived values                                |
 * | PKRU                        | 0                                                          |
 * | KERNEL_GS_BASE, STAR, LSTAR, TSC_AUX | 0; SYSCALL_MASK (FMASK) 20200H                    |
 * | IA32_TSX_CTRL               | TD with TSX: 0; else the host's value restored             |
 * | IA32_UMWAIT_CONTROL         | TD with WAITPKG: the guest's value; else untouched         |
 *
 * KVM's side, in the kernel's order (x86.c vcpu_enter_guest around vmx/tdx.c tdx_vcpu_run):
 * prepare_switch_to_guest saves the host KERNEL_GS_BASE (once per load); with IRQs off
 * vcpu_enter_guest snapshots DEBUGCTL; tdx_vcpu_run: tdx_vcpu_enter_exit (TDH.VP.ENTER,
 * vmx_handle_nmi) → DEBUGCTL restore → tdx_load_host_xsave_state → guest_entered = true; at
 * vcpu_put (preemption or the end of KVM_RUN) tdx_prepare_switch_to_host writes KERNEL_GS_BASE
 * back and, if the guest was entered, tells the user-return cache what the module left in the
 * SYSCALL MSRs and TSC_AUX, so the notifier writes the host values before user mode.
 *
 * DEBUGCTL follows the 6.17 kernel ("KVM: TDX: Use kvm_arch_vcpu.host_debugctl to restore the
 * host's DEBUGCTL"): the restored value is vcpu->arch.host_debugctl, snapshotted with IRQs off
 * on every entry. 6.16 restored vt->host_debugctlmsr, saved once per vcpu_load with IRQs on,
 * which goes stale when perf reprograms DEBUGCTL in between.
 *
 * State lives in word blocks found through {@link TdxHostStatePlaces}: a TD vCPU's bookkeeping
 * ({@link TD_HS}) and the TDX module's per-LP words ({@link TDX_LP}), besides the pCPU's
 * registers, user-return cache and host software state (src/host).
 */
import type { Access } from '../../mem/access.js';
import type { Addr, PcpuId, VcpuId } from '../../mem/layout.js';
import {
  DEBUGCTLMSR_BTF,
  DEBUGCTLMSR_FREEZE_IN_SMM,
  DEBUGCTLMSR_FREEZE_PERFMON_ON_PMI,
  DR6_RESERVED,
  DR7_FIXED_1,
  MSR_LSTAR,
  MSR_STAR,
  MSR_SYSCALL_MASK,
  MSR_TSC_AUX,
  XFEATURE_MASK,
  checkU64,
  peekU64,
  pokeU64,
  readHostReg,
  readU64,
  writeHostReg,
  writeU64,
  type HostRegName,
} from '../../host/msr.js';
import { kvmFindUserReturnMsr, kvmUserReturnMsrUpdateCache, type UretPlaces } from '../../host/uret.js';
import { definePatch, NO_PATCHES, type PatchSet } from '../patches.js';
import { KVM_HOST_XCR0, KVM_HOST_XSS, KVM_SUPPORTED_XCR0, KVM_SUPPORTED_XSS, getDebugctlmsr, taskGsbase, updateDebugctlmsr, type HostPoint, type HostSwPlaces } from '../../host/host-state.js';

/** Word offsets of a TD vCPU's host-state bookkeeping. @kvm arch/x86/kvm/vmx/common.h struct vcpu_vt; arch/x86/kvm/vmx/tdx.h struct vcpu_tdx; arch/x86/include/asm/kvm_host.h struct kvm_vcpu_arch */
export const TD_HS = {
  /** vcpu_vt.guest_state_loaded. */
  GUEST_STATE_LOADED: 0,
  /** vcpu_tdx.guest_entered. */
  GUEST_ENTERED: 1,
  /** vcpu->cpu (-1 when not loaded). */
  CPU: 2,
  /** Index of the vCPU thread's task. */
  TASK: 3,
  /** vcpu_vt.msr_host_kernel_gs_base (lo, hi). */
  MSR_HOST_KERNEL_GS_BASE: 4,
  /** vcpu->arch.host_debugctl (lo, hi). */
  HOST_DEBUGCTL: 6,
  /** vcpu->arch.host_pkru (lo, hi). */
  HOST_PKRU: 8,
} as const;
/** Words of a TD vCPU's block. @emulator */
export const TD_HS_BLOCK_WORDS = 16;

/** Word offsets of the TDX module's per-LP state used here. @kvm arch/x86/virt/vmx/tdx/tdx.c (TDX module per-LP state: SEAMCALL VMCS, vmm_non_extended_state) */
export const TDX_LP = {
  /** SEAMCALL VMCS guest IA32_DEBUGCTL: KVM's DEBUGCTL saved by SEAMCALL (lo, hi). */
  SEAMCALL_DEBUGCTL: 0,
  /** vmm_non_extended_state.ia32_tsx_ctrl: the host's TSX_CTRL saved at TD entry (lo, hi). */
  VMM_TSX_CTRL: 2,
} as const;
/** Words of a per-LP block. @emulator */
export const TDX_LP_BLOCK_WORDS = 16;

/** Where the TD host-state model finds its blocks. @emulator */
export interface TdxHostStatePlaces extends UretPlaces, HostSwPlaces {
  /** TD vCPU v's bookkeeping ({@link TD_HS}). */
  td(v: VcpuId): Addr;
  /** The TDX module's words for logical processor p ({@link TDX_LP}). */
  tdxLp(p: PcpuId): Addr;
}

/**
 * DEBUGCTL bits the TDX module preserves across a TD run: BTF, FREEZE_PERFMON_ON_PMI, FREEZE_IN_SMM.
 * @kvm arch/x86/kvm/vmx/tdx.c TDX_DEBUGCTL_PRESERVED
 */
export const TDX_DEBUGCTL_PRESERVED = DEBUGCTLMSR_BTF | DEBUGCTLMSR_FREEZE_PERFMON_ON_PMI | DEBUGCTLMSR_FREEZE_IN_SMM;
/** The TDX module's reset value for IA32_FMASK. @kvm arch/x86/kvm/vmx/tdx.c tdx_uret_msrs (MSR_SYSCALL_MASK .defval) */
export const TDX_FMASK_RESET = 0x20200n;
/** What the module writes to IA32_TSX_CTRL while a TD without TSX runs (RTM_DISABLE | TSX_CPUID_CLEAR). @kvm arch/x86/include/asm/msr-index.h TSX_CTRL_RTM_DISABLE, TSX_CTRL_CPUID_CLEAR */
export const TSX_CTRL_DISABLE_VALUE = 3n;
/** XSS-managed (supervisor) XFAM bits in this model. */
const XSS_FEATURES = XFEATURE_MASK.CET_USER | XFEATURE_MASK.CET_KERNEL;

/**
 * The user-return MSRs a TD exit clobbers, with the value the module leaves in each.
 * @kvm arch/x86/kvm/vmx/tdx.c tdx_uret_msrs
 */
export const TDX_URET_MSRS: readonly { reg: HostRegName; msr: number; defval: bigint }[] = [
  { reg: 'SYSCALL_MASK', msr: MSR_SYSCALL_MASK, defval: TDX_FMASK_RESET },
  { reg: 'STAR', msr: MSR_STAR, defval: 0n },
  { reg: 'LSTAR', msr: MSR_LSTAR, defval: 0n },
  { reg: 'TSC_AUX', msr: MSR_TSC_AUX, defval: 0n },
];

/** A TD as its host state sees it: XFAM, TSX and WAITPKG, and the guest's own register values. @kvm arch/x86/kvm/vmx/tdx.c struct kvm_tdx (.xfam) and the TD CPUID */
export interface TdHostConfig {
  /** TD XFAM (XCR0 | XSS features the TD may use). */
  xfam: bigint;
  /** CPUID TSX exposed to the TD (KVM rejects it since "KVM: TDX: Disable support for TSX and WAITPKG"). */
  tsx: boolean;
  /** CPUID WAITPKG exposed to the TD (rejected by KVM likewise). */
  waitpkg: boolean;
  /** What the TD's guest keeps in these registers while it runs. */
  guest: Readonly<Partial<Record<HostRegName, bigint>>>;
}

/**
 * A Linux TD as KVM (6.16+) accepts it: XFAM x87/SSE/AVX/AVX-512, no PKRU or CET state, no TSX,
 * no WAITPKG; the guest kernel's own SYSCALL MSRs, GS base, PKRU and debug state.
 * @kvm arch/x86/kvm/vmx/tdx.c tdx_get_supported_xfam / setup_tdparams (TSX and WAITPKG cleared)
 */
export const TD_LINUX_GUEST: TdHostConfig = {
  xfam: XFEATURE_MASK.FP | XFEATURE_MASK.SSE | XFEATURE_MASK.YMM | XFEATURE_MASK.OPMASK | XFEATURE_MASK.ZMM_HI256 | XFEATURE_MASK.HI16_ZMM,
  tsx: false,
  waitpkg: false,
  guest: {
    DR0: 0n,
    DR1: 0n,
    DR2: 0n,
    DR3: 0n,
    DR6: DR6_RESERVED,
    DR7: DR7_FIXED_1,
    DEBUGCTL: 0n,
    PKRU: 0x55555554n,
    KERNEL_GS_BASE: 0xffff88807fc00000n,
    STAR: 0x0023001000000000n,
    LSTAR: 0xffffffff81c00080n,
    SYSCALL_MASK: 0x257fd5n,
    TSC_AUX: 0n,
    TSX_CTRL: 0n,
    UMWAIT_CONTROL: 0x186a0n,
  },
};

function tdWord(P: TdxHostStatePlaces, v: VcpuId, w: number): Addr {
  return (P.td(v) + w) as Addr;
}
function lpWord(P: TdxHostStatePlaces, p: PcpuId, w: number): Addr {
  return (P.tdxLp(p) + w) as Addr;
}

/**
 * Create a TD vCPU's host-state bookkeeping: nothing loaded, not entered, not on a CPU, run by
 * task `task` (emulator set-up: plain pokes).
 * @kvm arch/x86/kvm/vmx/tdx.c tdx_vcpu_create
 */
export function tdxVcpuHostStateInit(acc: Access, P: TdxHostStatePlaces, v: VcpuId, task: number): void {
  acc.poke(tdWord(P, v, TD_HS.GUEST_STATE_LOADED), 0);
  acc.poke(tdWord(P, v, TD_HS.GUEST_ENTERED), 0);
  acc.poke(tdWord(P, v, TD_HS.CPU), -1);
  acc.poke(tdWord(P, v, TD_HS.TASK), task);
  pokeU64(acc, tdWord(P, v, TD_HS.MSR_HOST_KERNEL_GS_BASE), 0n);
  pokeU64(acc, tdWord(P, v, TD_HS.HOST_DEBUGCTL), 0n);
  pokeU64(acc, tdWord(P, v, TD_HS.HOST_PKRU), 0n);
}

/**
 * The pCPU vCPU v is loaded on, or -1.
 * @kvm include/linux/kvm_host.h struct kvm_vcpu .cpu
 */
export function tdVcpuCpu(acc: Access, P: TdxHostStatePlaces, v: VcpuId): number {
  return acc.readOnce(tdWord(P, v, TD_HS.CPU), 'kvm:vcpu-cpu-read');
}

/**
 * vcpu_load on pCPU p (the sched-in preempt notifier or the start of KVM_RUN): vcpu->cpu = p and
 * the host PKRU snapshot (kvm_arch_vcpu_load); tdx_vcpu_load's TD association is not modelled.
 * @kvm arch/x86/kvm/x86.c kvm_arch_vcpu_load (vcpu->arch.host_pkru = read_pkru())
 */
export function tdxVcpuLoad(acc: Access, P: TdxHostStatePlaces, v: VcpuId, p: PcpuId): void {
  acc.writeOnce(tdWord(P, v, TD_HS.CPU), p, 'kvm:vcpu-cpu-write');
  writeU64(acc, tdWord(P, v, TD_HS.HOST_PKRU), readHostReg(acc, P, p, 'PKRU'), 'kvm:host-pkru-write');
}

/**
 * Save the host state a TD run clobbers and KVM restores lazily: once per load, the current
 * task's inactive GS base (thread.gsbase for a 64-bit mm) as msr_host_kernel_gs_base.
 * @kvm arch/x86/kvm/vmx/tdx.c tdx_prepare_switch_to_guest
 */
export function tdxPrepareSwitchToGuest(acc: Access, P: TdxHostStatePlaces, v: VcpuId): void {
  const loaded = tdWord(P, v, TD_HS.GUEST_STATE_LOADED);
  if (acc.readOnce(loaded, 'tdx:guest-state-loaded-read') !== 0) return;
  const task = acc.readOnce(tdWord(P, v, TD_HS.TASK), 'kvm:vcpu-task-read');
  writeU64(acc, tdWord(P, v, TD_HS.MSR_HOST_KERNEL_GS_BASE), taskGsbase(acc, P, task), 'tdx:host-kernel-gs-base-save');
  acc.writeOnce(loaded, 1, 'tdx:guest-state-loaded-write');
}

/**
 * Snapshot the host's DEBUGCTL with IRQs off, right before the run loop, so an IRQ cannot change
 * it between the snapshot and the restore.
 * @kvm arch/x86/kvm/x86.c vcpu_enter_guest (vcpu->arch.host_debugctl = get_debugctlmsr(); "KVM: x86: Snapshot the host's DEBUGCTL after disabling IRQs")
 */
export function kvmSnapshotHostDebugctl(acc: Access, P: TdxHostStatePlaces, v: VcpuId, p: PcpuId): void {
  writeU64(acc, tdWord(P, v, TD_HS.HOST_DEBUGCTL), getDebugctlmsr(acc, P, p), 'kvm:host-debugctl-save');
}

/** Why TDH.VP.ENTER returned. @kvm arch/x86/kvm/vmx/tdx.c tdx_to_vmx_exit_reason */
export type TdExitReason = 'nmi' | 'external-interrupt' | 'tdvmcall';

/**
 * SEAMCALL TDH.VP.ENTER on pCPU p, the TD's run, and the TD exit back to KVM: SEAMCALL saves
 * KVM's DEBUGCTL in the SEAMCALL VMCS; the module saves the host's TSX_CTRL, loads the guest's
 * state (TSX disabled for a TD without TSX) and enters; `guest()` runs the TD until it exits;
 * then {@link tdxTdExitHostState}. Returns the exit reason.
 * @kvm arch/x86/virt/vmx/tdx/tdx.c tdh_vp_enter (TDX module tdh_vp_enter.c, td_exit.c td_vmexit_to_vmm)
 */
export function tdhVpEnter(acc: Access, P: TdxHostStatePlaces, p: PcpuId, td: TdHostConfig, guest: () => TdExitReason, seamret?: () => void): TdExitReason {
  writeU64(acc, lpWord(P, p, TDX_LP.SEAMCALL_DEBUGCTL), readHostReg(acc, P, p, 'DEBUGCTL'), 'tdx:seamcall-save-debugctl');
  writeU64(acc, lpWord(P, p, TDX_LP.VMM_TSX_CTRL), readHostReg(acc, P, p, 'TSX_CTRL'), 'tdx:seam-save-tsx-ctrl');
  tdxLoadGuestState(acc, P, p, td);
  const reason = guest();
  tdxTdExitHostState(acc, P, p, td);
  seamret?.();
  return reason;
}

/** The TD entry side: the guest's values go into the registers. */
function tdxLoadGuestState(acc: Access, P: TdxHostStatePlaces, p: PcpuId, td: TdHostConfig): void {
  const g = td.guest;
  const put = (r: HostRegName, v: bigint | undefined) => {
    if (v !== undefined) writeHostReg(acc, P, p, r, checkU64(v));
  };
  for (const r of ['DR0', 'DR1', 'DR2', 'DR3', 'DR6', 'DR7', 'DEBUGCTL', 'PKRU', 'KERNEL_GS_BASE', 'STAR', 'LSTAR', 'SYSCALL_MASK', 'TSC_AUX'] as const) put(r, g[r]);
  writeHostReg(acc, P, p, 'XCR0', td.xfam & ~XSS_FEATURES);
  writeHostReg(acc, P, p, 'XSS', td.xfam & XSS_FEATURES);
  writeHostReg(acc, P, p, 'TSX_CTRL', td.tsx ? (g.TSX_CTRL ?? 0n) : TSX_CTRL_DISABLE_VALUE);
  if (td.waitpkg) put('UMWAIT_CONTROL', g.UMWAIT_CONTROL);
}

/**
 * What the TDX module leaves in pCPU p's registers when the TD exits to KVM:
 * initialize_extended_state (XCR0/XSS at the XFAM values, PKRU 0), load_vmm_state_before_td_exit
 * (DRs to RESET values if they differ; KERNEL_GS_BASE, STAR, LSTAR, TSC_AUX to 0 and FMASK to
 * 20200H if they differ; TSX_CTRL 0 for a TD with TSX, else the host's saved value; UMWAIT
 * untouched), then SEAMRET loads DEBUGCTL = SEAMCALL value & {1, 12, 14} and DR7 = 400H.
 * @kvm arch/x86/virt/vmx/tdx/tdx.c tdh_vp_enter (TDX module 1.5 td_exit.c load_vmm_state_before_td_exit)
 */
export function tdxTdExitHostState(acc: Access, P: TdxHostStatePlaces, p: PcpuId, td: TdHostConfig): void {
  const resetIfDiffers = (r: HostRegName, reset: bigint) => {
    if (readHostReg(acc, P, p, r) !== reset) writeHostReg(acc, P, p, r, reset);
  };
  writeHostReg(acc, P, p, 'XCR0', td.xfam & ~XSS_FEATURES);
  writeHostReg(acc, P, p, 'XSS', td.xfam & XSS_FEATURES);
  writeHostReg(acc, P, p, 'PKRU', 0n);
  for (const r of ['DR0', 'DR1', 'DR2', 'DR3'] as const) resetIfDiffers(r, 0n);
  resetIfDiffers('DR6', DR6_RESERVED);
  for (const r of ['TSC_AUX', 'STAR', 'LSTAR'] as const) resetIfDiffers(r, 0n);
  resetIfDiffers('SYSCALL_MASK', TDX_FMASK_RESET);
  resetIfDiffers('KERNEL_GS_BASE', 0n);
  if (td.tsx) writeHostReg(acc, P, p, 'TSX_CTRL', 0n);
  else resetIfDiffers('TSX_CTRL', readU64(acc, lpWord(P, p, TDX_LP.VMM_TSX_CTRL), 'tdx:seam-restore-tsx-ctrl'));
  // SEAMRET: VMX root state from the SEAMCALL VMCS guest area, which the module rewrote.
  const debugctl = readU64(acc, lpWord(P, p, TDX_LP.SEAMCALL_DEBUGCTL), 'tdx:seamret-debugctl');
  writeHostReg(acc, P, p, 'DEBUGCTL', debugctl & TDX_DEBUGCTL_PRESERVED);
  writeHostReg(acc, P, p, 'DR7', DR7_FIXED_1);
}

/**
 * Restore the host's DEBUGCTL after a TD run if it has bits the module does not preserve.
 * @kvm arch/x86/kvm/vmx/tdx.c tdx_vcpu_run (update_debugctlmsr(vcpu->arch.host_debugctl); "KVM: TDX: Save and restore IA32_DEBUGCTL")
 */
export function tdxRestoreHostDebugctl(acc: Access, P: TdxHostStatePlaces, v: VcpuId, p: PcpuId): void {
  const host = readU64(acc, tdWord(P, v, TD_HS.HOST_DEBUGCTL), 'tdx:host-debugctl-read');
  if ((host & ~TDX_DEBUGCTL_PRESERVED) !== 0n) updateDebugctlmsr(acc, P, p, host);
}

/**
 * Put back the host's PKRU, XCR0 and XSS after a TD run, each only if the TD left a different value.
 * @kvm arch/x86/kvm/vmx/tdx.c tdx_load_host_xsave_state
 */
export function tdxLoadHostXsaveState(acc: Access, P: TdxHostStatePlaces, v: VcpuId, p: PcpuId, td: TdHostConfig): void {
  const pkru = readU64(acc, tdWord(P, v, TD_HS.HOST_PKRU), 'tdx:host-pkru-read');
  if (pkru !== 0n) writeHostReg(acc, P, p, 'PKRU', pkru);
  if (KVM_HOST_XCR0 !== (td.xfam & KVM_SUPPORTED_XCR0)) writeHostReg(acc, P, p, 'XCR0', KVM_HOST_XCR0);
  if (KVM_HOST_XSS !== (td.xfam & KVM_SUPPORTED_XSS)) writeHostReg(acc, P, p, 'XSS', KVM_HOST_XSS);
}

/**
 * Remember that the TD really ran, so the user-return cache is told at vcpu_put.
 * @kvm arch/x86/kvm/vmx/tdx.c tdx_vcpu_run (tdx->guest_entered = true)
 */
export function tdxMarkGuestEntered(acc: Access, P: TdxHostStatePlaces, v: VcpuId): void {
  acc.writeOnce(tdWord(P, v, TD_HS.GUEST_ENTERED), 1, 'tdx:guest-entered-write');
}

/**
 * Tell pCPU p's user-return cache what the module left in the SYSCALL MSRs and TSC_AUX (and
 * register the notifier), without WRMSR.
 * @kvm arch/x86/kvm/vmx/tdx.c tdx_user_return_msr_update_cache
 */
export function tdxUserReturnMsrUpdateCache(acc: Access, P: TdxHostStatePlaces, p: PcpuId): void {
  for (const m of TDX_URET_MSRS) kvmUserReturnMsrUpdateCache(acc, P, p, kvmFindUserReturnMsr(m.msr), m.defval);
}

/**
 * Undo the TD run's lazy clobbers on the pCPU the vCPU is loaded on: if guest state is loaded,
 * WRMSR KERNEL_GS_BASE = the saved host value and, if the guest was entered, update the
 * user-return cache; then clear both flags.
 * @kvm arch/x86/kvm/vmx/tdx.c tdx_prepare_switch_to_host
 */
export function tdxPrepareSwitchToHost(acc: Access, P: TdxHostStatePlaces, v: VcpuId): void {
  const loaded = tdWord(P, v, TD_HS.GUEST_STATE_LOADED);
  if (acc.readOnce(loaded, 'tdx:guest-state-loaded-read') === 0) return;
  const p = tdVcpuCpu(acc, P, v);
  writeHostReg(acc, P, p, 'KERNEL_GS_BASE', readU64(acc, tdWord(P, v, TD_HS.MSR_HOST_KERNEL_GS_BASE), 'tdx:host-kernel-gs-base-read'));
  const entered = tdWord(P, v, TD_HS.GUEST_ENTERED);
  if (acc.readOnce(entered, 'tdx:guest-entered-read') !== 0) {
    tdxUserReturnMsrUpdateCache(acc, P, p);
    acc.writeOnce(entered, 0, 'tdx:guest-entered-write');
  }
  acc.writeOnce(loaded, 0, 'tdx:guest-state-loaded-write');
}

/**
 * vcpu_put of a TD vCPU (sched-out preempt notifier, or the end of KVM_RUN): posted-interrupt
 * put (not modelled here), tdx_prepare_switch_to_host, then vcpu->cpu stays for the next load.
 * @kvm arch/x86/kvm/vmx/tdx.c tdx_vcpu_put
 */
export function tdxVcpuPut(acc: Access, P: TdxHostStatePlaces, v: VcpuId): void {
  tdxPrepareSwitchToHost(acc, P, v);
}

/** Where host code may run on the TD run path, and the TD itself. @emulator */
export interface TdxRunHooks {
  /** An instruction boundary at `point`: an NMI may be taken here. */
  at(point: HostPoint): void;
  /** SEAMCALL, the TD in SEAM non-root until it exits, the exit into SEAM root; returns why. */
  guest(): TdExitReason;
  /** SEAMRET's reload of the NMI-blocking state (after the module's host-state writes). */
  seamret?(): void;
  /** KVM decodes the exit right after tdh_vp_enter (tdx_to_vmx_exit_reason, the exit qualification). */
  exitDecode?(): void;
  /** KVM calls the host NMI handler for an NMI-caused TD exit (vmx_handle_nmi). */
  handleNmi(): void;
}

/**
 * Bug patch (HS-1, seed 002): tdx_vcpu_run does not put back the host's IA32_DEBUGCTL after the
 * TD run — the TDX module keeps only bits 1, 12 and 14 — as in the first posting of the TD
 * enter/exit series, whose cover letter says "MSR IA32_DEBUGCTL appears to have been overlooked".
 * @kvm arch/x86/kvm/vmx/tdx.c tdx_vcpu_run (before "KVM: TDX: Save and restore IA32_DEBUGCTL")
 */
export const PATCH_TDX_NO_DEBUGCTL_RESTORE = definePatch({
  id: 'tdx-no-debugctl-restore',
  step: 'tdx_vcpu_run',
  summary: 'no update_debugctlmsr(host_debugctl) after the TD run: perf\'s LBR/BTF bits stay cleared by the TD exit',
  origin: { kind: 'proposal', ref: '[PATCH 0/7] KVM: TDX: TD vcpu enter/exit (Adrian Hunter, 2024-11-21; seed 002)', subject: 'KVM: TDX: TD vcpu enter/exit v1 ("MSR IA32_DEBUGCTL appears to have been overlooked"; fixed by "KVM: TDX: Save and restore IA32_DEBUGCTL")' },
  kernel: 'none released (the TD enter/exit series v1, Nov 2024; 6.16 restores DEBUGCTL)',
  vendors: ['tdx'],
});

/**
 * Bug patch (HS-2): guest_entered is set by the exit handler (tdx_handle_exit, IRQs on and
 * preemptible) instead of right after the TD run in tdx_vcpu_run, so a vcpu_put in between
 * skips the user-return cache update after a real entry. No posted version did this; it shows
 * why the flag is set where it is.
 * @kvm arch/x86/kvm/vmx/tdx.c tdx_vcpu_run (tdx->guest_entered = true)
 */
export const PATCH_TDX_GUEST_ENTERED_IN_EXIT_HANDLER = definePatch({
  id: 'tdx-guest-entered-in-exit-handler',
  step: 'tdx_vcpu_run / tdx_handle_exit',
  summary: 'guest_entered is set in tdx_handle_exit after preempt_enable(), not in tdx_vcpu_run: a preemption in between puts the vCPU without telling the user-return cache',
  origin: { kind: 'hypothetical', ref: 'seed 002_0386f14b5b8a249e.txt ("KVM: TDX: restore user ret MSRs")', subject: 'KVM: TDX: restore user ret MSRs (guest_entered set in tdx_vcpu_run)' },
  kernel: 'none (every posted version sets guest_entered in tdx_vcpu_run)',
  vendors: ['tdx'],
});

/**
 * The noinstr part of a TD run: TDH.VP.ENTER, decode the exit, and for an NMI exit call the host
 * NMI handler right away.
 * @kvm arch/x86/kvm/vmx/tdx.c tdx_vcpu_enter_exit
 */
export function tdxVcpuEnterExit(acc: Access, P: TdxHostStatePlaces, p: PcpuId, td: TdHostConfig, hooks: TdxRunHooks): TdExitReason {
  const reason = tdhVpEnter(acc, P, p, td, hooks.guest, hooks.seamret);
  hooks.at('seamret');
  hooks.exitDecode?.();
  if (reason === 'nmi') hooks.handleNmi();
  return reason;
}

/**
 * A TD vCPU's run with IRQs off, in the kernel's order: tdx_vcpu_enter_exit → DEBUGCTL restore
 * → tdx_load_host_xsave_state → guest_entered = true; `hooks.at` marks each instruction
 * boundary in between.
 * @kvm arch/x86/kvm/vmx/tdx.c tdx_vcpu_run
 */
export function tdxVcpuRun(acc: Access, P: TdxHostStatePlaces, v: VcpuId, td: TdHostConfig, hooks: TdxRunHooks, patches: PatchSet = NO_PATCHES): TdExitReason {
  const p = tdVcpuCpu(acc, P, v);
  const reason = tdxVcpuEnterExit(acc, P, p, td, hooks);
  hooks.at('enter-exit-done');
  if (!patches.has(PATCH_TDX_NO_DEBUGCTL_RESTORE)) tdxRestoreHostDebugctl(acc, P, v, p);
  hooks.at('debugctl-restored');
  tdxLoadHostXsaveState(acc, P, v, p, td);
  hooks.at('xsave-restored');
  if (!patches.has(PATCH_TDX_GUEST_ENTERED_IN_EXIT_HANDLER)) tdxMarkGuestEntered(acc, P, v);
  hooks.at('guest-entered');
  return reason;
}

/**
 * The host-state part of the exit handler (IRQs on, preemptible): nothing in the kernel; with
 * {@link PATCH_TDX_GUEST_ENTERED_IN_EXIT_HANDLER}, this is where guest_entered is set.
 * @kvm arch/x86/kvm/vmx/tdx.c tdx_handle_exit
 */
export function tdxHandleExitHostState(acc: Access, P: TdxHostStatePlaces, v: VcpuId, patches: PatchSet = NO_PATCHES): void {
  if (patches.has(PATCH_TDX_GUEST_ENTERED_IN_EXIT_HANDLER)) tdxMarkGuestEntered(acc, P, v);
}

/**
 * Emulator view of a TD vCPU's bookkeeping (checkers and tests; not race points).
 * @emulator
 */
export function peekTdHostState(acc: Access, P: TdxHostStatePlaces, v: VcpuId): { guestStateLoaded: boolean; guestEntered: boolean; cpu: number; hostKernelGsBase: bigint; hostDebugctl: bigint; hostPkru: bigint } {
  return {
    guestStateLoaded: acc.peek(tdWord(P, v, TD_HS.GUEST_STATE_LOADED)) !== 0,
    guestEntered: acc.peek(tdWord(P, v, TD_HS.GUEST_ENTERED)) !== 0,
    cpu: acc.peek(tdWord(P, v, TD_HS.CPU)),
    hostKernelGsBase: peekU64(acc, tdWord(P, v, TD_HS.MSR_HOST_KERNEL_GS_BASE)),
    hostDebugctl: peekU64(acc, tdWord(P, v, TD_HS.HOST_DEBUGCTL)),
    hostPkru: peekU64(acc, tdWord(P, v, TD_HS.HOST_PKRU)),
  };
}
