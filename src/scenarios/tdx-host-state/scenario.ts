/**
 * tdx-host-state — the pCPU's host state across TD entry/exit (domain notes 9.1, 9.2 HS-1..HS-3;
 * seed 002 "[PATCH 0/7] KVM: TDX: TD vcpu enter/exit", Adrian Hunter, Nov 2024). See README.md
 * beside this file.
 *
 *   CPU0: td-vcpu (VMM vCPU thread)                     host-irqs (CPU0's IRQ/NMI sources)
 *   vcpu_enter_guest: prepare_switch_to_guest;           perf IPI / device IRQ / NMI at CPU0 at
 *     IRQs off; DR7 cleared if host breakpoints;           seeded random times; the handler runs
 *     host_debugctl snapshot                               on CPU0 when CPU0 takes it (NMI: at
 *   tdx_vcpu_run: TDH.VP.ENTER (guest runs; the            any instruction boundary; IRQ: where
 *     TD exit clobbers DRs, DEBUGCTL, XCR0/XSS/PKRU,       IRQs are on) and reads CPU0's state;
 *     KERNEL_GS_BASE, SYSCALL MSRs) → DEBUGCTL restore     the perf IPI also toggles LBR in
 *     → xsave restore → guest_entered = true               DEBUGCTL or a host breakpoint
 *   hw_breakpoint_restore; IRQs on (IRQs taken here)
 *   preempt_enable (preemption); handle_exit             other-task (another task on CPU0)
 *   ... at the end of the round: vcpu_put, return to     wakes at a seeded time: reschedule IPI,
 *     user mode (user-return notifier), SYSCALL            runs on CPU0 when the vCPU thread is
 *                                                          preempted (vcpu_put, context switch):
 *                                                          returns to user mode, or first runs a
 *                                                          VMX vCPU (kvm_set_user_return_msr)
 *
 *   buggy-no-debugctl: tdx_vcpu_run does not restore DEBUGCTL (the seed's "appears to have been
 *     overlooked"): once perf has enabled LBR on CPU0, IRQ/NMI handlers, the context switch and
 *     user mode run with LBR off.
 *   buggy-uret-cache: guest_entered is set only in the exit handler (after preempt_enable): a
 *     preemption in between puts the vCPU after a real entry without updating the user-return
 *     cache; the other task returns to user mode with the TD's SYSCALL MSRs, or its VMX vCPU skips
 *     WRMSRs the cache thinks unnecessary.
 *
 * Shared words (scenario scratch, all through Access): CPU0's registers (src/host/msr), its
 * user-return cache (src/host/uret), host software state and two tasks (src/host/host-state),
 * the TD vCPU's bookkeeping and the TDX module's per-LP words (src/kvm/vmx/tdx-host-state); CPU0's
 * IRQ doorbell (pending bits), NMI latch, an interrupt hand-off word, the task on CPU0, and a log
 * of flagged observations.
 */
import type { Access } from '../../mem/access.js';
import { planScratch, type Addr, type Layout } from '../../mem/layout.js';
import { doorbellPending, doorbellRing, doorbellTake } from '../../sync/doorbell.js';
import { spinThenWait } from '../../sync/wait.js';
import { DEBUGCTLMSR_LBR, DR7_FIXED_1, HOST_REGS, HOST_REG_BLOCK_WORDS, initHostRegs, peekU64, pokeU64, snapshotHostRegs, writeHostReg, type HostRegName } from '../../host/msr.js';
import { KVM_URET_REGS, URET_BLOCK_WORDS, fireUserReturnNotifiers, kvmSetUserReturnMsr, kvmUserReturnMsrCpuOnline, snapshotUretCache, type UretCacheSnapshot } from '../../host/uret.js';
import {
  HOST_CPU_BLOCK_WORDS,
  HOST_POINTS,
  hostBootRegs,
  KVM_HOST_XCR0,
  KVM_HOST_XSS,
  TASK_BLOCK_WORDS,
  archInstallHwBreakpoint,
  archUninstallHwBreakpoint,
  currentTask,
  debugctlWant,
  hostExpect,
  hwBreakpointActive,
  hwBreakpointRestore,
  initHostCpu,
  initTask,
  intelPmuLbrDisable,
  intelPmuLbrEnable,
  saveFsgs,
  switchToNext,
  type HostBootValues,
  type HostPoint,
} from '../../host/host-state.js';
import {
  TD_HS_BLOCK_WORDS,
  TDX_LP_BLOCK_WORDS,
  TD_LINUX_GUEST,
  kvmSnapshotHostDebugctl,
  tdxMarkGuestEntered,
  tdxPrepareSwitchToGuest,
  tdxVcpuHostStateInit,
  tdxVcpuLoad,
  tdxVcpuPut,
  tdxVcpuRun,
  type TdExitReason,
  type TdxHostStatePlaces,
  type TdxRunSteps,
} from '../../kvm/vmx/tdx-host-state.js';
import { hostObserversSeeHostValues, hostStateRestoredBeforeIrqs, uretCacheCoherent, type HostObservation, type HostObserverKind, type HostStateRound } from '../../invariants/host-state.js';
import type { Violation } from '../../invariants/checks.js';
import type { ScenarioCtx, ScenarioDef, ScenarioParams } from '../define.js';

