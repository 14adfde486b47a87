/**
 * pi-wakeup-block — VMX posted interrupts vs. a vCPU going to block: a device (VT-d posted
 * interrupts) or IPI virtualization posts to a vCPU while its thread schedules out in
 * kvm_vcpu_block and vmx_vcpu_pi_put switches the descriptor to the wakeup vector (domain notes
 * 2.4, 2.5 O4, race PI-3). See README.md beside this file.
 *
 *   CPU0 vcpu0 thread (HLT with IF=1 -> kvm_vcpu_block)   CPU1 device (posting hardware)
 *   set_current_state(TASK_INTERRUPTIBLE)  (smp_mb)
 *   kvm_vcpu_check_block: sync_pir_to_irr: ON == 0
 *                                                         PIR |= v; ON == 0 && SN == 0:
 *                                                           ON = 1, send NV (POSTED_INTR_VECTOR)
 *   schedule() -> vmx_vcpu_pi_put -> pi_enable_wakeup_handler (IRQs off):
 *     list_add(wakeup_vcpus_on_cpu[0]) under its lock
 *     cmpxchg NV := POSTED_INTR_WAKEUP_VECTOR
 *     fixed: ON set in the new control -> self-IPI POSTED_INTR_WAKEUP_VECTOR
 *     buggy: no re-check
 *   idle, IRQs on: POSTED_INTR_VECTOR in root mode -> handler does nothing;
 *     fixed: POSTED_INTR_WAKEUP_VECTOR -> pi_wakeup_handler: ON -> kvm_vcpu_wake_up
 *   buggy: vcpu0 sleeps with ON = 1 and NV = WAKEUP; no notification will ever come
 */
import { APIC_IRR } from '../../mem/apicdef.js';
import { PCPU, PID, VCPU, planScratch, vecPos, vecWord, type Addr, type PcpuId, type VcpuId } from '../../mem/layout.js';
import type { Access } from '../../mem/access.js';
import { OUTSIDE_GUEST_MODE } from '../../kvm/modes.js';
import { POSTED_INTR_VECTOR, POSTED_INTR_WAKEUP_VECTOR, TASK_INTERRUPTIBLE, TASK_RUNNING } from '../../kvm/kick.js';
import { doorbellRing, doorbellTake, spinLock, spinUnlock } from '../../sync/index.js';
import { piBlockedHasWakeInFlight, piWakeupListMatchesNv, type PiBlockRound } from '../../invariants/posted-intr.js';
import type { Violation } from '../../invariants/checks.js';
import type { ScenarioCtx, ScenarioDef, ScenarioParams } from '../define.js';
import { PI_NV_SHIFT, PI_ON, PI_SN, piKvmVcpuWakeUp, piRendezvous, piSpinUntil, piSyncPirToIrr, piSysvecBit } from '../pi-sb-notification/scenario.js';

/** The blocking vCPU and the pCPU its thread runs on. */
const VCPU0: VcpuId = 0;
const CPU0: PcpuId = 0;
/** Vectors the devices post (each device its own residue class, one vector per round). */
const FIRST_VECTOR = 0x20;
const LAST_VECTOR = 0xef;
/** Upper bound of a device's pause before it posts, in spin iterations (seeded per device). */
const DEVICE_DELAY_SPINS = 3000;
/** NV field mask of the control word. */
const NV_MASK = 0xff << PI_NV_SHIFT;

function devices(p: ScenarioParams): number {
  return p.vcpus - 1;
}

/** Per pCPU one line: the wakeup list lock (spinlock words 0-1) and the list (word 4, bit v = vCPU v). */
const WAKE_LOCK = 0;
const WAKE_LIST = 4;

function plan(p: ScenarioParams) {
  return planScratch({ go: 1, done: 1, wake: p.vcpus * 16, posted: devices(p) * 16 });
}

function wakeLock(acc: Access, p: ScenarioParams, cpu: PcpuId): Addr {
  return acc.layout.scratch(plan(p).at.wake + cpu * 16 + WAKE_LOCK);
}

