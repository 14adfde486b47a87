/**
 * savic-ipi-hlt — AMD Secure AVIC: a guest IPI (the sender's guest writes the target's
 * guest-owned backing-page IRR, then asks KVM with an MSR_PROT VMGEXIT) races with the target
 * vCPU going idle (HLT). Seed 003 ("[RFC PATCH v2 00/17] AMD: Add Secure AVIC KVM Support",
 * sections "IPI Support" and "Idle HLT Intercept"; patch "Handle APIC_ICR write MSR exits");
 * domain notes 7.1-7.3 (SA-2, SA-3, SA-4) and 0.2. See README.md beside this file.
 *
 *   CPU1 (sender vCPU thread)                     CPU0 (target vCPU thread)
 *   guest #VC: IRR[v] |= bit in target's page     guest idle: cli; timer VMGEXIT (exit + VMRUN:
 *   MSR_PROT VMGEXIT (WRMSR ICR), KVM:               pre_sev_run clears has_pending_ipi); sti; hlt
 *     has_pending_ipi = true                      idle-HLT: exit only if no V_INTR pending
 *     smp_mb()              (buggy-no-fence: none) mode = OUTSIDE_GUEST_MODE
 *     mode == IN_GUEST_MODE ? doorbell : kick     kvm_vcpu_block: set_current_state (smp_mb)
 *                                                   protected_apic_has_interrupt: smp_mb;
 *                                                   has_pending_ipi || KVM IRR -> else sleep
 *   buggy-no-fence: the sender's flag store is still in its store buffer when it loads
 *     mode == IN (stale) and rings a doorbell at a CPU that left guest mode; the target's
 *     check loads has_pending_ipi == 0 and sleeps with the IPI in its backing page.
 *   buggy-no-idle-hlt: plain HLT intercept. An IPI that lands while the guest has IRQs off has
 *     its flag cleared by the next VMRUN (the idle path's timer VMGEXIT); sti; hlt then exits
 *     although V_INTR is pending, and KVM, which cannot read the guest IRR, blocks the vCPU.
 *
 * Emulated words: the target's guest-owned backing page (savic-backing region, IRR at 0x200 +
 * 0x10·i), KVM's software IRR (apic-page, empty here: no device interrupts), the per-vCPU
 * `sev_savic_has_pending_ipi`, an AVIC doorbell word per pCPU, the host IRR of each pCPU (a
 * kick's reschedule IPI), the vCPU words of src/mem/layout and two guest-memory idle
 * announcements. The rcuwait/blocking code and the guest CPU model are avic-isrunning-wake's.
 */
import { APIC_DEFAULT_PHYS_BASE, APIC_IRR, MSR_IA32_APICBASE_ENABLE, X2APIC_ENABLE } from '../../mem/apicdef.js';
import { apicX2apicMode, kvmApicMatchDest } from '../../apic/index.js';
import { PCPU, VCPU, planScratch, vecPos, vecWord, type Addr, type PcpuId, type VcpuId } from '../../mem/layout.js';
import type { Access } from '../../mem/access.js';
import { doorbellRing, doorbellTake } from '../../sync/doorbell.js';
import { EXITING_GUEST_MODE, IN_GUEST_MODE, OUTSIDE_GUEST_MODE, kvmVcpuExitingGuestMode } from '../../kvm/modes.js';
import { FIRST_SYSTEM_VECTOR_WORD, RESCHEDULE_VECTOR } from '../../kvm/kick.js';
import { savicNoSleepWithPendingIpi } from '../../invariants/avic.js';
import type { Violation } from '../../invariants/checks.js';
import type { ScenarioCtx, ScenarioDef, ScenarioParams } from '../define.js';
import {
  IDLE_EARLY,
  IDLE_LATE,
  avicRingDoorbell,
  guestStep,
  highestIrr,
  ipiVector,
  kvmVcpuBlock,
  announceIdle,
  countDelivered,
  ipiRound,
  ipiRoundAreas,
  senderRounds,
  sendersDone,
  sleepRecord,
  targetAwaitSenders,
  vcpuWakeUp,
  vmrunEvaluate,
  type BlockHooks,
  type BlockOutcome,
  type GuestCpu,
  type IpiRound,
  type IrrWord,
} from '../avic-isrunning-wake/scenario.js';

