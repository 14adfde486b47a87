/**
 * The host kernel's own record of what a pCPU's registers should hold, and the host code that
 * programs them: perf's LBR enable in IA32_DEBUGCTL, hardware breakpoints (cpu_dr7 /
 * cpu_debugreg and hw_breakpoint_restore), the tasks' GS bases and PKRU, kvm_host.xcr0/xss, the
 * FSGSBASE context-switch save and load of the inactive GS base. Checkers compare the registers
 * ({@link ./msr}) against these values.
 *
 * Per-pCPU block (one 64-byte line; 64-bit values as (low, high) word pairs):
 *
 * ```
 *  word 0  DEBUGCTL_WANT    what DEBUGCTL's host owners (perf LBR) last programmed
 *  word 2  CPU_DR7          per_cpu(cpu_dr7)
 *  word 4  CPU_DEBUGREG     per_cpu(cpu_debugreg[0..3]), 2 words each
 *  word 12 CURRENT_TASK     task running on this CPU (task index)
 * ```
 *
 * Per-task block (one line): thread.gsbase, the GS base user space set (what it must get back),
 * and the task's PKRU.
 */
import type { Access } from '../mem/access.js';
import type { Addr, PcpuId } from '../mem/layout.js';
import { badParam } from '../errors.js';
import { DEBUGCTLMSR_FREEZE_LBRS_ON_PMI, DEBUGCTLMSR_LBR, DR6_RESERVED, DR7_FIXED_1, DR_GLOBAL_ENABLE_MASK, XFEATURE_MASK, peekU64, pokeU64, readHostReg, readU64, writeHostReg, writeU64, type HostRegName, type HostRegPlaces } from './msr.js';

/** Word offsets of a pCPU's host software state. @kvm arch/x86/kernel/hw_breakpoint.c cpu_dr7, cpu_debugreg; arch/x86/events/intel/lbr.c (cpuc LBR state) */
export const HOST_CPU = {
  /** The DEBUGCTL value host code (perf) has programmed on this CPU: what it expects to find. */
  DEBUGCTL_WANT: 0,
  /** per_cpu(cpu_dr7): the host's DR7 with its breakpoints' enable bits. */
  CPU_DR7: 2,
  /** per_cpu(cpu_debugreg[i]) at CPU_DEBUGREG + 2 i. */
  CPU_DEBUGREG: 4,
  /** Index of the task running on this CPU. */
  CURRENT_TASK: 12,
} as const;
/** Words of a pCPU's host software block. @emulator */
export const HOST_CPU_BLOCK_WORDS = 16;

/** Word offsets of a task's state (task_struct / thread_struct fields used here). @kvm arch/x86/include/asm/processor.h struct thread_struct (.gsbase, .pkru) */
export const TASK = {
  /** thread.gsbase: the inactive GS base saved at the last switch out (FSGSBASE hosts). */
  GSBASE: 0,
  /** The GS base the task's user space set (arch_prctl(ARCH_SET_GS) / WRGSBASE): what it must find. */
  USER_GSBASE: 2,
  /** The task's PKRU (thread.pkru / the fpstate's PKRU). */
  PKRU: 4,
} as const;
/** Words of a task block. @emulator */
export const TASK_BLOCK_WORDS = 16;

/** Where the host software state lives. @emulator */
export interface HostSwPlaces extends HostRegPlaces {
  hostCpu(p: PcpuId): Addr;
  task(t: number): Addr;
}

/**
 * kvm_host.xcr0 in this model: x87, SSE, AVX, AVX-512 (opmask, ZMM_Hi256, Hi16_ZMM), PKRU.
 * @kvm arch/x86/kvm/x86.c kvm_host (struct kvm_host_values .xcr0)
 */
export const KVM_HOST_XCR0 = XFEATURE_MASK.FP | XFEATURE_MASK.SSE | XFEATURE_MASK.YMM | XFEATURE_MASK.OPMASK | XFEATURE_MASK.ZMM_HI256 | XFEATURE_MASK.HI16_ZMM | XFEATURE_MASK.PKRU;
/** kvm_host.xss in this model: CET user state. @kvm arch/x86/kvm/x86.c kvm_host (struct kvm_host_values .xss) */
export const KVM_HOST_XSS = XFEATURE_MASK.CET_USER;
/** kvm_caps.supported_xcr0 in this model. @kvm arch/x86/kvm/x86.c kvm_caps.supported_xcr0 */
export const KVM_SUPPORTED_XCR0 = KVM_HOST_XCR0;
/** kvm_caps.supported_xss in this model. @kvm arch/x86/kvm/x86.c kvm_caps.supported_xss */
export const KVM_SUPPORTED_XSS = XFEATURE_MASK.CET_USER | XFEATURE_MASK.CET_KERNEL;
/** A task's default PKRU: access to key 0 only. @kvm arch/x86/mm/pkeys.c init_pkru_value */
export const INIT_PKRU_VALUE = 0x55555554n;
/** Breakpoints this model tracks (DR0..DR3). @kvm arch/x86/include/asm/hw_breakpoint.h HBP_NUM */
export const HBP_NUM = 4;
const DR_NAMES: readonly HostRegName[] = ['DR0', 'DR1', 'DR2', 'DR3'];