/** The TD vCPU and the pCPU everything happens on. */
const TD_VCPU = 0;
const CPU0 = 0;
/** Tasks: the VMM's vCPU thread, and another task that shares CPU0. */
const TASK_VCPU = 0;
const TASK_OTHER = 1;
const TASK_NAMES = ['vmm-vcpu-thread', 'other-task'] as const;

/** Bits of CPU0's IRQ doorbell. */
const IRQ_PERF_IPI = 1;
const IRQ_DEVICE = 2;
const IRQ_RESCHEDULE = 4;

/**
 * Seeded timing, the same for every variant (upper bounds of local loop iterations / guest
 * polls; counts per round).
 * @emulator
 */
export const HOST_STATE_TIMING = {
  /** Guest polls in SEAM non-root before a TDVMCALL exit (an interrupt or NMI exits earlier). */
  GUEST_SPINS: 400,
  /** host-irqs: interrupts raised per round, and the pause before each. */
  EVENTS_PER_ROUND: 3,
  EVENT_GAP_SPINS: 3000,
  /** other-task: wake-ups per round, and the pause before each. */
  WAKES_PER_ROUND: 1,
  WAKE_GAP_SPINS: 6000,
  /** One TDVMCALL exit in this many goes to user space (KVM_RUN returns). */
  USER_EXIT_ONE_IN: 8,
} as const;

/**
 * Boot-time host values of CPU0 (node 1, cpu 0): the kernel's SYSCALL MSRs (syscall_init), its
 * TSC_AUX, TSX enabled (TSX_CTRL 0), the default UMWAIT control, no LBR, no breakpoints.
 */
const HOST_BOOT_REGS = hostBootRegs(0, 1);
const HOST_BOOT: HostBootValues = { tsxCtrl: HOST_BOOT_REGS.TSX_CTRL!, umwaitControl: HOST_BOOT_REGS.UMWAIT_CONTROL! };
/** User GS bases of the two tasks (their TLS uses GS). */
const TASK_GSBASE = [0x7f3a2c000000n, 0x7f3a2e400000n] as const;
/** A VMX Linux guest's user-return MSR values, by slot: its STAR and SYSCALL_MASK equal the host's. */
const VMX_GUEST_URET: Readonly<Partial<Record<HostRegName, bigint>>> = { SYSCALL_MASK: 0x257fd5n, LSTAR: 0xffffffff81e00080n, TSC_AUX: 0n, STAR: 0x0023001000000000n };
/** Where perf arms its breakpoint. */
const BREAKPOINT_ADDR = 0xffffffff81234560n;

/** Log capacity (flagged observations per round). */
const OBS_CAP = 32;
/** Words of one log record. */
const REC = {
  KIND: 0,
  POINT: 1,
  TASK: 2,
  /** bit 0: savedGsbase present; bit 1: uret present; bit 2: notifier registered. */
  FLAGS: 3,
  REGS: 4,
  EXP_DEBUGCTL: 38,
  EXP_CPU_DR7: 40,
  EXP_DEBUGREG: 42,
  EXP_PKRU: 50,
  EXP_USER_GSBASE: 52,
  SAVED_GSBASE: 54,
  URET_HOST: 56,
  URET_CURR: 64,
  URET_HW: 72,
  WORDS: 80,
} as const;
const KINDS: readonly HostObserverKind[] = ['irq-enable', 'irq', 'nmi', 'context-switch', 'user-return', 'vmx-entry'];

function plan() {
  return planScratch({
    regs: HOST_REG_BLOCK_WORDS,
    uret: URET_BLOCK_WORDS,
    hostCpu: HOST_CPU_BLOCK_WORDS,
    tasks: 2 * TASK_BLOCK_WORDS,
    td: TD_HS_BLOCK_WORDS,
    lp: TDX_LP_BLOCK_WORDS,
    irq: 2,
    nmi: 1,
    gate: 1,
    sched: 2,
    ctl: 2,
    log: OBS_CAP * REC.WORDS,
  });
}
const PLAN = plan();