/** The vCPU that goes idle, and the pCPU its thread runs on. */
const TARGET: VcpuId = 0;
const TARGET_PCPU: PcpuId = 0;
/** Most senders (one IRR word each: vectors 0xfb, 0xdb, 0xbb). */
const MAX_SENDERS = 3;

/**
 * Upper bounds of the seeded random timing (guest steps / local loop iterations), the same for
 * every variant.
 */
export const SAVIC_TIMING = {
  /** Guest steps of work between wake-up and the next idle entry. */
  WORK_STEPS: 4,
  /** Guest steps after the idle timer VMGEXIT, before the idle state is announced. */
  IDLE_STEPS: 4,
  /** Guest steps between announcing "about to halt" and sti; hlt (a fixed count). */
  HALT_STEPS: 8,
  /** Upper bound of a sender's pause (local loop iterations) after "idle task on". */
  JITTER_SPINS: 600,
  /** Seeded spread (±, local loop iterations) around the adaptive pause after "about to halt". */
  LATE_SPREAD: 100,
  /** Step of the adaptive pause (local loop iterations). */
  ADAPT_STEP: 16,
  /**
   * Share of IPIs sent on the "about to halt" announcement (around the HLT exit); the rest go on
   * "idle task on" (IRQs off, before the idle path's timer VMGEXIT).
   */
  LATE_SHARE: 0.75,
} as const;

function senders(p: ScenarioParams): number {
  return Math.min(MAX_SENDERS, Math.max(1, p.vcpus - 1));
}

const plans = new Map<number, ReturnType<typeof makePlan>>();
function makePlan(vcpus: number) {
  return planScratch({
    pendingIpi: vcpus * 16,
    doorbell: vcpus * 16,
    ...ipiRoundAreas(MAX_SENDERS),
  });
}
function plan(p: ScenarioParams): ReturnType<typeof makePlan> {
  let pl = plans.get(p.vcpus);
  if (!pl) plans.set(p.vcpus, (pl = makePlan(p.vcpus)));
  return pl;
}

/** How the target's VMCB intercepts HLT. */
export type HltIntercept = 'idle-hlt' | 'hlt';

/**
 * The HLT intercept KVM programs for a Secure AVIC vCPU: the idle-HLT intercept (HLT exits only
 * if no V_INTR is pending), which the series requires because KVM cannot see the guest's IRR.
 * @kvm arch/x86/kvm/svm/sev.c Secure AVIC VMCB set-up (RFC v2: "idle HLT intercept should be always enabled")
 */
export function savicHltIntercept(p: ScenarioParams): HltIntercept {
  if (p.variant.name === 'buggy-no-idle-hlt') {
    // BUG (deliberate): a plain HLT intercept — HLT exits even with a virtual interrupt pending
    // in the guest-owned backing page, and KVM's check cannot see that IRR.
    return 'hlt';
  }
  return 'idle-hlt';
}

/** Addresses of this run's state. */
export interface SavicPlaces {
  n: number;
  at: ReturnType<typeof plan>['at'];
  /** The target's guest-owned backing page IRR. */
  irr: IrrWord;
  /** KVM's software IRR of the target (interrupts waiting for RequestedIRR). */
  kvmIrr: IrrWord;
  /** sev_savic_has_pending_ipi of vCPU v. */
  pendingIpi: (v: VcpuId) => Addr;
  doorbell: (p: PcpuId) => Addr;
}

function places(ctx: { L: ScenarioCtx['L']; params: ScenarioParams }): SavicPlaces {
  const { L, params } = ctx;
  const at = plan(params).at;
  return {
    n: senders(params),
    at,
    irr: (i) => L.savicBacking(TARGET, APIC_IRR + 0x10 * i),
    kvmIrr: (i) => L.apicBitmapWord(TARGET, APIC_IRR, i),
    pendingIpi: (v) => L.scratch(at.pendingIpi + v * 16),
    doorbell: (p) => L.scratch(at.doorbell + p * 16),
  };
}