function cpuWord(P: HostSwPlaces, p: PcpuId, w: number): Addr {
  return (P.hostCpu(p) + w) as Addr;
}
function taskWord(P: HostSwPlaces, t: number, w: number): Addr {
  return (P.task(t) + w) as Addr;
}
function checkSlot(slot: number): void {
  if (!Number.isInteger(slot) || slot < 0 || slot >= HBP_NUM) throw badParam('slot', `${slot} (must be an integer in 0..${HBP_NUM - 1})`);
}

/**
 * RDMSR IA32_DEBUGCTL.
 * @kvm arch/x86/include/asm/debugreg.h get_debugctlmsr
 */
export function getDebugctlmsr(acc: Access, P: HostRegPlaces, p: PcpuId): bigint {
  return readHostReg(acc, P, p, 'DEBUGCTL');
}

/**
 * WRMSR IA32_DEBUGCTL.
 * @kvm arch/x86/include/asm/debugreg.h update_debugctlmsr
 */
export function updateDebugctlmsr(acc: Access, P: HostRegPlaces, p: PcpuId, v: bigint): void {
  writeHostReg(acc, P, p, 'DEBUGCTL', v);
}

/**
 * What host code expects in pCPU p's DEBUGCTL (emulator expectation, read through the access
 * layer so it orders with the code that changes it).
 * @emulator
 */
export function debugctlWant(acc: Access, P: HostSwPlaces, p: PcpuId): bigint {
  return readU64(acc, cpuWord(P, p, HOST_CPU.DEBUGCTL_WANT), 'host:debugctl-want-read');
}

/**
 * perf enables LBR recording on this CPU: DEBUGCTL |= LBR | FREEZE_LBRS_ON_PMI (legacy LBR).
 * Runs on pCPU p (perf's IPI or context-switch path), IRQs off.
 * @kvm arch/x86/events/intel/lbr.c __intel_pmu_lbr_enable
 */
export function intelPmuLbrEnable(acc: Access, P: HostSwPlaces, p: PcpuId): void {
  const v = getDebugctlmsr(acc, P, p) | DEBUGCTLMSR_LBR | DEBUGCTLMSR_FREEZE_LBRS_ON_PMI;
  writeU64(acc, cpuWord(P, p, HOST_CPU.DEBUGCTL_WANT), v, 'host:debugctl-want-write');
  updateDebugctlmsr(acc, P, p, v);
}

/**
 * perf disables LBR recording on this CPU: DEBUGCTL &= ~(LBR | FREEZE_LBRS_ON_PMI).
 * @kvm arch/x86/events/intel/lbr.c __intel_pmu_lbr_disable
 */
export function intelPmuLbrDisable(acc: Access, P: HostSwPlaces, p: PcpuId): void {
  const v = getDebugctlmsr(acc, P, p) & ~(DEBUGCTLMSR_LBR | DEBUGCTLMSR_FREEZE_LBRS_ON_PMI);
  writeU64(acc, cpuWord(P, p, HOST_CPU.DEBUGCTL_WANT), v, 'host:debugctl-want-write');
  updateDebugctlmsr(acc, P, p, v);
}

/**
 * Does the host have breakpoints armed on this CPU (a global-enable bit in cpu_dr7)?
 * @kvm arch/x86/include/asm/debugreg.h hw_breakpoint_active
 */
export function hwBreakpointActive(acc: Access, P: HostSwPlaces, p: PcpuId): boolean {
  return (readU64(acc, cpuWord(P, p, HOST_CPU.CPU_DR7), 'host:cpu-dr7-read') & DR_GLOBAL_ENABLE_MASK) !== 0n;
}

/**
 * Reload the host's breakpoints: DR0..DR3 from cpu_debugreg, DR6 = DR6_RESERVED, DR7 = cpu_dr7.
 * @kvm arch/x86/kernel/hw_breakpoint.c hw_breakpoint_restore
 */