function wakeList(acc: Access, p: ScenarioParams, cpu: PcpuId): Addr {
  return acc.layout.scratch(plan(p).at.wake + cpu * 16 + WAKE_LIST);
}

/** Spin a seeded number of iterations (the device's think time); the sink keeps the loop. */
let spinSink = 0;
function spin(n: number): void {
  let s = spinSink;
  for (let i = 0; i < n; i++) s = (s + i) | 0;
  spinSink = s;
}

/**
 * Posting hardware (VT-d posted interrupts, or IPI virtualization for a guest ICR write): set
 * the PIR bit, then — one atomic update of the control word — if SN and ON are both clear set ON
 * and send the notification vector NV (as read in that same update) to the CPU named by NDST.
 * @sdm Intel VT-d spec 5.2.3 "Interrupt-Posting Hardware Operation"; SDM vol. 3 "IPI Virtualization"
 */
export function piHardwarePost(acc: Access, v: VcpuId, vector: number): void {
  const L = acc.layout;
  acc.atomicOr(L.pid(v, PID.PIR, vecWord(vector)), 1 << vecPos(vector), 'pi:hw-pir-set');
  const control = L.pid(v, PID.CONTROL);
  let c = acc.readOnce(control, 'pi:hw-control-read');
  for (;;) {
    if ((c & ((1 << PI_ON) | (1 << PI_SN))) !== 0) return;
    const found = acc.cmpxchg(control, c, c | (1 << PI_ON), 'pi:hw-on-set');
    if (found === c) break;
    c = found;
  }
  const ndst = acc.readOnce(L.pid(v, PID.NDST), 'pi:hw-ndst-read');
  doorbellRing(acc, L.pcpu(ndst, PCPU.HOST_IRR_SYS), piSysvecBit((c & NV_MASK) >>> PI_NV_SHIFT), 'pi:hw-notify');
}

/**
 * Handler of POSTED_INTR_WAKEUP_VECTOR on `cpu`: under that CPU's wakeup-list lock, wake every
 * listed vCPU whose descriptor has ON set.
 * @kvm arch/x86/kvm/vmx/posted_intr.c pi_wakeup_handler
 */
export function piWakeupHandler(ctx: ScenarioCtx, cpu: PcpuId): void {
  const { acc, L, params } = ctx;
  const lock = wakeLock(acc, params, cpu);
  spinLock(acc, lock, 'pi:wakeup-list-lock');
  let list = acc.readOnce(wakeList(acc, params, cpu), 'pi:wakeup-list-walk');
  while (list !== 0) {
    const v = 31 - Math.clz32(list);
    list &= ~(1 << v);
    if ((acc.readOnce(L.pid(v, PID.CONTROL), 'pi:wakeup-on-read') & (1 << PI_ON)) !== 0) piKvmVcpuWakeUp(acc, v);
  }
  spinUnlock(acc, lock, 'pi:wakeup-list-lock');
}

/**
 * Put the vCPU on this CPU's wakeup list and switch its notification vector to the wakeup
 * vector (IRQs are off: called from the scheduler). Fixed: if ON is set in the control word just
 * installed, an interrupt may have been posted before NV changed (its notification arrived as
 * POSTED_INTR_VECTOR and was ignored), so send this CPU a wakeup IPI.
 * @kvm arch/x86/kvm/vmx/posted_intr.c pi_enable_wakeup_handler
 */
