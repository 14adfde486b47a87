/**
 * pi-wakeup-block — VMX posted interrupts vs. a vCPU going to block: posting hardware (an
 * assigned device's VT-d posting, or IPI virtualization) posts to a vCPU while its thread
 * schedules out in kvm_vcpu_block and vmx_vcpu_pi_put switches the descriptor to the wakeup
 * vector (domain notes 2.4, 2.5 O4, race PI-3). See README.md beside this file.
 *
 *   CPU0 vcpu0 thread (HLT with IF=1)                         CPU1 device (hw/vmx/posting.ts)
 *   kvm/block.ts kvmVcpuBlockBegin / kvmVcpuBlockIter:
 *     set_current_state(TASK_INTERRUPTIBLE) (smp_mb)
 *     kvm_vcpu_check_block: vmx_sync_pir_to_irr: ON == 0
 *                                                             vtdPostInterrupt: PIR |= v;
 *                                                               ON == 0 && SN == 0: ON = 1,
 *                                                               send NV (POSTED_INTR_VECTOR) to NDST
 *   schedule() -> kvm_x86_ops.vcpu_put = kvm/vmx/posted-intr.ts vmxVcpuPiPut
 *     -> piEnableWakeupHandler (IRQs off): list add under CPU 0's raw spinlock,
 *        cmpxchg NV := POSTED_INTR_WAKEUP_VECTOR,
 *        fixed: ON set in the new control -> self-IPI POSTED_INTR_WAKEUP_VECTOR
 *        vmx-pi-wakeup-no-on-recheck: no re-check
 *   CPU0 idles with IRQs on: kvm/x86.ts handleHostIrqs -> POSTED_INTR_VECTOR in root mode does
 *     nothing; POSTED_INTR_WAKEUP_VECTOR -> piWakeupHandler: ON -> kvm_vcpu_wake_up
 *   woken: kvm_x86_ops.vcpu_load = vmxVcpuPiLoad, and the block loop finds the vCPU runnable
 *   buggy: vcpu0 sleeps with ON = 1 and NV = WAKEUP; no notification will ever come
 *
 * Every step is the machine's own code; this module holds the topology, CPU 0's idle task while
 * vcpu0 sleeps (pacing: it takes the pCPU's interrupts until vcpu0 is woken or the devices are
 * done), the devices' seeded think time and the checks.
 */
import { APIC_IRR } from '../../mem/apicdef.js';
import { PCPU, PID, VCPU, planScratch, type PcpuId, type VcpuId } from '../../mem/layout.js';
import type { Access } from '../../mem/access.js';
import { FIRST_SYSTEM_VECTOR_WORD, POSTED_INTR_WAKEUP_VECTOR, TASK_INTERRUPTIBLE, TASK_RUNNING } from '../../kvm/kick.js';
import { kvmVcpuBlockBegin, kvmVcpuBlockEnd, kvmVcpuBlockIter } from '../../kvm/block.js';
import { handleHostIrqs } from '../../kvm/x86.js';
import { vmxX86Ops } from '../../kvm/vmx/vmx.js';
import { PATCH_PI_WAKEUP_NO_ON_RECHECK, piWakeupListVcpus } from '../../kvm/vmx/posted-intr.js';
import { vtdPostInterrupt } from '../../hw/vmx/posting.js';
import { POSTED_INTR_ON, POSTED_INTR_SN, piNv } from '../../hw/vmx/pi-desc.js';
import type { KvmCtx } from '../../kvm/x86-ops.js';
import { piBlockedHasWakeInFlight, piWakeupListMatchesNv, type PiBlockRound } from '../../invariants/posted-intr.js';
import type { Violation } from '../../invariants/checks.js';
import { peekBitmap } from '../../invariants/snapshot.js';
import type { ScenarioCtx, ScenarioDef, ScenarioParams } from '../define.js';
import { resetVmSlice, scenarioKvmCtx } from '../kvm-actor.js';
import { countDone, rendezvous, spinUntil } from '../pacing.js';

/** The blocking vCPU and the pCPU its thread runs on. */
const VCPU0: VcpuId = 0;
const CPU0: PcpuId = 0;
/** Vectors the devices post (each device its own residue class, one vector per round). */
const FIRST_VECTOR = 0x20;
const LAST_VECTOR = 0xef;
/** Upper bound of a device's pause before it posts, in spin iterations (seeded per device). */
const DEVICE_DELAY_SPINS = 3000;

function devices(p: ScenarioParams): number {
  return p.vcpus - 1;
}

function plan(p: ScenarioParams) {
  return planScratch({ go: 1, done: 1, posted: devices(p) * 16 });
}

/** This actor's KvmCtx: vcpu0 on CPU 0; a device's context only carries its accesses and counters. */
function kvmCtxOf(ctx: ScenarioCtx): KvmCtx {
  return scenarioKvmCtx(ctx, () => vmxX86Ops);
}

/** Spin a seeded number of iterations (the device's think time); the sink keeps the loop. */
let spinSink = 0;
function spin(n: number): void {
  let s = spinSink;
  for (let i = 0; i < n; i++) s = (s + i) | 0;
  spinSink = s;
}

/**
 * CPU 0 after vcpu0's task switched out: its idle task with IRQs on takes the pCPU's pending
 * host interrupts (the machine's handleHostIrqs) until vcpu0 is woken (true) or the round's
 * devices are done and nothing is pending (false: the task still sleeps).
 */