export function hwBreakpointRestore(acc: Access, P: HostSwPlaces, p: PcpuId): void {
  for (let i = 0; i < HBP_NUM; i++) writeHostReg(acc, P, p, DR_NAMES[i]!, readU64(acc, cpuWord(P, p, HOST_CPU.CPU_DEBUGREG + 2 * i), 'host:cpu-debugreg-read'));
  writeHostReg(acc, P, p, 'DR6', DR6_RESERVED);
  writeHostReg(acc, P, p, 'DR7', readU64(acc, cpuWord(P, p, HOST_CPU.CPU_DR7), 'host:cpu-dr7-read'));
}

/**
 * Arm breakpoint `slot` at `addr` on this CPU (global enable, execute, length 1): cpu_debugreg,
 * DRn, cpu_dr7 |= Gn, DR7 = cpu_dr7. Runs on pCPU p with IRQs off (perf's install path).
 * @kvm arch/x86/kernel/hw_breakpoint.c arch_install_hw_breakpoint
 */
export function archInstallHwBreakpoint(acc: Access, P: HostSwPlaces, p: PcpuId, slot: number, addr: bigint): void {
  checkSlot(slot);
  writeU64(acc, cpuWord(P, p, HOST_CPU.CPU_DEBUGREG + 2 * slot), addr, 'host:cpu-debugreg-write');
  writeHostReg(acc, P, p, DR_NAMES[slot]!, addr);
  const dr7 = readU64(acc, cpuWord(P, p, HOST_CPU.CPU_DR7), 'host:cpu-dr7-read') | DR7_FIXED_1 | (2n << BigInt(2 * slot));
  writeU64(acc, cpuWord(P, p, HOST_CPU.CPU_DR7), dr7, 'host:cpu-dr7-write');
  writeHostReg(acc, P, p, 'DR7', dr7);
}

/**
 * Disarm breakpoint `slot` on this CPU: cpu_dr7 &= ~(enable bits), DR7 = cpu_dr7.
 * @kvm arch/x86/kernel/hw_breakpoint.c arch_uninstall_hw_breakpoint
 */
export function archUninstallHwBreakpoint(acc: Access, P: HostSwPlaces, p: PcpuId, slot: number): void {
  checkSlot(slot);
  const dr7 = readU64(acc, cpuWord(P, p, HOST_CPU.CPU_DR7), 'host:cpu-dr7-read') & ~(3n << BigInt(2 * slot));
  writeU64(acc, cpuWord(P, p, HOST_CPU.CPU_DR7), dr7, 'host:cpu-dr7-write');
  writeHostReg(acc, P, p, 'DR7', dr7 === 0n ? DR7_FIXED_1 : dr7);
}

/**
 * Index of the task running on pCPU p.
 * @kvm kernel/sched/core.c cpu_curr
 */
export function currentTask(acc: Access, P: HostSwPlaces, p: PcpuId): number {
  return acc.readOnce(cpuWord(P, p, HOST_CPU.CURRENT_TASK), 'host:current-read');
}

/**
 * thread.gsbase of task t (what tdx_prepare_switch_to_guest saves as the host KERNEL_GS_BASE
 * for a 64-bit mm).
 * @kvm arch/x86/include/asm/processor.h struct thread_struct .gsbase
 */
export function taskGsbase(acc: Access, P: HostSwPlaces, t: number): bigint {
  return readU64(acc, taskWord(P, t, TASK.GSBASE), 'host:task-gsbase-read');
}

/**
 * Context switch, outgoing side, on an FSGSBASE host: the inactive GS base (IA32_KERNEL_GS_BASE
 * while in the kernel) is saved as prev's thread.gsbase. Returns the saved value.
 * @kvm arch/x86/kernel/process_64.c save_fsgs (__rdgsbase_inactive)
 */
export function saveFsgs(acc: Access, P: HostSwPlaces, p: PcpuId, prev: number): bigint {
  const v = readHostReg(acc, P, p, 'KERNEL_GS_BASE');
  writeU64(acc, taskWord(P, prev, TASK.GSBASE), v, 'host:task-gsbase-write');
  return v;
}

/**
 * Context switch, incoming side: IA32_KERNEL_GS_BASE = next's thread.gsbase, PKRU = next's PKRU,
 * and `next` becomes the current task.
 * @kvm arch/x86/kernel/process_64.c x86_fsgsbase_load (and arch/x86/include/asm/fpu/sched.h switch_fpu_finish for PKRU)
 */