/** This run's words. */
interface Places extends TdxHostStatePlaces {
  /** CPU0's IRQ doorbell (pending bits, waiter flag). */
  irq: Addr;
  /** CPU0's NMI latch. */
  nmi: Addr;
  /** Interrupt hand-off: 0 idle, else (kind | point << 8 | 1 << 16) while CPU0 runs the handler. */
  gate: Addr;
  /** Task that holds CPU0. */
  running: Addr;
  /** CPU0's need_resched. */
  needResched: Addr;
  /** Sources done this round. */
  srcDone: Addr;
  /** Records in the log. */
  logCount: Addr;
  rec(i: number, w: number): Addr;
}

const cache = new WeakMap<Access, Places>();
function places(acc: Access): Places {
  let P = cache.get(acc);
  if (P) return P;
  const L: Layout = acc.layout;
  const at = PLAN.at;
  P = {
    regs: () => L.scratch(at.regs),
    uret: () => L.scratch(at.uret),
    hostCpu: () => L.scratch(at.hostCpu),
    task: (t) => L.scratch(at.tasks + t * TASK_BLOCK_WORDS),
    td: () => L.scratch(at.td),
    tdxLp: () => L.scratch(at.lp),
    irq: L.scratch(at.irq),
    nmi: L.scratch(at.nmi),
    gate: L.scratch(at.gate),
    running: L.scratch(at.sched),
    needResched: L.scratch(at.sched + 1),
    srcDone: L.scratch(at.ctl),
    logCount: L.scratch(at.ctl + 1),
    rec: (i, w) => L.scratch(at.log + i * REC.WORDS + w),
  };
  cache.set(acc, P);
  return P;
}

/**
 * KVM's one differing step per variant inside tdx_vcpu_run.
 * @kvm arch/x86/kvm/vmx/tdx.c tdx_vcpu_run
 */
export function hostStateRunSteps(p: ScenarioParams): TdxRunSteps {
  if (p.variant.name === 'buggy-no-debugctl') {
    // BUG (deliberate): no "update_debugctlmsr(vcpu->arch.host_debugctl)" after the TD run —
    // the TDX module keeps only DEBUGCTL bits 1, 12 and 14, so perf's LBR enable is lost (the
    // seed's "MSR IA32_DEBUGCTL appears to have been overlooked").
    return { restoreDebugctl: false, markGuestEntered: true };
  }
  if (p.variant.name === 'buggy-uret-cache') {
    // BUG (deliberate): guest_entered is not set in tdx_vcpu_run but only by the exit handler
    // (hostStateHandleExit), after preempt_enable(): a vcpu_put in between — the vCPU thread
    // preempted right after the TD run — skips the user-return cache update after a real entry.
    return { restoreDebugctl: true, markGuestEntered: false };
  }
  return { restoreDebugctl: true, markGuestEntered: true };
}

/** A fresh observation of CPU0 now, with task `task` current (emulator bookkeeping reads). */
function observation(acc: Access, P: Places, kind: HostObserverKind, point: HostPoint, task: number, extra: { savedGsbase?: bigint; uret?: UretCacheSnapshot } = {}): HostObservation {
  const uretHost = snapshotUretCache(acc, P, CPU0).slots.map((s) => s.host);
  const o: HostObservation = { kind, pcpu: CPU0, point, task: TASK_NAMES[task] ?? `task${task}`, regs: snapshotHostRegs(acc, P, CPU0), expect: hostExpect(acc, P, CPU0, task, HOST_BOOT, uretHost) };
  if (extra.savedGsbase !== undefined) o.savedGsbase = extra.savedGsbase;
  if (extra.uret !== undefined) o.uret = extra.uret;
  return o;
}

function judge(r: HostStateRound): Violation[] {
  return [...hostStateRestoredBeforeIrqs(r), ...uretCacheCoherent(r), ...hostObserversSeeHostValues(r)];
}

/**
 * Host code ran on CPU0 and saw `o`: the checkers judge it at once; flagged observations go to
 * the round's log for `check` (clean ones are counted out, so a long round cannot fill the log).
 */