/**
 * Kick a vCPU: wake it if it sleeps; otherwise, if it is IN_GUEST_MODE (cmpxchg to EXITING),
 * send a reschedule IPI to its pCPU.
 * @kvm virt/kvm/kvm_main.c kvm_vcpu_kick
 */
export function savicKick(acc: Access, target: VcpuId, thisCpu: PcpuId): void {
  if (vcpuWakeUp(acc, target)) return;
  if (kvmVcpuExitingGuestMode(acc, target) !== IN_GUEST_MODE) return;
  const cpu = acc.readOnce(acc.layout.vcpu(target, VCPU.CPU), 'vcpu:cpu-read');
  if (cpu >= 0 && cpu !== thisCpu) doorbellRing(acc, acc.layout.pcpu(cpu, PCPU.HOST_IRR_SYS), 1 << (RESCHEDULE_VECTOR - FIRST_SYSTEM_VECTOR_WORD), 'kvm:kick-ipi');
}

/**
 * KVM's handling of a Secure AVIC guest's APIC_ICR write (MSR_PROT VMGEXIT): for every vCPU
 * that kvm_apic_match_dest() says the ICR addresses (fixed, physical x2APIC destination
 * `dest`): has_pending_ipi = true; smp_mb() (orders the flag store before the mode load,
 * pairing with the target's mode = OUTSIDE_GUEST_MODE ... smp_mb ... flag load);
 * load-acquire(mode): IN_GUEST_MODE -> AVIC doorbell, else kvm_vcpu_kick. The destination
 * match reads the candidate's x2APIC state (apic_base here, vcpu_id in the kernel — which
 * shares struct kvm_vcpu's cache line with `mode`, as apic_base shares the vCPU line here).
 * Returns whether a destination was IN_GUEST_MODE.
 * @kvm arch/x86/kvm/svm/sev.c savic_handle_icr_write (RFC v2 07/17)
 */
export function savicHandleIcrWrite(acc: Access, P: SavicPlaces, p: ScenarioParams, source: VcpuId, dest: number, thisCpu: PcpuId): boolean {
  let anyInGuest = false;
  for (let v = 0; v < p.vcpus; v++) {
    if (!kvmApicMatchDest(undefined, v, source, 'none', dest, 'physical', apicX2apicMode(acc, v))) continue;
    acc.writeOnce(P.pendingIpi(v), 1, 'savic:icr-pending-ipi-set');
    if (p.variant.name === 'buggy-no-fence') {
      // BUG (deliberate): no smp_mb() between the has_pending_ipi store and the vcpu->mode
      // load: the load can pass the store (x86 store buffering), see IN_GUEST_MODE after the
      // target left guest mode, and only ring a doorbell while the target's check still reads
      // the flag as 0.
    } else {
      acc.smpMb('savic:icr-mb');
    }
    const inGuest = acc.loadAcquire(acc.layout.vcpu(v, VCPU.MODE), 'savic:icr-mode-read') === IN_GUEST_MODE;
    if (inGuest) avicRingDoorbell(acc, P.doorbell, v, thisCpu);
    else savicKick(acc, v, thisCpu);
    anyInGuest ||= inGuest;
  }
  return anyInGuest;
}

/**
 * Clear has_pending_ipi just before VMRUN: VMRUN evaluates the backing page, so the pending IPI
 * is about to be seen by hardware.
 * @kvm arch/x86/kvm/svm/sev.c pre_sev_run (RFC v2 07/17)
 */
export function savicPreSevRun(acc: Access, P: SavicPlaces, v: VcpuId): void {
  if (acc.readOnce(P.pendingIpi(v), 'savic:pre-sev-run-read') !== 0) acc.writeOnce(P.pendingIpi(v), 0, 'savic:pre-sev-run-clear');
}