export function switchToNext(acc: Access, P: HostSwPlaces, p: PcpuId, next: number): void {
  writeHostReg(acc, P, p, 'KERNEL_GS_BASE', taskGsbase(acc, P, next));
  writeHostReg(acc, P, p, 'PKRU', readU64(acc, taskWord(P, next, TASK.PKRU), 'host:task-pkru-read'));
  acc.writeOnce(cpuWord(P, p, HOST_CPU.CURRENT_TASK), next, 'host:current-write');
}

/** What host code expects in a pCPU's registers at one moment (a checker's reference values). @emulator */
export interface HostExpect {
  debugctl: bigint;
  cpuDr7: bigint;
  cpuDebugreg: readonly bigint[];
  xcr0: bigint;
  xss: bigint;
  pkru: bigint;
  tsxCtrl: bigint;
  umwaitControl: bigint;
  /** The GS base the current task's user space set. */
  userGsbase: bigint;
  /** kvm_user_return_msrs.values[slot].host, by slot. */
  uretHost: readonly bigint[];
}

/**
 * Boot-time host register values of a CPU: the kernel's SYSCALL MSRs (syscall_init: STAR
 * selectors, LSTAR = entry_SYSCALL_64, FMASK), TSC_AUX = (node << 12) | cpu (vgetcpu), XCR0/XSS as
 * kvm_host has them, the default PKRU, TSX enabled (TSX_CTRL 0), the default UMWAIT control, no
 * LBR and no breakpoints (DRs at their RESET values).
 * @kvm arch/x86/kernel/cpu/common.c syscall_init; arch/x86/kernel/cpu/common.c setup_getcpu
 */
export function hostBootRegs(cpu: PcpuId, node = 0): Readonly<Partial<Record<HostRegName, bigint>>> {
  return {
    DR6: DR6_RESERVED,
    DR7: DR7_FIXED_1,
    DEBUGCTL: 0n,
    XCR0: KVM_HOST_XCR0,
    XSS: KVM_HOST_XSS,
    PKRU: INIT_PKRU_VALUE,
    STAR: 0x0023001000000000n,
    LSTAR: 0xffffffff81a00080n,
    SYSCALL_MASK: 0x257fd5n,
    TSC_AUX: BigInt((node << 12) | cpu),
    TSX_CTRL: 0n,
    UMWAIT_CONTROL: 0x186a0n,
  };
}

/** Boot-time host values of the registers not covered by the other words. @emulator */
export interface HostBootValues {
  tsxCtrl: bigint;
  umwaitControl: bigint;
}

/**
 * The reference values for pCPU p now, with task t current (emulator bookkeeping reads, not
 * race points; taken while p is parked in a hand-off).
 * @emulator
 */
export function hostExpect(acc: Access, P: HostSwPlaces, p: PcpuId, t: number, boot: HostBootValues, uretHost: readonly bigint[]): HostExpect {
  return {
    debugctl: peekU64(acc, cpuWord(P, p, HOST_CPU.DEBUGCTL_WANT)),
    cpuDr7: peekU64(acc, cpuWord(P, p, HOST_CPU.CPU_DR7)),
    cpuDebugreg: Array.from({ length: HBP_NUM }, (_, i) => peekU64(acc, cpuWord(P, p, HOST_CPU.CPU_DEBUGREG + 2 * i))),
    xcr0: KVM_HOST_XCR0,
    xss: KVM_HOST_XSS,
    pkru: peekU64(acc, taskWord(P, t, TASK.PKRU)),
    tsxCtrl: boot.tsxCtrl,
    umwaitControl: boot.umwaitControl,
    userGsbase: peekU64(acc, taskWord(P, t, TASK.USER_GSBASE)),
    uretHost,
  };
}

/**
 * Set up pCPU p's host software state: DEBUGCTL_WANT, no breakpoints, current task `t`
 * (emulator set-up: plain pokes).
 * @emulator
 */
export function initHostCpu(acc: Access, P: HostSwPlaces, p: PcpuId, debugctl: bigint, current: number): void {
  pokeU64(acc, cpuWord(P, p, HOST_CPU.DEBUGCTL_WANT), debugctl);
  pokeU64(acc, cpuWord(P, p, HOST_CPU.CPU_DR7), 0n);
  for (let i = 0; i < HBP_NUM; i++) pokeU64(acc, cpuWord(P, p, HOST_CPU.CPU_DEBUGREG + 2 * i), 0n);
  acc.poke(cpuWord(P, p, HOST_CPU.CURRENT_TASK), current);
}

/**
 * Set up task t: its user GS base (also its saved thread.gsbase) and PKRU (emulator set-up).
 * @emulator
 */