function observe(acc: Access, P: Places, o: HostObservation): void {
  if (judge({ pcpu: CPU0, observations: [o] }).length === 0) return;
  const i = acc.atomicAdd(P.logCount, 1, 'log:append');
  if (i >= OBS_CAP) return;
  acc.poke(P.rec(i, REC.KIND), KINDS.indexOf(o.kind));
  acc.poke(P.rec(i, REC.POINT), HOST_POINTS.indexOf(o.point));
  acc.poke(P.rec(i, REC.TASK), TASK_NAMES.indexOf(o.task as (typeof TASK_NAMES)[number]));
  acc.poke(P.rec(i, REC.FLAGS), (o.savedGsbase !== undefined ? 1 : 0) | (o.uret ? 2 : 0) | (o.uret?.registered ? 4 : 0));
  HOST_REGS.forEach((r) => pokeU64(acc, P.rec(i, REC.REGS + r.word), o.regs[r.name]));
  pokeU64(acc, P.rec(i, REC.EXP_DEBUGCTL), o.expect.debugctl);
  pokeU64(acc, P.rec(i, REC.EXP_CPU_DR7), o.expect.cpuDr7);
  o.expect.cpuDebugreg.forEach((v, k) => pokeU64(acc, P.rec(i, REC.EXP_DEBUGREG + 2 * k), v));
  pokeU64(acc, P.rec(i, REC.EXP_PKRU), o.expect.pkru);
  pokeU64(acc, P.rec(i, REC.EXP_USER_GSBASE), o.expect.userGsbase);
  pokeU64(acc, P.rec(i, REC.SAVED_GSBASE), o.savedGsbase ?? 0n);
  KVM_URET_REGS.forEach((_, s) => {
    pokeU64(acc, P.rec(i, REC.URET_HOST + 2 * s), o.expect.uretHost[s] ?? 0n);
    pokeU64(acc, P.rec(i, REC.URET_CURR + 2 * s), o.uret?.slots[s]?.curr ?? 0n);
    pokeU64(acc, P.rec(i, REC.URET_HW + 2 * s), o.uret?.slots[s]?.hw ?? 0n);
  });
}

/** The round's log as the checkers' record. */
function roundRecord(acc: Access, P: Places): HostStateRound {
  const n = Math.min(OBS_CAP, acc.peek(P.logCount));
  const observations: HostObservation[] = [];
  for (let i = 0; i < n; i++) {
    const w = (k: number) => peekU64(acc, P.rec(i, k));
    const flags = acc.peek(P.rec(i, REC.FLAGS));
    const regs = {} as Record<HostRegName, bigint>;
    for (const r of HOST_REGS) regs[r.name] = w(REC.REGS + r.word);
    const uretHost = KVM_URET_REGS.map((_, s) => w(REC.URET_HOST + 2 * s));
    const o: HostObservation = {
      kind: KINDS[acc.peek(P.rec(i, REC.KIND))] ?? 'irq',
      pcpu: CPU0,
      point: HOST_POINTS[acc.peek(P.rec(i, REC.POINT))] ?? 'other-task',
      task: TASK_NAMES[acc.peek(P.rec(i, REC.TASK))] ?? '?',
      regs,
      expect: {
        debugctl: w(REC.EXP_DEBUGCTL),
        cpuDr7: w(REC.EXP_CPU_DR7),
        cpuDebugreg: [0, 1, 2, 3].map((k) => w(REC.EXP_DEBUGREG + 2 * k)),
        xcr0: KVM_HOST_XCR0,
        xss: KVM_HOST_XSS,
        pkru: w(REC.EXP_PKRU),
        tsxCtrl: HOST_BOOT.tsxCtrl,
        umwaitControl: HOST_BOOT.umwaitControl,
        userGsbase: w(REC.EXP_USER_GSBASE),
        uretHost,
      },
    };
    if (flags & 1) o.savedGsbase = w(REC.SAVED_GSBASE);
    if (flags & 2) {
      o.uret = {
        registered: (flags & 4) !== 0,
        slots: KVM_URET_REGS.map((reg, s) => ({ reg, host: uretHost[s]!, curr: w(REC.URET_CURR + 2 * s), hw: w(REC.URET_HW + 2 * s) })),
      };
    }
    observations.push(o);
  }
  return { pcpu: CPU0, observations };
}

/* ---------------------------------------------------------------------------------------------
 * CPU0's interrupts: a handler runs on CPU0 while the code it interrupted waits; the handler's
 * code runs on the source's thread (host-irqs) and reads CPU0's words at that moment.
 * ------------------------------------------------------------------------------------------- */

const KIND_NMI = 1;
const KIND_PERF_IPI = 2;
const KIND_DEVICE = 3;

/** CPU0 enters the handler for `kind` at `point` and waits for it to return (IRET). */
function runHandler(acc: Access, P: Places, kind: number, point: HostPoint): void {
  const code = kind | (HOST_POINTS.indexOf(point) << 8) | (1 << 16);
  acc.xchg(P.gate, code, 'irq:handler-enter');
  acc.notify(P.gate, 1, 'irq:handler-notify');
  while (acc.readOnce(P.gate, 'irq:handler-wait') !== 0) spinThenWait(acc, P.gate, code, 'irq:handler-wait', 'the interrupt handler on CPU0 to return');
}