export function piEnableWakeupHandler(ctx: ScenarioCtx, v: VcpuId): void {
  const { acc, L, params } = ctx;
  const cpu = acc.readOnce(L.vcpu(v, VCPU.CPU), 'pi:vcpu-cpu-read');
  const lock = wakeLock(acc, params, cpu);
  const list = wakeList(acc, params, cpu);
  spinLock(acc, lock, 'pi:wakeup-list-lock');
  acc.writeOnce(list, acc.readOnce(list, 'pi:wakeup-list-read') | (1 << v), 'pi:wakeup-list-add');
  spinUnlock(acc, lock, 'pi:wakeup-list-lock');
  const control = L.pid(v, PID.CONTROL);
  let old = acc.readOnce(control, 'pi:wakeup-control-read');
  let next: number;
  for (;;) {
    next = (old & ~NV_MASK) | (POSTED_INTR_WAKEUP_VECTOR << PI_NV_SHIFT);
    const found = acc.cmpxchg(control, old, next, 'pi:wakeup-nv-cmpxchg');
    if (found === old) break;
    old = found;
  }
  if (params.variant.buggy) {
    // BUG (deliberate): no ON re-check after NV switched to the wakeup vector. An interrupt
    // posted between kvm_vcpu_check_block's sync and the cmpxchg was notified with
    // POSTED_INTR_VECTOR, which the host ignores outside guest mode (breaks O4).
  } else if ((next & (1 << PI_ON)) !== 0) {
    // __apic_send_IPI_self(POSTED_INTR_WAKEUP_VECTOR): pending until IRQs are enabled again.
    doorbellRing(acc, L.pcpu(cpu, PCPU.HOST_IRR_SYS), piSysvecBit(POSTED_INTR_WAKEUP_VECTOR), 'pi:wakeup-self-ipi');
  }
}

/**
 * Descriptor work when the vCPU's thread is scheduled out: a vCPU that blocks (not preempted,
 * guest interrupts enabled) gets the wakeup handler; otherwise notifications are suppressed.
 * @kvm arch/x86/kvm/vmx/posted_intr.c vmx_vcpu_pi_put
 */
export function piVcpuPut(ctx: ScenarioCtx, v: VcpuId): void {
  const { acc, L } = ctx;
  const preempted = acc.readOnce(L.vcpu(v, VCPU.PREEMPTED), 'vcpu:preempted-read') !== 0;
  // kvm_vcpu_is_blocking() is rcuwait_active(&vcpu->wait); the guest halted with IF = 1, so
  // vmx_interrupt_blocked() is false.
  const blocking = acc.readOnce(L.vcpu(v, VCPU.WAIT_TASK), 'vcpu:wait-task-read') !== 0;
  if (!preempted && blocking) piEnableWakeupHandler(ctx, v);
  else acc.setBit(L.pid(v, PID.CONTROL), PI_SN, 'pi:sn-set');
}

/**
 * Descriptor work when the vCPU's thread is scheduled in on `cpu`: off the previous CPU's wakeup
 * list (under that CPU's lock), NDST := cpu, SN := 0, NV := POSTED_INTR_VECTOR; then a full
 * barrier, and ON := 1 if the PIR is not empty.
 * @kvm arch/x86/kvm/vmx/posted_intr.c vmx_vcpu_pi_load
 */
