/**
 * A TD vCPU's task on a host CPU, with everything else that runs there (domain notes 9.1, 9.2
 * HS-1..HS-3): host IRQs (perf IPI, a device, the reschedule IPI) taken where IRQs are on, host
 * NMIs taken at any instruction boundary, preemption and the context switch to another task (a
 * VMM I/O thread, or a VMX vCPU thread that loads its own user-return MSRs), the return to user
 * mode through the user-return notifiers — around tdx_vcpu_run's host-state handling
 * (tdx-host-state.ts). Every place where host code observes the CPU's registers is reported to
 * the caller's `observe` hook (the checkers' tap).
 *
 * A handler "runs on" the CPU while the code it interrupted waits: the emulator runs the
 * handler's body on the interrupt source's thread (it reads the CPU's words at that moment), and
 * the interrupted thread waits for its IRET at the hand-off word `gate`.
 *
 * Words ({@link HostCpuPlaces}): the CPU's IRQ doorbell (pending bits, waiter flag), the
 * hand-off word, the task holding the CPU, need_resched; the NMI latch is the CPU's (hw/nmi.ts).
 */
import type { Access } from '../../mem/access.js';
import type { Addr, PcpuId, VcpuId } from '../../mem/layout.js';
import { doorbellPending, doorbellRing, doorbellTake } from '../../sync/doorbell.js';
import { spinThenWait } from '../../sync/wait.js';
import { DEBUGCTLMSR_LBR, DR7_FIXED_1, writeHostReg, type HostRegName } from '../../host/msr.js';
import { KVM_URET_REGS, fireUserReturnNotifiers, kvmSetUserReturnMsr, snapshotUretCache, type UretCacheSnapshot } from '../../host/uret.js';
import {
  HOST_POINTS,
  archInstallHwBreakpoint,
  archUninstallHwBreakpoint,
  debugctlWant,
  hwBreakpointActive,
  hwBreakpointRestore,
  intelPmuLbrDisable,
  intelPmuLbrEnable,
  saveFsgs,
  switchToNext,
  type HostPoint,
} from '../../host/host-state.js';
import { cpuNmiAccept, cpuNmiBlocked, cpuNmiIret, cpuNmiPending, cpuNmiRaise, NMI_SOURCE_UNKNOWN } from '../../hw/nmi.js';
import type { PatchSet } from '../patches.js';
import {
  TD_LINUX_GUEST,
  kvmSnapshotHostDebugctl,
  tdxHandleExitHostState,
  tdxPrepareSwitchToGuest,
  tdxVcpuLoad,
  tdxVcpuPut,
  tdxVcpuRun,
  type TdExitReason,
  type TdxHostStatePlaces,
} from './tdx-host-state.js';

/** Bits of the CPU's IRQ doorbell. */
export const HOST_IRQ = { PERF_IPI: 1, DEVICE: 2, RESCHEDULE: 4 } as const;
/** What a handler hand-off is for. */
export const HOST_HANDLER = { NMI: 1, PERF_IPI: 2, DEVICE: 3 } as const;

/** Where the host CPU's words live, with the host-state blocks. @emulator */
export interface HostCpuPlaces extends TdxHostStatePlaces {
  /** The CPU's IRQ doorbell (pending bits, then the waiter flag). */
  irq: Addr;
  /** Handler hand-off: 0 idle, else (kind | point << 8 | 1 << 16) while the CPU runs the handler. */
  gate: Addr;
  /** Task that holds the CPU. */
  running: Addr;
  /** The CPU's need_resched. */
  needResched: Addr;
}

/** What host code on the CPU observed, as a kind of observer. */
export type HostObserverKindName = 'irq-enable' | 'irq' | 'nmi' | 'context-switch' | 'user-return' | 'vmx-entry';

/** The caller's tap: host code ran on `cpu` at `point` with task `task` current. @emulator */
export interface HostCpuHooks {
  observe(kind: HostObserverKindName, point: HostPoint, task: number, extra?: { savedGsbase?: bigint; uret?: UretCacheSnapshot }): void;
}

/** The task running the TD vCPU, and the one other task on the CPU. */
export const TASK_VCPU = 0;
/** The other task sharing the CPU. */
export const TASK_OTHER = 1;

/**
 * The CPU enters the handler for `kind` at `point` and waits for it to return (IRET).
 * @emulator
 */
export function hostCpuRunHandler(acc: Access, P: HostCpuPlaces, kind: number, point: HostPoint): void {
  const code = kind | (HOST_POINTS.indexOf(point) << 8) | (1 << 16);
  acc.xchg(P.gate, code, 'irq:handler-enter');
  acc.notify(P.gate, 1, 'irq:handler-notify');
  while (acc.readOnce(P.gate, 'irq:handler-wait') !== 0) spinThenWait(acc, P.gate, code, 'irq:handler-wait', 'the interrupt handler on CPU0 to return');
}

