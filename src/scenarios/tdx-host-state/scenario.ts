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
 * Every step is the machine's: CPU0's host side (IRQ windows, NMI points, preemption, context
 * switch, return to user mode) is src/kvm/vmx/tdx-host-cpu.ts, the TD run and KVM's restores
 * src/kvm/vmx/tdx-host-state.ts (with the variant's patch), registers and the user-return cache
 * src/host, the NMI latch hw/nmi.ts. The words live in scenario scratch; this module holds the
 * topology, pacing, the observation log (one per role) and the checks.
 */
import type { Access } from '../../mem/access.js';
import { planScratch, type Addr, type Layout } from '../../mem/layout.js';
import { HOST_REGS, HOST_REG_BLOCK_WORDS, initHostRegs, peekU64, pokeU64, snapshotHostRegs, type HostRegName } from '../../host/msr.js';
import { KVM_URET_REGS, URET_BLOCK_WORDS, kvmUserReturnMsrCpuOnline, snapshotUretCache, type UretCacheSnapshot } from '../../host/uret.js';
import { HOST_CPU_BLOCK_WORDS, HOST_POINTS, hostBootRegs, KVM_HOST_XCR0, KVM_HOST_XSS, TASK_BLOCK_WORDS, currentTask, hostExpect, initHostCpu, initTask, type HostBootValues, type HostPoint } from '../../host/host-state.js';
import { PATCH_TDX_GUEST_ENTERED_IN_EXIT_HANDLER, PATCH_TDX_NO_DEBUGCTL_RESTORE, TD_HS_BLOCK_WORDS, TDX_LP_BLOCK_WORDS, tdxVcpuHostStateInit, tdxVcpuLoad } from '../../kvm/vmx/tdx-host-state.js';
import {
  HOST_HANDLER,
  TASK_OTHER,
  TASK_VCPU,
  hostCpuAwaitHandler,
  hostCpuHandlerIret,
  hostCpuIrqWindow,
  hostCpuNmiPoint,
  hostCpuOtherTaskBlocks,
  hostCpuPerfReprogram,
  hostCpuPreemptPoint,
  hostCpuRaise,
  hostCpuReturnToUser,
  hostCpuTdHandleExit,
  hostCpuTdVcpuEnterGuest,
  hostCpuVcpuExitToUser,
  hostCpuVmxPrepareSwitchToGuest,
  hostCpuWaitForCpu,
  hostCpuWakeOther,
  type HostCpuHooks,
  type HostCpuPlaces,
} from '../../kvm/vmx/tdx-host-cpu.js';
import { cpuNmiInit } from '../../hw/nmi.js';
import { hostObserversSeeHostValues, hostStateRestoredBeforeIrqs, uretCacheCoherent, type HostObservation, type HostObserverKind, type HostStateRound } from '../../invariants/host-state.js';
import type { Violation } from '../../invariants/checks.js';
import type { ScenarioCtx, ScenarioDef } from '../define.js';

/** The TD vCPU and the pCPU everything happens on. */
const TD_VCPU = 0;
const CPU0 = 0;
/** Task names: the VMM's vCPU thread, and another task that shares CPU0. */
const TASK_NAMES = ['vmm-vcpu-thread', 'other-task'] as const;

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

/** Log capacity (flagged observations per round and thread: each role logs into its own log). */
const OBS_CAP = 32;
const ROLES = 3;
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
    gate: 1,
    sched: 2,
    ctl: 2 * 16,
    logCount: ROLES * 16,
    log: ROLES * OBS_CAP * REC.WORDS,
  });
}
const PLAN = plan();