export function piVcpuLoad(ctx: ScenarioCtx, v: VcpuId, cpu: PcpuId): void {
  const { acc, L, params } = ctx;
  const control = L.pid(v, PID.CONTROL);
  const prev = acc.readOnce(L.vcpu(v, VCPU.CPU), 'vcpu:cpu-read');
  let old = acc.readOnce(control, 'pi:load-control-read');
  if ((old & NV_MASK) >>> PI_NV_SHIFT !== POSTED_INTR_WAKEUP_VECTOR && prev === cpu) {
    if (!acc.testAndClearBit(control, PI_SN, 'pi:sn-clear')) return;
  } else {
    // local_irq_save()
    if ((old & NV_MASK) >>> PI_NV_SHIFT === POSTED_INTR_WAKEUP_VECTOR) {
      const lock = wakeLock(acc, params, prev);
      const list = wakeList(acc, params, prev);
      spinLock(acc, lock, 'pi:wakeup-list-lock');
      acc.writeOnce(list, acc.readOnce(list, 'pi:wakeup-list-read') & ~(1 << v), 'pi:wakeup-list-del');
      spinUnlock(acc, lock, 'pi:wakeup-list-lock');
    }
    // NDST is the high half of the 64-bit control word the kernel updates with one cmpxchg64;
    // it only changes here, by this thread.
    if (acc.readOnce(L.pid(v, PID.NDST), 'pi:load-ndst-read') !== cpu) acc.xchg(L.pid(v, PID.NDST), cpu, 'pi:load-ndst-write');
    old = acc.readOnce(control, 'pi:load-control-read');
    for (;;) {
      const next = (old & ~(NV_MASK | (1 << PI_SN))) | (POSTED_INTR_VECTOR << PI_NV_SHIFT);
      const found = acc.cmpxchg(control, old, next, 'pi:load-nv-cmpxchg');
      if (found === old) break;
      old = found;
    }
    // kvm_arch_vcpu_load then records vcpu->cpu = cpu (unchanged here: no migration).
    acc.writeOnce(L.vcpu(v, VCPU.CPU), cpu, 'vcpu:cpu-write');
  }
  // smp_mb__after_atomic(): the locked op above is the full barrier on x86.
  for (let i = 0; i < 8; i++) {
    if (acc.readOnce(L.pid(v, PID.PIR, i), 'pi:pir-read') !== 0) {
      acc.setBit(control, PI_ON, 'pi:on-set');
      return;
    }
  }
}

/**
 * Is the halted vCPU runnable: sync the PIR (vmx_sync_pir_to_irr via kvm_apic_has_interrupt),
 * then any vIRR vector above PPR (0 here, so any vector) makes it runnable.
 * @kvm virt/kvm/kvm_main.c kvm_vcpu_check_block (kvm_arch_vcpu_runnable → kvm_cpu_has_interrupt)
 */
export function piVcpuCheckBlock(acc: Access, v: VcpuId): boolean {
  piSyncPirToIrr(acc, v);
  for (let i = 0; i < 8; i++) if (acc.readOnce(acc.layout.apicBitmapWord(v, APIC_IRR, i), 'apic:irr-read') !== 0) return true;
  return false;
}

/**
 * CPU0 after the vCPU's task switched out: idle with IRQs enabled. Takes pending host IRQs —
 * POSTED_INTR_VECTOR outside guest mode does nothing, POSTED_INTR_WAKEUP_VECTOR runs
 * pi_wakeup_handler — until the vCPU's task is runnable again (true) or the round's devices
 * are done and nothing is pending (false: the task still sleeps).
 * @kvm kernel/sched/idle.c do_idle; arch/x86/kernel/irq.c sysvec_kvm_posted_intr_ipi, sysvec_kvm_posted_intr_wakeup_ipi
 */
export function piIdleUntilWoken(ctx: ScenarioCtx, v: VcpuId): boolean {
  const { acc, L, params } = ctx;
  const irr = L.pcpu(CPU0, PCPU.HOST_IRR_SYS);
  const done = L.scratch(plan(params).at.done);
  const n = devices(params);
  const state = L.vcpu(v, VCPU.TASK_STATE);
  for (;;) {
    // Read "devices done" before taking IRQs: a device rings before it counts itself done.
    const last = acc.readOnce(done, 'pi:idle-done-read') === n;
    const bits = acc.readOnce(irr, 'pi:idle-irr-read') !== 0 ? doorbellTake(acc, irr, 'pi:idle-irq-ack') : 0;
    // (bits & POSTED_INTR_VECTOR): sysvec_kvm_posted_intr_ipi — only counts the IRQ.
    if ((bits & piSysvecBit(POSTED_INTR_WAKEUP_VECTOR)) !== 0) piWakeupHandler(ctx, CPU0);
    if (acc.readOnce(state, 'sched:task-state-read') === TASK_RUNNING) return true;
    if (last) return false;
    if (bits === 0) piSpinUntil(acc, done, 'pi:idle', () => acc.readOnce(irr, 'pi:idle-irr-read') !== 0 || acc.readOnce(done, 'pi:idle-done-read') === n, () => `${n} device(s) to finish posting`);
  }
}