/**
 * On the source's thread: wait until the CPU enters a handler; returns the hand-off code (kind
 * in bits 7:0, the point's index in 15:8).
 * @emulator
 */
export function hostCpuAwaitHandler(acc: Access, P: HostCpuPlaces): number {
  for (;;) {
    const g = acc.readOnce(P.gate, 'irq:gate-poll');
    if (g !== 0) return g;
    spinThenWait(acc, P.gate, 0, 'irq:gate-poll', 'CPU0 to take the interrupt');
  }
}

/**
 * On the source's thread: the handler body is done; its IRET lets the CPU go on.
 * @emulator
 */
export function hostCpuHandlerIret(acc: Access, P: HostCpuPlaces): void {
  acc.xchg(P.gate, 0, 'irq:iret');
  acc.notify(P.gate, 1, 'irq:iret-notify');
}

/**
 * A source raises an interrupt at the CPU: an NMI (latched, no source vector) or an IRQ bit.
 * @sdm SDM vol. 3, "Nonmaskable Interrupt (NMI)"; APIC interrupt delivery
 */
export function hostCpuRaise(acc: Access, P: HostCpuPlaces, cpu: PcpuId, kind: number): void {
  if (kind === HOST_HANDLER.NMI) cpuNmiRaise(acc, cpu, NMI_SOURCE_UNKNOWN);
  else doorbellRing(acc, P.irq, kind === HOST_HANDLER.PERF_IPI ? HOST_IRQ.PERF_IPI : HOST_IRQ.DEVICE, 'irq:raise');
}

/**
 * An instruction boundary of the CPU: a latched NMI is taken here whatever the IF flag — the
 * handler runs, then IRET. Returns whether one was taken.
 * @sdm SDM vol. 3, "Nonmaskable Interrupt (NMI)" (delivered regardless of RFLAGS.IF)
 */
export function hostCpuNmiPoint(acc: Access, P: HostCpuPlaces, cpu: PcpuId, point: HostPoint): boolean {
  if (cpuNmiBlocked(acc, cpu) || !cpuNmiPending(acc, cpu, 'nmi:poll') || !cpuNmiAccept(acc, cpu, 'nmi:accept')) return false;
  hostCpuRunHandler(acc, P, HOST_HANDLER.NMI, point);
  cpuNmiIret(acc, cpu);
  return true;
}

/**
 * The CPU with IRQs enabled at `point`: take what the IRQ doorbell holds — the reschedule IPI
 * sets need_resched, a perf IPI or device IRQ runs its handler.
 * @kvm arch/x86/kernel/irq.c common_interrupt; arch/x86/kernel/smp.c sysvec_reschedule_ipi
 */
export function hostCpuIrqWindow(acc: Access, P: HostCpuPlaces, point: HostPoint): void {
  if (doorbellPending(acc, P.irq, 'irq:poll') === 0) return;
  const bits = doorbellTake(acc, P.irq, 'irq:ack');
  if (bits & HOST_IRQ.RESCHEDULE) acc.writeOnce(P.needResched, 1, 'sched:need-resched-set');
  if (bits & HOST_IRQ.PERF_IPI) hostCpuRunHandler(acc, P, HOST_HANDLER.PERF_IPI, point);
  if (bits & HOST_IRQ.DEVICE) hostCpuRunHandler(acc, P, HOST_HANDLER.DEVICE, point);
}

/**
 * schedule() from the vCPU task on `cpu`: the sched-out preempt notifier puts the vCPU, the
 * context switch saves the task's inactive GS base and hands the CPU to the other task; when that
 * one blocks again, the sched-in notifier loads the vCPU.
 * @kvm kernel/sched/core.c __schedule (fire_sched_out_preempt_notifiers → kvm_sched_out → kvm_arch_vcpu_put; context_switch → __switch_to)
 */
export function hostCpuVcpuSchedule(acc: Access, P: HostCpuPlaces, cpu: PcpuId, v: VcpuId, point: HostPoint, hooks: HostCpuHooks): void {
  acc.writeOnce(P.needResched, 0, 'sched:need-resched-clear');
  tdxVcpuPut(acc, P, v);
  hostCpuNmiPoint(acc, P, cpu, 'vcpu-put');
  const saved = saveFsgs(acc, P, cpu, TASK_VCPU);
  hooks.observe('context-switch', point, TASK_VCPU, { savedGsbase: saved });
  switchToNext(acc, P, cpu, TASK_OTHER);
  acc.storeRelease(P.running, TASK_OTHER, 'sched:switch-to-other');
  acc.notify(P.running, 1, 'sched:switch-notify');
  hostCpuWaitForCpu(acc, P, TASK_VCPU);
  tdxVcpuLoad(acc, P, v, cpu);
}