/**
 * An instruction boundary of CPU0: a latched NMI is taken here whatever the IF flag (the
 * handler runs, then IRET). Returns whether one was taken.
 * @sdm SDM vol. 3, "Nonmaskable Interrupt (NMI)" (delivered regardless of RFLAGS.IF)
 */
export function hostStateNmiPoint(acc: Access, point: HostPoint): boolean {
  const P = places(acc);
  if (acc.readOnce(P.nmi, 'nmi:poll') === 0 || acc.xchg(P.nmi, 0, 'nmi:accept') === 0) return false;
  runHandler(acc, P, KIND_NMI, point);
  return true;
}

/**
 * CPU0 with IRQs enabled at `point`: take what the IRQ doorbell holds — the reschedule IPI sets
 * need_resched, a perf IPI or device IRQ runs its handler.
 * @kvm arch/x86/kernel/irq.c common_interrupt; arch/x86/kernel/smp.c sysvec_reschedule_ipi
 */
export function hostStateIrqWindow(acc: Access, point: HostPoint): void {
  const P = places(acc);
  if (doorbellPending(acc, P.irq, 'irq:poll') === 0) return;
  const bits = doorbellTake(acc, P.irq, 'irq:ack');
  if (bits & IRQ_RESCHEDULE) acc.writeOnce(P.needResched, 1, 'sched:need-resched-set');
  if (bits & IRQ_PERF_IPI) runHandler(acc, P, KIND_PERF_IPI, point);
  if (bits & IRQ_DEVICE) runHandler(acc, P, KIND_DEVICE, point);
}

/* ---------------------------------------------------------------------------------------------
 * The TD vCPU thread (role 0).
 * ------------------------------------------------------------------------------------------- */

/**
 * schedule() from the vCPU thread: the sched-out preempt notifier puts the vCPU, the context
 * switch saves the vCPU thread's inactive GS base and hands CPU0 to the other task; when that
 * task blocks again, the sched-in notifier loads the vCPU.
 * @kvm kernel/sched/core.c __schedule (fire_sched_out_preempt_notifiers → kvm_sched_out → kvm_arch_vcpu_put; context_switch → __switch_to)
 */
function vcpuSchedule(acc: Access, P: Places, point: HostPoint): void {
  acc.writeOnce(P.needResched, 0, 'sched:need-resched-clear');
  tdxVcpuPut(acc, P, TD_VCPU);
  hostStateNmiPoint(acc, 'vcpu-put');
  const saved = saveFsgs(acc, P, CPU0, TASK_VCPU);
  observe(acc, P, observation(acc, P, 'context-switch', point, TASK_VCPU, { savedGsbase: saved }));
  switchToNext(acc, P, CPU0, TASK_OTHER);
  acc.storeRelease(P.running, TASK_OTHER, 'sched:switch-to-other');
  acc.notify(P.running, 1, 'sched:switch-notify');
  while (acc.loadAcquire(P.running, 'sched:running-read') !== TASK_VCPU) spinThenWait(acc, P.running, TASK_OTHER, 'sched:wait-cpu', 'CPU0 back from the other task');
  tdxVcpuLoad(acc, P, TD_VCPU, CPU0);
}

/** A preemption point: schedule if the reschedule IPI set need_resched. */
function preemptPoint(acc: Access, P: Places, point: HostPoint): void {
  if (acc.readOnce(P.needResched, 'sched:need-resched-read') !== 0) vcpuSchedule(acc, P, point);
}

/**
 * KVM_RUN returns to user space: vcpu_put, then the return to user mode runs the user-return
 * notifiers, and the VMM's next ioctl enters the kernel through SYSCALL (LSTAR, STAR, FMASK).
 * @kvm virt/kvm/kvm_main.c kvm_vcpu_ioctl (vcpu_put); kernel/entry/common.c exit_to_user_mode_prepare
 */
function vcpuExitToUser(acc: Access, P: Places): void {
  tdxVcpuPut(acc, P, TD_VCPU);
  hostStateNmiPoint(acc, 'vcpu-put');
  returnToUser(acc, P, TASK_VCPU);
}

/** Return to user mode on CPU0 for `task`, and what the user code then runs on. */
function returnToUser(acc: Access, P: Places, task: number): void {
  const uret = snapshotUretCache(acc, P, CPU0);
  fireUserReturnNotifiers(acc, P, CPU0);
  observe(acc, P, observation(acc, P, 'user-return', 'user-return', task, { uret }));
}