/**
 * The vCPU thread blocks after a HLT exit: prepare_to_rcuwait, then loop { set_current_state
 * (TASK_INTERRUPTIBLE) (full barrier); runnable → break; schedule() }; finish_rcuwait. schedule()
 * switches the task out (vmx_vcpu_pi_put), idles CPU0 and, once the task is woken, switches it
 * back in (vmx_vcpu_pi_load). Returns false if the round ends with the task still asleep.
 * @kvm virt/kvm/kvm_main.c kvm_vcpu_block (kernel/sched/core.c __schedule → kvm_sched_out / kvm_sched_in)
 */
export function piKvmVcpuBlock(ctx: ScenarioCtx, v: VcpuId): boolean {
  const { acc, L } = ctx;
  const state = L.vcpu(v, VCPU.TASK_STATE);
  acc.storeRelease(L.vcpu(v, VCPU.WAIT_TASK), 1, 'vcpu:wait-task-set');
  for (;;) {
    acc.writeOnce(state, TASK_INTERRUPTIBLE, 'vcpu:task-interruptible');
    acc.smpMb('vcpu:set-current-state-mb');
    if (piVcpuCheckBlock(acc, v)) break;
    // schedule(): a task woken since set_current_state is not switched out.
    if (acc.readOnce(state, 'sched:task-state-read') === TASK_RUNNING) continue;
    piVcpuPut(ctx, v);
    if (!piIdleUntilWoken(ctx, v)) return false;
    piVcpuLoad(ctx, v, CPU0);
  }
  acc.storeRelease(L.vcpu(v, VCPU.WAIT_TASK), 0, 'vcpu:wait-task-clear');
  acc.writeOnce(state, TASK_RUNNING, 'vcpu:task-running');
  return true;
}

/** A device: after a seeded pause, post one of its vectors to vcpu0, then count itself done. */
function deviceRound(ctx: ScenarioCtx): void {
  const { acc, L, params } = ctx;
  const at = plan(params).at;
  const d = ctx.index - 1;
  const n = devices(params);
  const span = Math.floor((LAST_VECTOR - FIRST_VECTOR - d) / n) + 1;
  const vector = FIRST_VECTOR + d + n * ctx.prng.below(span);
  acc.poke(L.scratch(at.posted + d * 16), vector + 1);
  const delay = ctx.prng.below(DEVICE_DELAY_SPINS);
  piRendezvous(ctx, L.scratch(at.go));
  spin(delay);
  piHardwarePost(acc, VCPU0, vector);
  acc.atomicAdd(L.scratch(at.done), 1, 'pi:device-done');
}

/** The round's record for the checkers. */
function roundRecord(ctx: ScenarioCtx): PiBlockRound {
  const { acc, L, params } = ctx;
  const at = plan(params).at;
  const control = acc.peek(L.pid(VCPU0, PID.CONTROL));
  const ndst = acc.peek(L.pid(VCPU0, PID.NDST));
  const posted: number[] = [];
  for (let d = 0; d < devices(params); d++) {
    const p = acc.peek(L.scratch(at.posted + d * 16));
    if (p !== 0) posted.push(p - 1);
  }
  const onListOf: number[] = [];
  for (let c = 0; c < params.vcpus; c++) if ((acc.peek(wakeList(acc, params, c)) >>> VCPU0) & 1) onListOf.push(c);
  return {
    vcpu: VCPU0,
    sleeping: acc.peek(L.vcpu(VCPU0, VCPU.TASK_STATE)) === TASK_INTERRUPTIBLE && acc.peek(L.vcpu(VCPU0, VCPU.WAIT_TASK)) !== 0,
    on: (control & (1 << PI_ON)) !== 0,
    sn: (control & (1 << PI_SN)) !== 0,
    nv: (control & NV_MASK) >>> PI_NV_SHIFT,
    ndst,
    pir: Array.from({ length: 8 }, (_, i) => acc.peek(L.pid(VCPU0, PID.PIR, i)) >>> 0),
    virr: Array.from({ length: 8 }, (_, i) => acc.peek(L.apicBitmapWord(VCPU0, APIC_IRR, i)) >>> 0),
    wakeupPendingAtNdst: ndst >= 0 && ndst < params.vcpus && (acc.peek(L.pcpu(ndst, PCPU.HOST_IRR_SYS)) & piSysvecBit(POSTED_INTR_WAKEUP_VECTOR)) !== 0,
    onListOf,
    posted,
  };
}