/** This run's words: CPU0's (the machine's host-CPU places) and the scenario's bookkeeping. */
interface Places extends HostCpuPlaces {
  /** Source s (0: host-irqs, 1: other-task) is done this round. */
  srcDone(s: number): Addr;
  /** Records in role r's log, and word w of its record i. */
  logCount(r: number): Addr;
  rec(r: number, i: number, w: number): Addr;
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
    gate: L.scratch(at.gate),
    running: L.scratch(at.sched),
    needResched: L.scratch(at.sched + 1),
    srcDone: (k) => L.scratch(at.ctl + k * 16),
    logCount: (r) => L.scratch(at.logCount + r * 16),
    rec: (r, i, w) => L.scratch(at.log + (r * OBS_CAP + i) * REC.WORDS + w),
  };
  cache.set(acc, P);
  return P;
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
 * the observing role's own log for `check` (clean ones are counted out, so a long round cannot
 * fill the log).
 */
function observe(acc: Access, P: Places, role: number, o: HostObservation): void {
  if (judge({ pcpu: CPU0, observations: [o] }).length === 0) return;
  const i = acc.peek(P.logCount(role));
  if (i >= OBS_CAP) return;
  acc.poke(P.logCount(role), i + 1);
  const rec = (w: number) => P.rec(role, i, w);
  acc.poke(rec(REC.KIND), KINDS.indexOf(o.kind));
  acc.poke(rec(REC.POINT), HOST_POINTS.indexOf(o.point));
  acc.poke(rec(REC.TASK), TASK_NAMES.indexOf(o.task as (typeof TASK_NAMES)[number]));
  acc.poke(rec(REC.FLAGS), (o.savedGsbase !== undefined ? 1 : 0) | (o.uret ? 2 : 0) | (o.uret?.registered ? 4 : 0));
  HOST_REGS.forEach((r) => pokeU64(acc, rec(REC.REGS + r.word), o.regs[r.name]));
  pokeU64(acc, rec(REC.EXP_DEBUGCTL), o.expect.debugctl);
  pokeU64(acc, rec(REC.EXP_CPU_DR7), o.expect.cpuDr7);
  o.expect.cpuDebugreg.forEach((v, k) => pokeU64(acc, rec(REC.EXP_DEBUGREG + 2 * k), v));
  pokeU64(acc, rec(REC.EXP_PKRU), o.expect.pkru);
  pokeU64(acc, rec(REC.EXP_USER_GSBASE), o.expect.userGsbase);
  pokeU64(acc, rec(REC.SAVED_GSBASE), o.savedGsbase ?? 0n);
  KVM_URET_REGS.forEach((_, s) => {
    pokeU64(acc, rec(REC.URET_HOST + 2 * s), o.expect.uretHost[s] ?? 0n);
    pokeU64(acc, rec(REC.URET_CURR + 2 * s), o.uret?.slots[s]?.curr ?? 0n);
    pokeU64(acc, rec(REC.URET_HW + 2 * s), o.uret?.slots[s]?.hw ?? 0n);
  });
}

const hooksCache = new WeakMap<Access, HostCpuHooks>();
/** The machine's observation tap for this role: observe into its own log. */
function hooksOf(acc: Access, role: number): HostCpuHooks {
  let h = hooksCache.get(acc);
  if (!h) {
    const P = places(acc);
    hooksCache.set(acc, (h = { observe: (kind, point, task, extra = {}) => observe(acc, P, role, observation(acc, P, kind, point, task, extra)) }));
  }
  return h;
}