/**
 * The exit handler with IRQs on and preemption enabled: an IRQ here may preempt the vCPU
 * thread on its way out; then, in buggy-uret-cache only, guest_entered is set.
 * @kvm arch/x86/kvm/vmx/tdx.c tdx_handle_exit
 */
export function hostStateHandleExit(acc: Access, steps: TdxRunSteps): void {
  const P = places(acc);
  hostStateIrqWindow(acc, 'handle-exit');
  preemptPoint(acc, P, 'handle-exit');
  if (!steps.markGuestEntered) tdxMarkGuestEntered(acc, P, TD_VCPU);
  hostStateNmiPoint(acc, 'handle-exit');
}

/** The guest inside the TD: polls until an interrupt or NMI for CPU0 makes it exit, else TDVMCALL. */
function tdGuest(acc: Access, P: Places): TdExitReason {
  for (let i = 0; i < HOST_STATE_TIMING.GUEST_SPINS; i++) {
    if (acc.readOnce(P.nmi, 'guest:nmi-poll') !== 0 && acc.xchg(P.nmi, 0, 'guest:nmi-exit') !== 0) return 'nmi';
    if (doorbellPending(acc, P.irq, 'guest:irq-poll') !== 0) return 'external-interrupt';
  }
  return 'tdvmcall';
}

/**
 * One vcpu_enter_guest of the TD vCPU on CPU0, with every instruction boundary an NMI can hit
 * and the IRQ window after the exit.
 * @kvm arch/x86/kvm/x86.c vcpu_enter_guest
 */
function vcpuEnterGuest(acc: Access, P: Places, steps: TdxRunSteps): TdExitReason {
  // preempt_disable(); kvm_x86_call(prepare_switch_to_guest)
  tdxPrepareSwitchToGuest(acc, P, TD_VCPU);
  hostStateNmiPoint(acc, 'switch-to-guest');
  // local_irq_disable(); vcpu->mode = IN_GUEST_MODE
  hostStateNmiPoint(acc, 'irqs-off');
  const breakpoints = hwBreakpointActive(acc, P, CPU0);
  if (breakpoints) {
    writeHostReg(acc, P, CPU0, 'DR7', DR7_FIXED_1);
    hostStateNmiPoint(acc, 'dr7-cleared');
  }
  kvmSnapshotHostDebugctl(acc, P, TD_VCPU, CPU0);
  hostStateNmiPoint(acc, 'debugctl-snapshot');
  const reason = tdxVcpuRun(
    acc,
    P,
    TD_VCPU,
    TD_LINUX_GUEST,
    {
      at: (point) => void hostStateNmiPoint(acc, point),
      guest: () => tdGuest(acc, P),
      handleNmi: () => runHandler(acc, P, KIND_NMI, 'vmx-handle-nmi'),
    },
    steps,
  );
  if (hwBreakpointActive(acc, P, CPU0)) hwBreakpointRestore(acc, P, CPU0);
  hostStateNmiPoint(acc, 'hw-breakpoint-restored');
  // vcpu->mode = OUTSIDE_GUEST_MODE; handle_exit_irqoff; kvm_before_interrupt; local_irq_enable()
  observe(acc, P, observation(acc, P, 'irq-enable', 'irqs-on', TASK_VCPU));
  hostStateNmiPoint(acc, 'irqs-on');
  hostStateIrqWindow(acc, 'irqs-on');
  // local_irq_disable(); kvm_after_interrupt; ...; local_irq_enable(); preempt_enable()
  preemptPoint(acc, P, 'preempt-enable');
  return reason;
}

/** The TD vCPU thread's round: KVM_RUN until both sources are done, then back to user space. */
function vcpuRound(ctx: ScenarioCtx): void {
  const { acc, prng, params } = ctx;
  const P = places(acc);
  const steps = hostStateRunSteps(params);
  tdxVcpuLoad(acc, P, TD_VCPU, CPU0);
  for (;;) {
    // vcpu_run loop top: IRQs on, preemptible (xfer_to_guest_mode_handle_work).
    hostStateIrqWindow(acc, 'run-loop');
    preemptPoint(acc, P, 'run-loop');
    hostStateNmiPoint(acc, 'run-loop');
    if (acc.readOnce(P.srcDone, 'ctl:src-done-read') === 2) break;
    const reason = vcpuEnterGuest(acc, P, steps);
    hostStateHandleExit(acc, steps);
    if (reason === 'tdvmcall' && prng.below(HOST_STATE_TIMING.USER_EXIT_ONE_IN) === 0) {
      // The TDVMCALL needs the VMM (e.g. port I/O): KVM_RUN returns, the VMM calls it again.
      vcpuExitToUser(acc, P);
      tdxVcpuLoad(acc, P, TD_VCPU, CPU0);
    }
  }
  vcpuExitToUser(acc, P);
}