/** The state every round starts from: vcpu0 just took a HLT exit on CPU0 (guest IF = 1). */
function setup(acc: Access, p: ScenarioParams): void {
  const L = acc.layout;
  for (let i = 0; i < 8; i++) {
    acc.poke(L.pid(VCPU0, PID.PIR, i), 0);
    acc.poke(L.apicBitmapWord(VCPU0, APIC_IRR, i), 0);
  }
  acc.poke(L.pid(VCPU0, PID.CONTROL), POSTED_INTR_VECTOR << PI_NV_SHIFT);
  acc.poke(L.pid(VCPU0, PID.NDST), CPU0);
  for (let v = 0; v < p.vcpus; v++) {
    acc.poke(L.vcpu(v, VCPU.MODE), OUTSIDE_GUEST_MODE);
    acc.poke(L.vcpu(v, VCPU.CPU), v);
    acc.poke(L.vcpu(v, VCPU.APICV_ACTIVE), 1);
    acc.poke(L.vcpu(v, VCPU.TASK_STATE), TASK_RUNNING);
    acc.poke(L.vcpu(v, VCPU.WAIT_TASK), 0);
    acc.poke(L.vcpu(v, VCPU.PREEMPTED), 0);
    acc.poke(L.vcpu(v, VCPU.READY), 0);
    acc.poke(L.pcpu(v, PCPU.HOST_IRR_SYS), 0);
  }
  const { words } = plan(p);
  for (let i = 0; i < words; i++) acc.poke(L.scratch(i), 0);
}

/** The scenario. */
export const piWakeupBlock: ScenarioDef = {
  id: 'pi-wakeup-block',
  title: 'VMX posted interrupts: a device posts while the vCPU schedules out to block and NV switches to the wakeup vector',
  seedFile: '000_12335ea9bf6ce8f5.txt',
  variants: [
    { name: 'buggy', buggy: true, differs: 'pi_enable_wakeup_handler does not re-check ON after switching NV to POSTED_INTR_WAKEUP_VECTOR (no self-IPI)' },
    { name: 'fixed', buggy: false, differs: '' },
  ],
  invariants: [
    { name: 'piBlockedHasWakeInFlight', description: 'a sleeping vCPU with an interrupt pending (ON, PIR or vIRR) has the wakeup vector pending at its NDST CPU' },
    { name: 'piWakeupListMatchesNv', description: 'the vCPU is on the wakeup list of CPU c exactly when NV is the wakeup vector and NDST is c' },
  ],
  widen: { probability: 0.5, maxSpins: 400, points: ['pi:wakeup-', 'pi:hw-'] },
  vcpus: { default: 2, min: 2, max: 4 },
  roles: (p) => ['vcpu0', ...Array.from({ length: devices(p) }, (_, i) => `device${i + 1}`)],
  layout: (p) => ({ vcpus: p.vcpus, pcpus: p.vcpus, scratchWords: plan(p).words }),
  init(acc, p) {
    setup(acc, p);
  },
  round(ctx) {
    if (ctx.index !== 0) {
      deviceRound(ctx);
      return;
    }
    piRendezvous(ctx, ctx.L.scratch(plan(ctx.params).at.go));
    piKvmVcpuBlock(ctx, VCPU0);
  },
  check(ctx): Violation[] {
    const rec = roundRecord(ctx);
    return [...piBlockedHasWakeInFlight(rec), ...piWakeupListMatchesNv(rec)];
  },
  reset(ctx) {
    setup(ctx.acc, ctx.params);
  },
};