/**
 * Can a Secure AVIC vCPU run? smp_mb(), then the sticky IPI flag or KVM's own IRR (KVM cannot
 * read the guest-owned IRR).
 * @kvm arch/x86/kvm/svm/sev.c sev_savic_has_pending_interrupt (kvm_x86_ops.protected_apic_has_interrupt)
 */
export function savicHasPendingInterrupt(acc: Access, P: SavicPlaces, v: VcpuId): boolean {
  acc.smpMb('savic:has-interrupt-mb');
  if (acc.readOnce(P.pendingIpi(v), 'savic:has-interrupt-flag-read') !== 0) return true;
  return highestIrr(acc, P.kvmIrr, 'savic:has-interrupt-kvm-irr') >= 0;
}

/** Target guest program counter: working, resuming after the idle timer VMGEXIT, after HLT. */
const PC = { WORK: 0, IDLE_TIMER: 1, AFTER_HLT: 2 } as const;
/** Why the target's guest stopped running. */
type GuestExit = 'hlt' | 'vmgexit' | 'intr' | 'done';

/**
 * The target guest runs until it exits: HLT, the idle path's timer VMGEXIT, a host interrupt,
 * or 'done' once it took every IPI of the round.
 */
function runTargetGuest(ctx: ScenarioCtx, R: IpiRound, g: GuestCpu, P: SavicPlaces, hlt: HltIntercept): GuestExit {
  const { acc, L, prng } = ctx;
  const doorbell = P.doorbell(TARGET_PCPU);
  const hostIrr = L.pcpu(TARGET_PCPU, PCPU.HOST_IRR_SYS);
  const onVector = (v: number) => countDelivered(R, v);
  /** A few guest steps; a host interrupt (a kick) exits. */
  const steps = (n: number): boolean => {
    for (let i = 0; i < n; i++) {
      if (acc.readOnce(hostIrr, 'hw:host-irr-poll') !== 0) return false;
      guestStep(acc, g, doorbell, P.irr, onVector);
    }
    return true;
  };
  for (;;) {
    if (g.pc === PC.AFTER_HLT) {
      if (!steps(1)) return 'intr';
      g.pc = PC.WORK;
    }
    if (g.pc === PC.WORK) {
      if (!steps(1 + prng.below(SAVIC_TIMING.WORK_STEPS))) return 'intr';
      if (sendersDone(R)) return 'done';
      // Idle entry: local_irq_disable(), the idle task is on the CPU (guest memory); with IRQs
      // off, tick_nohz_idle_stop_tick() reprograms the LAPIC timer, which for Secure AVIC is an
      // MSR_PROT VMGEXIT (exit to KVM, which emulates the timer, then VMRUN).
      g.ifFlag = false;
      announceIdle(R, g, IDLE_EARLY);
      g.pc = PC.IDLE_TIMER;
      return 'vmgexit';
    }
    // Back from the timer VMGEXIT, IRQs still off; then safe_halt() = "sti; hlt" (HLT in STI's
    // interrupt shadow).
    if (!steps(prng.below(SAVIC_TIMING.IDLE_STEPS))) return 'intr';
    announceIdle(R, g, IDLE_LATE);
    if (!steps(SAVIC_TIMING.HALT_STEPS)) return 'intr';
    g.ifFlag = true;
    g.pc = PC.AFTER_HLT;
    // HLT: a doorbell already rung makes the CPU evaluate the backing page first; the idle-HLT
    // intercept exits only if no V_INTR is pending, and no other exit can come in between.
    if (acc.readOnce(doorbell, 'hw:doorbell-poll') !== 0 && acc.xchg(doorbell, 0, 'hw:doorbell-take') !== 0) {
      g.vintr = highestIrr(acc, P.irr, 'hw:irr-evaluate') >= 0;
    }
    if (hlt === 'idle-hlt' && g.vintr) continue;
    return 'hlt';
  }
}