/* ---------------------------------------------------------------------------------------------
 * host-irqs (role 1) and other-task (role 2).
 * ------------------------------------------------------------------------------------------- */

function pause(ctx: ScenarioCtx, max: number, label: string): void {
  const n = ctx.prng.below(max);
  for (let i = 0; i < n; i++) ctx.acc.cpuRelax(label);
}

/** Wait until CPU0 enters a handler; returns the hand-off code. */
function awaitHandlerEntry(acc: Access, P: Places): number {
  for (;;) {
    const g = acc.readOnce(P.gate, 'irq:gate-poll');
    if (g !== 0) return g;
    spinThenWait(acc, P.gate, 0, 'irq:gate-poll', 'CPU0 to take the interrupt');
  }
}

/**
 * The handler body on CPU0 (perf IPI, device IRQ or NMI): it reads CPU0's state as its code
 * consumes it; a perf IPI then reprograms perf — LBR on/off in DEBUGCTL, or a breakpoint.
 * @kvm arch/x86/events/core.c perf_event_nmi_handler; arch/x86/events/intel/lbr.c intel_pmu_lbr_enable_all; arch/x86/kernel/hw_breakpoint.c arch_install_hw_breakpoint
 */
function handlerBody(ctx: ScenarioCtx, P: Places, code: number): void {
  const { acc, prng } = ctx;
  const kind = code & 0xff;
  const point = HOST_POINTS[(code >>> 8) & 0xff] ?? 'run-loop';
  const task = currentTask(acc, P, CPU0);
  observe(acc, P, observation(acc, P, kind === KIND_NMI ? 'nmi' : 'irq', point, task));
  if (kind !== KIND_PERF_IPI) return;
  if (prng.below(2) === 0) {
    if ((debugctlWant(acc, P, CPU0) & DEBUGCTLMSR_LBR) !== 0n) intelPmuLbrDisable(acc, P, CPU0);
    else intelPmuLbrEnable(acc, P, CPU0);
  } else if (hwBreakpointActive(acc, P, CPU0)) {
    archUninstallHwBreakpoint(acc, P, CPU0, 0);
  } else {
    archInstallHwBreakpoint(acc, P, CPU0, 0, BREAKPOINT_ADDR);
  }
}

/** host-irqs: EVENTS_PER_ROUND interrupts at CPU0, each after a seeded pause, each handled. */
function irqSourceRound(ctx: ScenarioCtx): void {
  const { acc, prng } = ctx;
  const P = places(acc);
  for (let k = 0; k < HOST_STATE_TIMING.EVENTS_PER_ROUND; k++) {
    pause(ctx, HOST_STATE_TIMING.EVENT_GAP_SPINS, 'src:gap');
    const pick = prng.below(10);
    if (pick < 3) acc.xchg(P.nmi, 1, 'nmi:raise');
    else doorbellRing(acc, P.irq, pick < 7 ? IRQ_PERF_IPI : IRQ_DEVICE, 'irq:raise');
    const code = awaitHandlerEntry(acc, P);
    handlerBody(ctx, P, code);
    acc.xchg(P.gate, 0, 'irq:iret');
    acc.notify(P.gate, 1, 'irq:iret-notify');
  }
  acc.atomicAdd(P.srcDone, 1, 'ctl:src-done');
}

/**
 * The other task's turn on CPU0: either a VMM I/O thread that returns to user mode, or a VMX
 * vCPU thread whose vmx_prepare_switch_to_guest loads its user-return MSRs (skipping those the
 * cache says are already loaded), runs its guest, and returns to user mode; then it blocks and
 * switches back to the vCPU thread.
 * @kvm arch/x86/kvm/vmx/vmx.c vmx_prepare_switch_to_guest (kvm_set_user_return_msr for each guest_uret_msrs entry)
 */
function otherTaskTurn(ctx: ScenarioCtx, P: Places): void {
  const { acc, prng } = ctx;
  if (prng.below(2) === 0) {
    observe(acc, P, observation(acc, P, 'vmx-entry', 'other-task', TASK_OTHER, { uret: snapshotUretCache(acc, P, CPU0) }));
    KVM_URET_REGS.forEach((reg, s) => kvmSetUserReturnMsr(acc, P, CPU0, s, VMX_GUEST_URET[reg] ?? 0n));
  }
  returnToUser(acc, P, TASK_OTHER);
  // The task blocks again: schedule() back to the vCPU thread.
  saveFsgs(acc, P, CPU0, TASK_OTHER);
  switchToNext(acc, P, CPU0, TASK_VCPU);
  acc.storeRelease(P.running, TASK_VCPU, 'sched:switch-to-vcpu');
  acc.notify(P.running, 1, 'sched:switch-notify');
}