/**
 * A preemption point: schedule if the reschedule IPI set need_resched.
 * @kvm kernel/sched/core.c preempt_schedule (need_resched)
 */
export function hostCpuPreemptPoint(acc: Access, P: HostCpuPlaces, cpu: PcpuId, v: VcpuId, point: HostPoint, hooks: HostCpuHooks): void {
  if (acc.readOnce(P.needResched, 'sched:need-resched-read') !== 0) hostCpuVcpuSchedule(acc, P, cpu, v, point, hooks);
}

/**
 * Task `task` waits until the CPU is switched to it.
 * @kvm kernel/sched/core.c try_to_wake_up / context_switch (the woken task runs once switched to)
 */
export function hostCpuWaitForCpu(acc: Access, P: HostCpuPlaces, task: number): void {
  while (acc.loadAcquire(P.running, 'sched:running-read') !== task) spinThenWait(acc, P.running, 1 - task, 'sched:wait-cpu', task === TASK_VCPU ? 'CPU0 back from the other task' : 'CPU0 to switch to the other task');
}

/**
 * Return to user mode on the CPU for `task`: the user-return notifiers run, and user code then
 * runs on what they left.
 * @kvm kernel/entry/common.c exit_to_user_mode_prepare (fire_user_return_notifiers)
 */
export function hostCpuReturnToUser(acc: Access, P: HostCpuPlaces, cpu: PcpuId, task: number, hooks: HostCpuHooks): void {
  const uret = snapshotUretCache(acc, P, cpu);
  fireUserReturnNotifiers(acc, P, cpu);
  hooks.observe('user-return', 'user-return', task, { uret });
}

/**
 * KVM_RUN returns to user space: vcpu_put, then the return to user mode, and the VMM's next
 * ioctl enters the kernel through SYSCALL (LSTAR, STAR, FMASK).
 * @kvm virt/kvm/kvm_main.c kvm_vcpu_ioctl (vcpu_put); kernel/entry/common.c exit_to_user_mode_prepare
 */
export function hostCpuVcpuExitToUser(acc: Access, P: HostCpuPlaces, cpu: PcpuId, v: VcpuId, hooks: HostCpuHooks): void {
  tdxVcpuPut(acc, P, v);
  hostCpuNmiPoint(acc, P, cpu, 'vcpu-put');
  hostCpuReturnToUser(acc, P, cpu, TASK_VCPU, hooks);
}

/**
 * The exit handler with IRQs on and preemption enabled: an IRQ here may preempt the vCPU task on
 * its way out; then tdx_handle_exit's host-state part (with the patches).
 * @kvm arch/x86/kvm/vmx/tdx.c tdx_handle_exit
 */
export function hostCpuTdHandleExit(acc: Access, P: HostCpuPlaces, cpu: PcpuId, v: VcpuId, patches: PatchSet, hooks: HostCpuHooks): void {
  hostCpuIrqWindow(acc, P, 'handle-exit');
  hostCpuPreemptPoint(acc, P, cpu, v, 'handle-exit', hooks);
  tdxHandleExitHostState(acc, P, v, patches);
  hostCpuNmiPoint(acc, P, cpu, 'handle-exit');
}

/**
 * The TD in SEAM non-root on the CPU, polled `spins` times: a host NMI exits it (the NMI exit
 * consumes the NMI), a host IRQ exits it; else it exits for a TDVMCALL.
 * @sdm Intel TDX module base architecture, TD exits for host NMIs and external interrupts
 */
export function hostCpuTdRun(acc: Access, P: HostCpuPlaces, cpu: PcpuId, spins: number): TdExitReason {
  for (let i = 0; i < spins; i++) {
    if (cpuNmiPending(acc, cpu, 'guest:nmi-poll') && cpuNmiAccept(acc, cpu, 'guest:nmi-exit')) return 'nmi';
    if (doorbellPending(acc, P.irq, 'guest:irq-poll') !== 0) return 'external-interrupt';
  }
  return 'tdvmcall';
}

/**
 * One vcpu_enter_guest of TD vCPU v on the CPU, with every instruction boundary an NMI can hit
 * and the IRQ window after the exit: prepare_switch_to_guest, IRQs off, host breakpoints parked
 * (DR7), the DEBUGCTL snapshot, tdx_vcpu_run (with the patches), hw_breakpoint_restore, IRQs on,
 * preempt_enable.
 * @kvm arch/x86/kvm/x86.c vcpu_enter_guest
 */