/** This run's shared words. */
function shared(ctx: { acc: Access; params: ScenarioParams }): { R: IpiRound; P: SavicPlaces } {
  const P = places({ L: ctx.acc.layout, params: ctx.params });
  return { R: ipiRound(ctx.acc, P.at, P.n, TARGET), P };
}

/**
 * The target's round: KVM_RUN on pCPU 0 — enter, run the guest, block on HLT — until every
 * sender is done, or until it sleeps with nobody left to wake it.
 */
function targetRound(ctx: ScenarioCtx): void {
  const { acc, L, params } = ctx;
  const { R, P } = shared(ctx);
  const hlt = savicHltIntercept(params);
  const g: GuestCpu = { ifFlag: true, vintr: false, pc: PC.WORK, idleEpoch: 0 };
  const mode = L.vcpu(TARGET, VCPU.MODE);
  const doorbell = P.doorbell(TARGET_PCPU);
  const hostIrr = L.pcpu(TARGET_PCPU, PCPU.HOST_IRR_SYS);
  targetAwaitSenders(R);
  acc.writeOnce(L.vcpu(TARGET, VCPU.CPU), TARGET_PCPU, 'vcpu:cpu-set');
  acc.writeOnce(L.pcpu(TARGET_PCPU, PCPU.CURRENT_VCPU), TARGET, 'vcpu:sched-in');
  const hooks: BlockHooks = {
    blocking: () => undefined,
    unblocking: () => undefined,
    // kvm_vcpu_check_block -> kvm_arch_vcpu_runnable -> kvm_cpu_has_interrupt -> protected_apic_has_interrupt.
    runnable: () => savicHasPendingInterrupt(acc, P, TARGET),
  };
  let outcome: BlockOutcome = 'runnable';
  for (;;) {
    // vcpu_enter_guest: mode = IN_GUEST_MODE (release), smp_mb__after_srcu_read_unlock, then
    // kvm_vcpu_exit_request (a kick moved the mode to EXITING_GUEST_MODE).
    acc.storeRelease(mode, IN_GUEST_MODE, 'vcpu:mode-in');
    acc.smpMb('vcpu:enter-mb');
    let exit: GuestExit;
    if (acc.readOnce(mode, 'vcpu:mode-read') === EXITING_GUEST_MODE) {
      exit = 'intr';
    } else {
      // svm_vcpu_run -> pre_sev_run, then VMRUN (serializing; evaluates the backing page).
      savicPreSevRun(acc, P, TARGET);
      vmrunEvaluate(acc, g, doorbell, P.irr);
      exit = runTargetGuest(ctx, R, g, P, hlt);
    }
    acc.storeRelease(mode, OUTSIDE_GUEST_MODE, 'vcpu:mode-outside');
    // IRQ window after the exit: the reschedule IPI of a kick is taken here.
    if (acc.readOnce(hostIrr, 'hw:host-irr-poll') !== 0) doorbellTake(acc, hostIrr, 'apic:host-irq-ack');
    if (exit === 'done') break;
    if (exit !== 'hlt') continue;
    // HLT exit: kvm_emulate_halt -> vcpu_block -> kvm_vcpu_halt (no halt polling) -> kvm_vcpu_block.
    outcome = kvmVcpuBlock(R, TARGET_PCPU, hooks);
    if (outcome === 'asleep') break;
  }
  if (outcome === 'runnable') acc.writeOnce(L.pcpu(TARGET_PCPU, PCPU.CURRENT_VCPU), -1, 'vcpu:sched-out');
}

/** IPIs each sender sends per round. */
const IPIS_PER_SENDER = 4;