/** other-task: WAKES_PER_ROUND wake-ups on CPU0, each after a seeded pause. */
function otherTaskRound(ctx: ScenarioCtx): void {
  const { acc } = ctx;
  const P = places(acc);
  for (let k = 0; k < HOST_STATE_TIMING.WAKES_PER_ROUND; k++) {
    pause(ctx, HOST_STATE_TIMING.WAKE_GAP_SPINS, 'src:gap');
    // try_to_wake_up on CPU0: the task is queued there, the reschedule IPI tells CPU0.
    doorbellRing(acc, P.irq, IRQ_RESCHEDULE, 'sched:resched-ipi');
    while (acc.loadAcquire(P.running, 'sched:running-read') !== TASK_OTHER) spinThenWait(acc, P.running, TASK_VCPU, 'sched:wait-cpu', 'CPU0 to switch to the other task');
    otherTaskTurn(ctx, P);
  }
  acc.atomicAdd(P.srcDone, 1, 'ctl:src-done');
}

/** Put every word back to the boot state (emulator set-up: plain pokes). */
function resetState(acc: Access): void {
  const P = places(acc);
  initHostRegs(acc, P, CPU0, { ...HOST_BOOT_REGS, KERNEL_GS_BASE: TASK_GSBASE[TASK_VCPU] });
  TASK_GSBASE.forEach((g, t) => initTask(acc, P, t, g));
  initHostCpu(acc, P, CPU0, HOST_BOOT_REGS.DEBUGCTL!, TASK_VCPU);
  tdxVcpuHostStateInit(acc, P, TD_VCPU, TASK_VCPU);
  for (let w = 0; w < TDX_LP_BLOCK_WORDS; w++) acc.poke((P.tdxLp(CPU0) + w) as Addr, 0);
  for (const a of [P.irq, (P.irq + 1) as Addr, P.nmi, P.gate, P.needResched, P.srcDone, P.logCount]) acc.poke(a, 0);
  acc.poke(P.running, TASK_VCPU);
}

/** The scenario. @emulator */
export const tdxHostState: ScenarioDef = {
  id: 'tdx-host-state',
  title: 'TDX: host DEBUGCTL, XSAVE state, KERNEL_GS_BASE and user-return MSRs across TD entry/exit, seen by IRQ/NMI handlers, context switches, user mode and a VMX vCPU',
  seedFile: '002_0386f14b5b8a249e.txt',
  variants: [
    { name: 'buggy-no-debugctl', buggy: true, differs: 'tdx_vcpu_run does not restore IA32_DEBUGCTL after the TD run (the module keeps only bits 1, 12, 14)' },
    { name: 'buggy-uret-cache', buggy: true, differs: 'guest_entered is set by the exit handler instead of tdx_vcpu_run, so a vcpu_put between them (preemption) skips the user-return cache update after a real entry' },
    { name: 'fixed', buggy: false, differs: '' },
  ],
  invariants: [
    { name: 'hostStateRestoredBeforeIrqs', description: 'after a TD exit and before IRQs are re-enabled, DEBUGCTL, host breakpoints, XCR0, XSS and PKRU hold the host values' },
    { name: 'uretCacheCoherent', description: 'where KVM trusts the user-return cache (return to user mode, kvm_set_user_return_msr), each slot\'s curr equals the MSR' },
    { name: 'hostObserversSeeHostValues', description: 'IRQ/NMI handlers, context switches, user mode and VMX vCPU entry never find a TD or INIT value where a host value belongs (NMIs excused only inside the window KVM accepts)' },
  ],
  widen: { probability: 0.3, maxSpins: 200, points: ['tdx:', 'kvm:', 'host:', 'msr:'] },
  vcpus: { default: 1, min: 1, max: 1 },
  roles: () => ['td-vcpu', 'host-irqs', 'other-task'],
  layout: (p) => ({ vcpus: p.vcpus, pcpus: 1, scratchWords: PLAN.words }),
  init(acc) {
    resetState(acc);
    kvmUserReturnMsrCpuOnline(acc, places(acc), CPU0);
  },
  round(ctx) {
    if (ctx.index === 0) vcpuRound(ctx);
    else if (ctx.index === 1) irqSourceRound(ctx);
    else otherTaskRound(ctx);
  },
  check(ctx): Violation[] {
    return judge(roundRecord(ctx.acc, places(ctx.acc)));
  },
  reset(ctx) {
    const { acc } = ctx;
    resetState(acc);
    kvmUserReturnMsrCpuOnline(acc, places(acc), CPU0);
  },
};