export function initTask(acc: Access, P: HostSwPlaces, t: number, userGsbase: bigint, pkru: bigint = INIT_PKRU_VALUE): void {
  pokeU64(acc, taskWord(P, t, TASK.GSBASE), userGsbase);
  pokeU64(acc, taskWord(P, t, TASK.USER_GSBASE), userGsbase);
  pokeU64(acc, taskWord(P, t, TASK.PKRU), pkru);
}

/**
 * Points on a CPU's path through a TD run (x86.c vcpu_enter_guest around vmx/tdx.c
 * tdx_vcpu_run) and the scheduler/user-return paths, at which host code can run: an NMI at any
 * of them, an IRQ where IRQs are enabled. Checkers use them to say what a handler may see.
 * @kvm arch/x86/kvm/x86.c vcpu_enter_guest; arch/x86/kvm/vmx/tdx.c tdx_vcpu_run
 */
export const HOST_POINTS = [
  /** vcpu_run loop top, IRQs on, preemptible (xfer_to_guest_mode_handle_work). */
  'run-loop',
  /** After kvm_x86_call(prepare_switch_to_guest), preemption off, IRQs on. */
  'switch-to-guest',
  /** After local_irq_disable() and vcpu->mode = IN_GUEST_MODE. */
  'irqs-off',
  /** After set_debugreg(DR7_FIXED_1, 7) (only with host breakpoints active). */
  'dr7-cleared',
  /** After vcpu->arch.host_debugctl = get_debugctlmsr(). */
  'debugctl-snapshot',
  /** In tdx_vcpu_enter_exit right after SEAMRET (tdh_vp_enter returned). */
  'seamret',
  /** vmx_handle_nmi for an NMI-caused TD exit (still in tdx_vcpu_enter_exit). */
  'vmx-handle-nmi',
  /** After tdx_vcpu_enter_exit (guest_state_exit_irqoff). */
  'enter-exit-done',
  /** After the IA32_DEBUGCTL restore. */
  'debugctl-restored',
  /** After tdx_load_host_xsave_state. */
  'xsave-restored',
  /** After tdx->guest_entered = true. */
  'guest-entered',
  /** After hw_breakpoint_restore() in vcpu_enter_guest. */
  'hw-breakpoint-restored',
  /** kvm_before_interrupt(); local_irq_enable(): IRQs taken right after a TD exit. */
  'irqs-on',
  /** local_irq_enable(); preempt_enable() at the end of vcpu_enter_guest. */
  'preempt-enable',
  /** vcpu_run: kvm_x86_call(handle_exit) (tdx_handle_exit), IRQs on, preemptible. */
  'handle-exit',
  /** sched_out preempt notifier or the end of KVM_RUN: kvm_arch_vcpu_put. */
  'vcpu-put',
  /** Return to user mode (after the user-return notifiers). */
  'user-return',
  /** Code of another task on the same CPU (a VMM thread or a VMX vCPU). */
  'other-task',
] as const;
/** A point of {@link HOST_POINTS}. @kvm arch/x86/kvm/x86.c vcpu_enter_guest */
export type HostPoint = (typeof HOST_POINTS)[number];

/** A pCPU's host state in a machine snapshot (64-bit values as hex strings, so snapshots stay JSON). @emulator */
export interface PcpuHostState {
  /** Register values by name (DR0..DR7, DEBUGCTL, XCR0, XSS, PKRU, KERNEL_GS_BASE, STAR, ...). */
  regs: Record<string, string>;
  /** The user-return MSR cache: notifier registered, and per slot host / curr / the MSR's value. */
  uret: { registered: boolean; slots: { reg: string; host: string; curr: string; msr: string }[] };
  /** Task current on the pCPU (a vcpuN thread, or the idle task). */
  current: string;
  /** Virtualization state of the pCPU (TDX machines). */
  virt?: PcpuVirtState;
}

/** A pCPU's virtualization state in a machine snapshot. @emulator */
export interface PcpuVirtState {
  /** CR4.VMXE (post-VMXON). */
  vmxe: boolean;
  /** tdx_lp_initialized (TDH.SYS.LP.INIT done). */
  lpInitialized: boolean;
  /** The cpuhp state the pCPU is in (CPUHP_ONLINE when fully up). */
  cpuhpState: number;
}

/** The host's VM-wide virtualization state in a machine snapshot. @emulator */
export interface HostVirtState {
  /** kvm_usage_count. */
  kvmUsageCount: number;
  /** tdx_module_status: UNINITIALIZED / INITIALIZED / ERROR. */
  tdxModuleStatus: string;
  /** nr_configured_hkid. */
  nrConfiguredHkid: number;
}