/** The round's log as the checkers' record. */
function roundRecord(acc: Access, P: Places): HostStateRound {
  const observations: HostObservation[] = [];
  for (let role = 0; role < ROLES; role++) {
    const n = Math.min(OBS_CAP, acc.peek(P.logCount(role)));
    for (let i = 0; i < n; i++) {
      const w = (k: number) => peekU64(acc, P.rec(role, i, k));
      const flags = acc.peek(P.rec(role, i, REC.FLAGS));
      const regs = {} as Record<HostRegName, bigint>;
      for (const r of HOST_REGS) regs[r.name] = w(REC.REGS + r.word);
      const uretHost = KVM_URET_REGS.map((_, s) => w(REC.URET_HOST + 2 * s));
      const o: HostObservation = {
        kind: KINDS[acc.peek(P.rec(role, i, REC.KIND))] ?? 'irq',
        pcpu: CPU0,
        point: HOST_POINTS[acc.peek(P.rec(role, i, REC.POINT))] ?? 'other-task',
        task: TASK_NAMES[acc.peek(P.rec(role, i, REC.TASK))] ?? '?',
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
  }
  return { pcpu: CPU0, observations };
}

/* ---------------------------------------------------------------------------------------------
 * The TD vCPU thread (role 0): KVM_RUN on CPU0 with the machine's host-CPU code
 * (kvm/vmx/tdx-host-cpu.ts: IRQ windows, NMI points, preemption, the return to user mode).
 * ------------------------------------------------------------------------------------------- */

/** The TD vCPU thread's round: KVM_RUN until both sources are done, then back to user space. */
function vcpuRound(ctx: ScenarioCtx): void {
  const { acc, prng, patches } = ctx;
  const P = places(acc);
  const hooks = hooksOf(acc, ctx.index);
  tdxVcpuLoad(acc, P, TD_VCPU, CPU0);
  for (;;) {
    // vcpu_run loop top: IRQs on, preemptible (xfer_to_guest_mode_handle_work).
    hostCpuIrqWindow(acc, P, 'run-loop');
    hostCpuPreemptPoint(acc, P, CPU0, TD_VCPU, 'run-loop', hooks);
    hostCpuNmiPoint(acc, P, CPU0, 'run-loop');
    if (acc.readOnce(P.srcDone(0), 'ctl:src-done-read') !== 0 && acc.readOnce(P.srcDone(1), 'ctl:src-done-read') !== 0) break;
    const reason = hostCpuTdVcpuEnterGuest(acc, P, CPU0, TD_VCPU, HOST_STATE_TIMING.GUEST_SPINS, patches, hooks);
    hostCpuTdHandleExit(acc, P, CPU0, TD_VCPU, patches, hooks);
    if (reason === 'tdvmcall' && prng.below(HOST_STATE_TIMING.USER_EXIT_ONE_IN) === 0) {
      // The TDVMCALL needs the VMM (e.g. port I/O): KVM_RUN returns, the VMM calls it again.
      hostCpuVcpuExitToUser(acc, P, CPU0, TD_VCPU, hooks);
      tdxVcpuLoad(acc, P, TD_VCPU, CPU0);
    }
  }
  hostCpuVcpuExitToUser(acc, P, CPU0, TD_VCPU, hooks);
}

/* ---------------------------------------------------------------------------------------------
 * host-irqs (role 1) and other-task (role 2).
 * ------------------------------------------------------------------------------------------- */

function pause(ctx: ScenarioCtx, max: number, label: string): void {
  const n = ctx.prng.below(max);
  for (let i = 0; i < n; i++) ctx.acc.cpuRelax(label);
}

/** The handler body on CPU0 (perf IPI, device IRQ or NMI): it observes CPU0; a perf IPI then reprograms perf. */
function handlerBody(ctx: ScenarioCtx, P: Places, code: number): void {
  const { acc, prng } = ctx;
  const kind = code & 0xff;
  const point = HOST_POINTS[(code >>> 8) & 0xff] ?? 'run-loop';
  hooksOf(acc, ctx.index).observe(kind === HOST_HANDLER.NMI ? 'nmi' : 'irq', point, currentTask(acc, P, CPU0));
  if (kind === HOST_HANDLER.PERF_IPI) hostCpuPerfReprogram(acc, P, CPU0, prng.below(2) === 0, BREAKPOINT_ADDR);
}

/** host-irqs: EVENTS_PER_ROUND interrupts at CPU0 (3 in 10 an NMI, else a perf IPI or device IRQ), each after a seeded pause, each handled. */
function irqSourceRound(ctx: ScenarioCtx): void {
  const { acc, prng } = ctx;
  const P = places(acc);
  for (let k = 0; k < HOST_STATE_TIMING.EVENTS_PER_ROUND; k++) {
    pause(ctx, HOST_STATE_TIMING.EVENT_GAP_SPINS, 'src:gap');
    const pick = prng.below(10);
    hostCpuRaise(acc, P, CPU0, pick < 3 ? HOST_HANDLER.NMI : pick < 7 ? HOST_HANDLER.PERF_IPI : HOST_HANDLER.DEVICE);
    handlerBody(ctx, P, hostCpuAwaitHandler(acc, P));
    hostCpuHandlerIret(acc, P);
  }
  acc.writeOnce(P.srcDone(0), 1, 'ctl:src-done');
}

/** other-task: WAKES_PER_ROUND wake-ups on CPU0, each after a seeded pause: a VMM I/O thread or a VMX vCPU thread, then it blocks again. */
function otherTaskRound(ctx: ScenarioCtx): void {
  const { acc, prng } = ctx;
  const P = places(acc);
  const hooks = hooksOf(acc, ctx.index);
  for (let k = 0; k < HOST_STATE_TIMING.WAKES_PER_ROUND; k++) {
    pause(ctx, HOST_STATE_TIMING.WAKE_GAP_SPINS, 'src:gap');
    hostCpuWakeOther(acc, P);
    hostCpuWaitForCpu(acc, P, TASK_OTHER);
    if (prng.below(2) === 0) {
      hooks.observe('vmx-entry', 'other-task', TASK_OTHER, { uret: snapshotUretCache(acc, P, CPU0) });
      hostCpuVmxPrepareSwitchToGuest(acc, P, CPU0, VMX_GUEST_URET);
    }
    hostCpuReturnToUser(acc, P, CPU0, TASK_OTHER, hooks);
    hostCpuOtherTaskBlocks(acc, P, CPU0);
  }
  acc.writeOnce(P.srcDone(1), 1, 'ctl:src-done');
}

/** Put every word back to the boot state (emulator set-up: plain pokes). */
function resetState(acc: Access): void {
  const P = places(acc);
  initHostRegs(acc, P, CPU0, { ...HOST_BOOT_REGS, KERNEL_GS_BASE: TASK_GSBASE[TASK_VCPU] });
  TASK_GSBASE.forEach((g, t) => initTask(acc, P, t, g));
  initHostCpu(acc, P, CPU0, HOST_BOOT_REGS.DEBUGCTL!, TASK_VCPU);
  tdxVcpuHostStateInit(acc, P, TD_VCPU, TASK_VCPU);
  for (let w = 0; w < TDX_LP_BLOCK_WORDS; w++) acc.poke((P.tdxLp(CPU0) + w) as Addr, 0);
  for (const a of [P.irq, (P.irq + 1) as Addr, P.gate, P.needResched, P.srcDone(0), P.srcDone(1)]) acc.poke(a, 0);
  for (let r = 0; r < ROLES; r++) acc.poke(P.logCount(r), 0);
  cpuNmiInit(acc, CPU0);
  acc.poke(P.running, TASK_VCPU);
}

/** The scenario. @emulator */
export const tdxHostState: ScenarioDef = {
  id: 'tdx-host-state',
  title: 'TDX: host DEBUGCTL, XSAVE state, KERNEL_GS_BASE and user-return MSRs across TD entry/exit, seen by IRQ/NMI handlers, context switches, user mode and a VMX vCPU',
  seedFile: '002_0386f14b5b8a249e.txt',
  variants: [
    { name: 'buggy-no-debugctl', buggy: true, differs: 'tdx_vcpu_run does not restore IA32_DEBUGCTL after the TD run (the module keeps only bits 1, 12, 14)', patches: [PATCH_TDX_NO_DEBUGCTL_RESTORE] },
    { name: 'buggy-uret-cache', buggy: true, differs: 'guest_entered is set by the exit handler instead of tdx_vcpu_run, so a vcpu_put between them (preemption) skips the user-return cache update after a real entry', patches: [PATCH_TDX_GUEST_ENTERED_IN_EXIT_HANDLER] },
    { name: 'fixed', buggy: false, differs: '', kernel: 'v6.16 and later (DEBUGCTL restore, guest_entered in tdx_vcpu_run)' },
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