/** One sender's round: IPIs the Secure AVIC way, each when the target goes idle. */
function senderRound(ctx: ScenarioCtx): void {
  const { acc, params } = ctx;
  const { R, P } = shared(ctx);
  const s = ctx.index - 1;
  const me: PcpuId = s + 1;
  const v = ipiVector(s);
  const T = SAVIC_TIMING;
  senderRounds(ctx, R, { ipis: IPIS_PER_SENDER, jitter: T.JITTER_SPINS, lateShare: T.LATE_SHARE, lateSpread: T.LATE_SPREAD, adaptStep: T.ADAPT_STEP }, () => {
    // The guest's #VC handler for a non-self IPI: set the vector in the target's backing page.
    acc.atomicOr(P.irr(vecWord(v)), 1 << vecPos(v), 'guest:savic-irr-set');
    // MSR_PROT VMGEXIT (WRMSR APIC_ICR): #VMEXIT is serializing; KVM runs on this vCPU's thread.
    acc.smpMb('savic:vmgexit');
    return savicHandleIcrWrite(acc, P, params, s + 1, TARGET, me);
  });
}

/** Put the machine in its start-of-round state (also the initial state). */
function setUp(acc: Access, p: ScenarioParams): void {
  const L = acc.layout;
  const { words } = plan(p);
  for (let i = 0; i < words; i++) acc.poke(L.scratch(i), 0);
  for (let v = 0; v < p.vcpus; v++) {
    for (const f of [VCPU.MODE, VCPU.WAIT_TASK, VCPU.TASK_STATE, VCPU.BLOCKING, VCPU.READY]) acc.poke(L.vcpu(v, f), 0);
    for (let i = 0; i < 8; i++) {
      acc.poke(L.apicBitmapWord(v, APIC_IRR, i), 0);
      acc.poke(L.savicBacking(v, APIC_IRR + 0x10 * i), 0);
    }
    acc.poke(L.pcpu(v, PCPU.HOST_IRR_SYS), 0);
    // Secure AVIC guests run in x2APIC mode.
    acc.poke(L.vcpu(v, VCPU.APIC_BASE), APIC_DEFAULT_PHYS_BASE | MSR_IA32_APICBASE_ENABLE | X2APIC_ENABLE);
    acc.poke(L.pcpu(v, PCPU.CURRENT_VCPU), v === TARGET ? -1 : v);
    acc.poke(L.vcpu(v, VCPU.CPU), v === TARGET ? -1 : v);
    // Senders run their guests on their own pCPUs for the whole round.
    if (v !== TARGET) acc.poke(L.vcpu(v, VCPU.MODE), IN_GUEST_MODE);
  }
}

/** The scenario. */
export const savicIpiHlt: ScenarioDef = {
  id: 'savic-ipi-hlt',
  title: 'Secure AVIC: a guest IPI (backing-page IRR + MSR_PROT VMGEXIT) races with the target vCPU halting',
  seedFile: '003_7040354a06e62716.txt',
  variants: [
    { name: 'buggy-no-fence', buggy: true, differs: 'savic_handle_icr_write has no smp_mb() between the has_pending_ipi store and the vcpu->mode load' },
    { name: 'buggy-no-idle-hlt', buggy: true, differs: 'the VMCB uses a plain HLT intercept instead of the idle-HLT intercept' },
    { name: 'fixed', buggy: false, differs: '' },
  ],
  invariants: [{ name: 'savicNoSleepWithPendingIpi', description: 'a vCPU asleep in kvm_vcpu_block never has a deliverable vector pending in its guest-owned backing page without a wake-up in flight' }],
  widen: { probability: 0.3, maxSpins: 200, points: ['guest:'] },
  vcpus: { default: 2, min: 2, max: MAX_SENDERS + 1 },
  roles: (p) => ['target', ...Array.from({ length: senders(p) }, (_, i) => `sender${i}`)],
  layout: (p) => ({ vcpus: p.vcpus, pcpus: p.vcpus, savic: true, scratchWords: plan(p).words }),
  init(acc, p) {
    setUp(acc, p);
  },
  round(ctx) {
    if (ctx.index === 0) targetRound(ctx);
    else senderRound(ctx);
  },
  check(ctx): Violation[] {
    const { R, P } = shared(ctx);
    return savicNoSleepWithPendingIpi({ ...sleepRecord(R, P.irr), pendingIpiFlag: ctx.acc.peek(P.pendingIpi(TARGET)) !== 0 });
  },
  reset(ctx) {
    setUp(ctx.acc, ctx.params);
  },
};