function idleUntilWoken(ctx: ScenarioCtx, k: KvmCtx): boolean {
  const { acc, L, params } = ctx;
  const irr = L.pcpu(CPU0, PCPU.HOST_IRR_SYS);
  const done = L.scratch(plan(params).at.done);
  const n = devices(params);
  const state = L.vcpu(VCPU0, VCPU.TASK_STATE);
  for (;;) {
    // Read "devices done" before taking IRQs: a device rings before it counts itself done.
    const last = acc.readOnce(done, 'pi:idle-done-read') === n;
    const pending = acc.readOnce(irr, 'pi:idle-irr-read') !== 0;
    if (pending) handleHostIrqs(k);
    if (acc.readOnce(state, 'sched:task-state-read') !== TASK_INTERRUPTIBLE) return true;
    if (last) return false;
    if (!pending) spinUntil(acc, done, 'pi:idle', () => acc.readOnce(irr, 'pi:idle-irr-read') !== 0 || acc.readOnce(done, 'pi:idle-done-read') === n, () => `${n} device(s) to finish posting`);
  }
}

/**
 * vcpu0's thread after a HLT exit with IF = 1: kvm_vcpu_block. Its schedule() switches the task
 * out (kvm_x86_ops.vcpu_put), idles CPU 0 and, once the task is woken, switches it back in
 * (kvm_x86_ops.vcpu_load; vcpu->cpu stays 0). The round ends with the task asleep if nothing
 * woke it.
 */
function vcpuRound(ctx: ScenarioCtx): void {
  const k = kvmCtxOf(ctx);
  rendezvous(ctx, ctx.L.scratch(plan(ctx.params).at.go));
  kvmVcpuBlockBegin(k, VCPU0);
  let asleep = false;
  const schedule = () => {
    k.ops.vcpuPut(k, VCPU0);
    if (idleUntilWoken(ctx, k)) k.ops.vcpuLoad(k, VCPU0, CPU0);
    else asleep = true;
  };
  while (!kvmVcpuBlockIter(k, VCPU0, schedule)) if (asleep) return;
  kvmVcpuBlockEnd(k, VCPU0);
}

/** A device: after a seeded pause, post one of its vectors to vcpu0, then count itself done. */
function deviceRound(ctx: ScenarioCtx): void {
  const k = kvmCtxOf(ctx);
  const { acc, L, params } = ctx;
  const at = plan(params).at;
  const d = ctx.index - 1;
  const n = devices(params);
  const span = Math.floor((LAST_VECTOR - FIRST_VECTOR - d) / n) + 1;
  const vector = FIRST_VECTOR + d + n * ctx.prng.below(span);
  acc.poke(L.scratch(at.posted + d * 16), vector + 1);
  const delay = ctx.prng.below(DEVICE_DELAY_SPINS);
  rendezvous(ctx, L.scratch(at.go));
  spin(delay);
  vtdPostInterrupt(k, VCPU0, vector);
  countDone(acc, L.scratch(at.done), 'pi:device-done');
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
  for (let c = 0; c < L.config.pcpus; c++) if (piWakeupListVcpus(acc, c).includes(VCPU0)) onListOf.push(c);
  const wakeupBit = 1 << (POSTED_INTR_WAKEUP_VECTOR - FIRST_SYSTEM_VECTOR_WORD);
  return {
    vcpu: VCPU0,
    sleeping: acc.peek(L.vcpu(VCPU0, VCPU.TASK_STATE)) === TASK_INTERRUPTIBLE && acc.peek(L.vcpu(VCPU0, VCPU.WAIT_TASK)) !== 0,
    on: (control & (1 << POSTED_INTR_ON)) !== 0,
    sn: (control & (1 << POSTED_INTR_SN)) !== 0,
    nv: piNv(control),
    ndst,
    pir: peekBitmap(acc, (i) => L.pid(VCPU0, PID.PIR, i)),
    virr: peekBitmap(acc, (i) => L.apicBitmapWord(VCPU0, APIC_IRR, i)),
    wakeupPendingAtNdst: ndst >= 0 && ndst < L.config.pcpus && (acc.peek(L.pcpu(ndst, PCPU.HOST_IRR_SYS)) & wakeupBit) !== 0,
    onListOf,
    posted,
  };
}

/** Every round starts from a fresh VMX VM with vcpu0 just out of a HLT exit on CPU 0 (guest IF = 1). */
function setup(acc: Access, p: ScenarioParams): void {
  const L = acc.layout;
  resetVmSlice(acc, 'vmx', p.vcpus, plan(p).words);
  // vcpu0's task: running, not registered on its rcuwait, not preempted.
  for (const [f, val] of [[VCPU.TASK_STATE, TASK_RUNNING], [VCPU.WAIT_TASK, 0], [VCPU.BLOCKING, 0], [VCPU.PREEMPTED, 0], [VCPU.READY, 0]] as const) acc.poke(L.vcpu(VCPU0, f), val);
}

/** The scenario. */
export const piWakeupBlock: ScenarioDef = {
  id: 'pi-wakeup-block',
  title: 'VMX posted interrupts: a device posts while the vCPU schedules out to block and NV switches to the wakeup vector',
  seedFile: '000_12335ea9bf6ce8f5.txt',
  variants: [
    { name: 'buggy', buggy: true, differs: 'pi_enable_wakeup_handler does not re-check ON after switching NV to POSTED_INTR_WAKEUP_VECTOR (no self-IPI)', patches: [PATCH_PI_WAKEUP_NO_ON_RECHECK] },
    { name: 'fixed', buggy: false, differs: '', kernel: 'v5.17 and later in this form (pi_enable_wakeup_handler); earlier kernels re-check ON in pi_pre_block' },
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
    if (ctx.index === 0) vcpuRound(ctx);
    else deviceRound(ctx);
  },
  check(ctx): Violation[] {
    const rec = roundRecord(ctx);
    return [...piBlockedHasWakeInFlight(rec), ...piWakeupListMatchesNv(rec)];
  },
  reset(ctx) {
    setup(ctx.acc, ctx.params);
  },
};