export function hostCpuTdVcpuEnterGuest(acc: Access, P: HostCpuPlaces, cpu: PcpuId, v: VcpuId, spins: number, patches: PatchSet, hooks: HostCpuHooks): TdExitReason {
  tdxPrepareSwitchToGuest(acc, P, v);
  hostCpuNmiPoint(acc, P, cpu, 'switch-to-guest');
  // local_irq_disable(); vcpu->mode = IN_GUEST_MODE
  hostCpuNmiPoint(acc, P, cpu, 'irqs-off');
  if (hwBreakpointActive(acc, P, cpu)) {
    writeHostReg(acc, P, cpu, 'DR7', DR7_FIXED_1);
    hostCpuNmiPoint(acc, P, cpu, 'dr7-cleared');
  }
  kvmSnapshotHostDebugctl(acc, P, v, cpu);
  hostCpuNmiPoint(acc, P, cpu, 'debugctl-snapshot');
  const reason = tdxVcpuRun(
    acc,
    P,
    v,
    TD_LINUX_GUEST,
    {
      at: (point) => void hostCpuNmiPoint(acc, P, cpu, point),
      guest: () => hostCpuTdRun(acc, P, cpu, spins),
      handleNmi: () => {
        hostCpuRunHandler(acc, P, HOST_HANDLER.NMI, 'vmx-handle-nmi');
        cpuNmiIret(acc, cpu);
      },
    },
    patches,
  );
  if (hwBreakpointActive(acc, P, cpu)) hwBreakpointRestore(acc, P, cpu);
  hostCpuNmiPoint(acc, P, cpu, 'hw-breakpoint-restored');
  // vcpu->mode = OUTSIDE_GUEST_MODE; handle_exit_irqoff; kvm_before_interrupt; local_irq_enable()
  hooks.observe('irq-enable', 'irqs-on', TASK_VCPU);
  hostCpuNmiPoint(acc, P, cpu, 'irqs-on');
  hostCpuIrqWindow(acc, P, 'irqs-on');
  // local_irq_disable(); kvm_after_interrupt; ...; local_irq_enable(); preempt_enable()
  hostCpuPreemptPoint(acc, P, cpu, v, 'preempt-enable', hooks);
  return reason;
}

/**
 * The perf IPI handler reprogramming perf on the CPU: LBR on or off in DEBUGCTL (`lbr`), or a
 * host breakpoint armed or removed at `breakpointAddr`.
 * @kvm arch/x86/events/intel/lbr.c intel_pmu_lbr_enable_all / _disable_all; arch/x86/kernel/hw_breakpoint.c arch_install_hw_breakpoint / arch_uninstall_hw_breakpoint
 */
export function hostCpuPerfReprogram(acc: Access, P: HostCpuPlaces, cpu: PcpuId, lbr: boolean, breakpointAddr: bigint): void {
  if (lbr) {
    if ((debugctlWant(acc, P, cpu) & DEBUGCTLMSR_LBR) !== 0n) intelPmuLbrDisable(acc, P, cpu);
    else intelPmuLbrEnable(acc, P, cpu);
  } else if (hwBreakpointActive(acc, P, cpu)) {
    archUninstallHwBreakpoint(acc, P, cpu, 0);
  } else {
    archInstallHwBreakpoint(acc, P, cpu, 0, breakpointAddr);
  }
}

/**
 * A task is woken on the CPU: queued there, the reschedule IPI tells the CPU.
 * @kvm kernel/sched/core.c try_to_wake_up (resched_curr → smp_send_reschedule)
 */
export function hostCpuWakeOther(acc: Access, P: HostCpuPlaces): void {
  doorbellRing(acc, P.irq, HOST_IRQ.RESCHEDULE, 'sched:resched-ipi');
}

/**
 * A VMX vCPU task on the CPU loads its guest's user-return MSRs (skipping those the cache says
 * are already loaded).
 * @kvm arch/x86/kvm/vmx/vmx.c vmx_prepare_switch_to_guest (kvm_set_user_return_msr for each guest_uret_msrs entry)
 */
export function hostCpuVmxPrepareSwitchToGuest(acc: Access, P: HostCpuPlaces, cpu: PcpuId, guestUret: Readonly<Partial<Record<HostRegName, bigint>>>): void {
  KVM_URET_REGS.forEach((reg, s) => kvmSetUserReturnMsr(acc, P, cpu, s, guestUret[reg] ?? 0n));
}

/**
 * The other task blocks again: its context is saved and schedule() switches the CPU back to the
 * vCPU task.
 * @kvm kernel/sched/core.c __schedule (context_switch → __switch_to)
 */
export function hostCpuOtherTaskBlocks(acc: Access, P: HostCpuPlaces, cpu: PcpuId): void {
  saveFsgs(acc, P, cpu, TASK_OTHER);
  switchToNext(acc, P, cpu, TASK_VCPU);
  acc.storeRelease(P.running, TASK_VCPU, 'sched:switch-to-vcpu');
  acc.notify(P.running, 1, 'sched:switch-notify');
}
