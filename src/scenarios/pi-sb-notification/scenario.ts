/**
 * pi-sb-notification — VMX posted interrupts: the store-buffering (SB) pair between a sender's
 * PID.ON / vcpu->mode and the target's vcpu->mode / PID.ON (domain notes 2.2, 2.3, 2.5 O1+O2,
 * race PI-1). See README.md beside this file.
 *
 *   CPU0 target (vcpu_enter_guest, IRQs off)       CPU1 sender (__vmx_deliver_posted_interrupt)
 *   mode = IN_GUEST_MODE        (plain store)      test_and_set_bit(v, PIR)      (locked)
 *   srcu_read_unlock: smp_mb(); unlock count++     test_and_set_bit(ON)          (locked = full fence)
 *   ON? -> clear ON, PIR -> vIRR (sync_pir_to_irr) mode == IN_GUEST_MODE? -> notification IPI
 *   VM-enter: notifications are processed in guest                      else -> kvm_vcpu_wake_up
 *
 * buggy: the entry path has no full barrier between the mode store and the ON load, so the mode
 * store can still sit in CPU0's store buffer while CPU0 reads ON = 0 and CPU1 (after its locked
 * ON update) reads mode = OUTSIDE_GUEST_MODE: both loads miss both stores — a genuine SB outcome
 * of the host CPU, not a scripted order. Window widening is off. Each round starts from a spin
 * rendezvous plus a seeded, self-balancing start offset before either side's first access, so
 * each side reaches the race first about half the time; nothing runs between the racing store
 * and load but the access layer itself.
 */
import { APIC_IRR } from '../../mem/apicdef.js';
import { PCPU, PID, VCPU, planScratch, vecPos, vecWord, type Addr, type PcpuId, type VcpuId } from '../../mem/layout.js';
import type { Access } from '../../mem/access.js';
import { IN_GUEST_MODE, OUTSIDE_GUEST_MODE } from '../../kvm/modes.js';
import { FIRST_SYSTEM_VECTOR_WORD, POSTED_INTR_VECTOR, TASK_INTERRUPTIBLE, TASK_RUNNING } from '../../kvm/kick.js';
import { doorbellRing, pollUntil } from '../../sync/index.js';
import { piNoStrandedAtEntry, piPostedReachesTarget, type PiEntryRound } from '../../invariants/posted-intr.js';
import type { Violation } from '../../invariants/checks.js';
import { EmuError } from '../../errors.js';
import { bitmapVectors } from '../../invariants/snapshot.js';
import type { ScenarioCtx, ScenarioDef, ScenarioParams } from '../define.js';

/**
 * Bit of PID.ON in the descriptor's control word.
 * @kvm arch/x86/include/asm/posted_intr.h POSTED_INTR_ON
 */
export const PI_ON = 0;
/**
 * Bit of PID.SN in the descriptor's control word.
 * @kvm arch/x86/include/asm/posted_intr.h POSTED_INTR_SN
 */
export const PI_SN = 1;
/** Shift of PID.NV (bits 23:16) in the descriptor's control word. */
export const PI_NV_SHIFT = 16;

/** The target vCPU and the pCPU it runs on (NDST / vcpu->cpu). */
const TARGET: VcpuId = 0;
const TARGET_PCPU: PcpuId = 0;
/** Vectors the senders post (each sender its own residue class, one vector per round). */
const FIRST_VECTOR = 0x20;
const LAST_VECTOR = 0xef;

function senders(p: ScenarioParams): number {
  return p.vcpus - 1;
}

function makePlan(n: number) {
  return planScratch({ go: 1, done: 1, phase: 1, posted: n * 16, synced: 8, notified: 8 });
}
const plans = new Map<number, ReturnType<typeof makePlan>>();
function plan(p: ScenarioParams): ReturnType<typeof makePlan> {
  let pl = plans.get(p.vcpus);
  if (!pl) plans.set(p.vcpus, (pl = makePlan(senders(p))));
  return pl;
}

/**
 * Bit of a host system vector (0xE0-0xFF) in a pCPU's host IRR word (PCPU.HOST_IRR_SYS).
 * @emulator
 */
export function piSysvecBit(vector: number): number {
  return 1 << (vector - FIRST_SYSTEM_VECTOR_WORD);
}

/**
 * Wake the vCPU's task if it sleeps on its rcuwait; `vcpu->ready` is set only when a task was
 * woken. Returns whether it woke one. (The sleeper of these scenarios never futex-sleeps on the
 * word, so no futex notify is needed.)
 * @kvm virt/kvm/kvm_main.c kvm_vcpu_wake_up (rcuwait_wake_up: smp_mb, then the waiter)
 */
export function piKvmVcpuWakeUp(acc: Access, v: VcpuId): boolean {
  const L = acc.layout;
  acc.smpMb('vcpu:wake-mb');
  if (acc.readOnce(L.vcpu(v, VCPU.WAIT_TASK), 'vcpu:wait-task-read') === 0) return false;
  if (acc.cmpxchg(L.vcpu(v, VCPU.TASK_STATE), TASK_INTERRUPTIBLE, TASK_RUNNING, 'vcpu:try-to-wake-up') !== TASK_INTERRUPTIBLE) return false;
  acc.writeOnce(L.vcpu(v, VCPU.READY), 1, 'vcpu:ready');
  return true;
}

/**
 * The sender's notification step: if the target is in guest mode, send POSTED_INTR_VECTOR to
 * its pCPU; otherwise only wake it (it syncs the PIR in vcpu_enter_guest).
 * @kvm arch/x86/kvm/vmx/common.h kvm_vcpu_trigger_posted_interrupt
 */
export function piTriggerPostedInterrupt(acc: Access, target: VcpuId): void {
  const L = acc.layout;
  if (acc.readOnce(L.vcpu(target, VCPU.MODE), 'pi:mode-read') === IN_GUEST_MODE) {
    const cpu = acc.readOnce(L.vcpu(target, VCPU.CPU), 'pi:cpu-read');
    doorbellRing(acc, L.pcpu(cpu, PCPU.HOST_IRR_SYS), piSysvecBit(POSTED_INTR_VECTOR), 'pi:notify-ipi');
    return;
  }
  piKvmVcpuWakeUp(acc, target);
}

/**
 * Post `vector` to `target`: PIR bit (locked), then ON (locked: the full barrier of O1), then
 * the notification. Returns false if the vector coalesced with one already in the PIR.
 * @kvm arch/x86/kvm/vmx/common.h __vmx_deliver_posted_interrupt
 */
export function piDeliverPostedInterrupt(acc: Access, target: VcpuId, vector: number): boolean {
  const L = acc.layout;
  if (acc.testAndSetBit(L.pid(target, PID.PIR, vecWord(vector)), vecPos(vector), 'pi:pir-set')) return false;
  // If a previous notification has sent the IPI, nothing to do. The locked op pairs with the
  // full barrier after the mode store in vcpu_enter_guest.
  if (acc.testAndSetBit(L.pid(target, PID.CONTROL), PI_ON, 'pi:on-set')) return true;
  piTriggerPostedInterrupt(acc, target);
  return true;
}

/**
 * Move the PIR into the vIRR: read each word, xchg the non-zero ones to 0 and OR them into the
 * vIRR (locked). Returns the 8 words taken.
 * @kvm arch/x86/kvm/lapic.c __kvm_apic_update_irr
 */
export function piHarvestPir(acc: Access, v: VcpuId): number[] {
  const L = acc.layout;
  const taken: number[] = [];
  for (let i = 0; i < 8; i++) {
    const pirAddr = L.pid(v, PID.PIR, i);
    let w = 0;
    if (acc.readOnce(pirAddr, 'pi:pir-read') !== 0) {
      w = acc.xchg(pirAddr, 0, 'pi:pir-xchg');
      if (w !== 0) acc.atomicOr(L.apicBitmapWord(v, APIC_IRR, i), w, 'pi:virr-or');
    }
    taken.push(w);
  }
  return taken;
}

/**
 * Pre-entry sync: if ON, clear it (locked, before the harvest: O3) and move the PIR into the
 * vIRR. Returns the 8 PIR words picked up (all zero when ON was clear).
 * @kvm arch/x86/kvm/vmx/vmx.c vmx_sync_pir_to_irr
 */
export function piSyncPirToIrr(acc: Access, v: VcpuId): number[] {
  const L = acc.layout;
  const control = L.pid(v, PID.CONTROL);
  if ((acc.readOnce(control, 'pi:on-read') & (1 << PI_ON)) === 0) return [0, 0, 0, 0, 0, 0, 0, 0];
  acc.clearBit(control, PI_ON, 'pi:on-clear');
  // smp_mb__after_atomic(): the locked clear above already is the full barrier on x86.
  return piHarvestPir(acc, v);
}

/**
 * Posted-interrupt processing by the CPU in VMX non-root mode when the notification vector
 * arrives: acknowledge it in the local APIC, clear ON, EOI, then VIRR |= PIR and PIR = 0 (RVI
 * follows). Returns the 8 PIR words delivered, or null when no notification was pending.
 * @sdm SDM vol. 3, 29.6 "Posted-Interrupt Processing"
 */
export function piProcessPostedInterrupts(acc: Access, v: VcpuId, cpu: PcpuId): number[] | null {
  const L = acc.layout;
  const bit = piSysvecBit(POSTED_INTR_VECTOR);
  if ((acc.atomicAnd(L.pcpu(cpu, PCPU.HOST_IRR_SYS), ~bit, 'pi:hw-ack') & bit) === 0) return null;
  acc.clearBit(L.pid(v, PID.CONTROL), PI_ON, 'pi:hw-on-clear');
  return piHarvestPir(acc, v);
}

/**
 * The target's entry up to the ON load: `mode = IN_GUEST_MODE` (smp_store_release: a plain
 * store), then `kvm_vcpu_srcu_read_unlock` whose `__srcu_read_unlock` starts with `smp_mb()` —
 * the full barrier `smp_mb__after_srcu_read_unlock()` (empty itself) relies on. The unlock's
 * per-CPU counter increment touches only this CPU's data and is left out.
 * @kvm arch/x86/kvm/x86.c vcpu_enter_guest (mode store, kvm_vcpu_srcu_read_unlock, smp_mb__after_srcu_read_unlock)
 */
export function piEnterGuestMode(ctx: ScenarioCtx): void {
  const { acc, L, params } = ctx;
  acc.storeRelease(L.vcpu(TARGET, VCPU.MODE), IN_GUEST_MODE, 'vcpu:mode-in');
  if (params.variant.buggy) {
    // BUG (deliberate): no full barrier between the mode store and the ON load that follows;
    // the store may still sit in this CPU's store buffer when ON is read (breaks O2).
  } else {
    acc.smpMb('srcu:read-unlock-mb');
  }
}


/** Keep a record of picked-up PIR words in scratch area `first` (bookkeeping on the target's own words). */
function record(ctx: ScenarioCtx, first: number, words: readonly number[]): void {
  const { acc, L } = ctx;
  for (let i = 0; i < 8; i++) if (words[i]) acc.poke(L.scratch(first + i), acc.peek(L.scratch(first + i)) | words[i]!);
}

/** Spins of a wait before it falls back to a bounded sleeping poll. */
const SPINS_BEFORE_SLEEP = 50_000;

/**
 * Spin until `cond()` holds, then (a partner thread descheduled) fall back to the bounded
 * sleeping {@link pollUntil} on `addr`. Throws EMU_ERR_DEADLINE / EMU_ERR_ABORTED like every wait.
 * @emulator
 */
export function piSpinUntil(acc: Access, addr: Addr, label: string, cond: () => boolean, what: () => string): void {
  for (let i = 0; i < SPINS_BEFORE_SLEEP; i++) if (cond()) return;
  pollUntil(acc, addr, label, cond, what);
}

/**
 * Litmus-style start of a round: every role adds itself to the word at `go` (zeroed by the
 * reset) and spins until all have, so the race that follows starts on all CPUs within about one
 * cache-line transfer (the round barrier may put a thread to sleep and wake it tens of µs late);
 * the last to arrive wakes any role that fell back to sleeping.
 * The same in every variant; it implies no order between the roles.
 * @emulator
 */
export function piRendezvous(ctx: ScenarioCtx, go: Addr): void {
  const { acc } = ctx;
  const parties = ctx.roles.length;
  if (acc.atomicAdd(go, 1, 'round:rendezvous-arrive') + 1 === parties) {
    // Wake a role that gave up spinning (its partner was descheduled) and sleeps on the word.
    acc.notify(go, Infinity, 'round:rendezvous-notify');
    return;
  }
  piSpinUntil(acc, go, 'round:rendezvous-wait', () => acc.readOnce(go, 'round:rendezvous-spin') === parties, () => `all ${parties} roles at the start of the round`);
}

/** Upper bound of each side's seeded random start offset after the rendezvous, in spin iterations. */
const START_JITTER_SPINS = 200;
/** Step and bound of the self-balancing start offset, in spin iterations. */
const PHASE_STEP = 8;
const PHASE_MAX = 4000;
/** Sink of the start spins (keeps the loop from being optimised away). */
let spinSink = 0;

/**
 * Litmus-style staggered start, run by each side before its first racing access (never between
 * a store and a load; the same code in every variant). A side spins its share of the balancing
 * offset kept in the `phase` word (> 0: the target waits, < 0: the sender waits) plus a seeded
 * random 0..START_JITTER_SPINS. After every round the checker moves the offset towards the point
 * where each side reaches the race first about half of the time (see {@link balancePhase}).
 */
function startOffset(ctx: ScenarioCtx): void {
  const { acc, L, params } = ctx;
  const phase = acc.peek(L.scratch(plan(params).at.phase));
  const mine = ctx.index === 0 ? Math.max(0, phase) : Math.max(0, -phase);
  const n = mine + ctx.prng.below(START_JITTER_SPINS + 1);
  let s = spinSink;
  for (let i = 0; i < n; i++) s = (s + i) | 0;
  spinSink = s;
}

/**
 * Move the start offset one step (role 0, after the check, before the reset): the target was
 * late if its entry sync picked something up, early if a sender found it in guest mode and
 * notified. Emulator bookkeeping between rounds.
 */
function balancePhase(ctx: ScenarioCtx): void {
  const { acc, L, params } = ctx;
  const at = plan(params).at;
  let late = false;
  let notified = (acc.peek(L.pcpu(TARGET_PCPU, PCPU.HOST_IRR_SYS)) & piSysvecBit(POSTED_INTR_VECTOR)) !== 0;
  for (let i = 0; i < 8; i++) {
    if (acc.peek(L.scratch(at.synced + i)) !== 0) late = true;
    if (acc.peek(L.scratch(at.notified + i)) !== 0) notified = true;
  }
  const addr = L.scratch(at.phase);
  const phase = acc.peek(addr) + (late ? -PHASE_STEP : 0) + (notified ? PHASE_STEP : 0);
  acc.poke(addr, Math.max(-PHASE_MAX, Math.min(PHASE_MAX, phase)));
}

/** The target: enter the guest, then run in it until every sender is done. */
function targetRound(ctx: ScenarioCtx): void {
  const { acc, L, params } = ctx;
  const at = plan(params).at;
  const n = senders(params);
  piRendezvous(ctx, L.scratch(at.go));
  startOffset(ctx);
  piEnterGuestMode(ctx);
  // if (kvm_lapic_enabled(vcpu)) sync_pir_to_irr(vcpu)
  const synced = piSyncPirToIrr(acc, TARGET);
  record(ctx, at.synced, synced);
  // VM-enter. The guest runs until the senders are done; a notification that arrives meanwhile
  // is processed by the CPU in non-root mode (doing it once at the end gives the same state).
  const done = L.scratch(at.done);
  piSpinUntil(acc, done, 'pisb:guest-run', () => acc.readOnce(done, 'pisb:senders-done-read') === n, () => `${n} sender(s) to finish posting`);
  const notified = piProcessPostedInterrupts(acc, TARGET, TARGET_PCPU);
  if (notified) record(ctx, at.notified, notified);
}

/** A sender (another vCPU's thread handling an ICR write): post one of its vectors. */
function senderRound(ctx: ScenarioCtx): void {
  const { acc, L, params } = ctx;
  const at = plan(params).at;
  const s = ctx.index - 1;
  const n = senders(params);
  const span = Math.floor((LAST_VECTOR - FIRST_VECTOR - s) / n) + 1;
  const vector = FIRST_VECTOR + s + n * ctx.prng.below(span);
  acc.poke(L.scratch(at.posted + s * 16), vector + 1);
  piRendezvous(ctx, L.scratch(at.go));
  startOffset(ctx);
  // vmx_deliver_posted_interrupt: posting needs APICv active on the target.
  if (acc.readOnce(L.vcpu(TARGET, VCPU.APICV_ACTIVE), 'apicv:active-read') === 0) throw new EmuError('EMU_ERR_INTERNAL', `${acc.name}: APICv inactive on vcpu${TARGET}`, { actor: acc.name });
  piDeliverPostedInterrupt(acc, TARGET, vector);
  acc.atomicAdd(L.scratch(at.done), 1, 'pisb:sender-done');
}

/** The round's record for the checkers. */
function roundRecord(ctx: ScenarioCtx): PiEntryRound {
  const { acc, L, params } = ctx;
  const at = plan(params).at;
  const words = (f: (i: number) => Addr) => Array.from({ length: 8 }, (_, i) => acc.peek(f(i)) >>> 0);
  const posted: number[] = [];
  for (let s = 0; s < senders(params); s++) {
    const p = acc.peek(L.scratch(at.posted + s * 16));
    if (p !== 0) posted.push(p - 1);
  }
  return {
    target: TARGET,
    mode: acc.peek(L.vcpu(TARGET, VCPU.MODE)),
    pir: words((i) => L.pid(TARGET, PID.PIR, i)),
    on: (acc.peek(L.pid(TARGET, PID.CONTROL)) & (1 << PI_ON)) !== 0,
    notificationPending: (acc.peek(L.pcpu(TARGET_PCPU, PCPU.HOST_IRR_SYS)) & piSysvecBit(POSTED_INTR_VECTOR)) !== 0,
    posted,
    virr: words((i) => L.apicBitmapWord(TARGET, APIC_IRR, i)),
    syncedAtEntry: bitmapVectors(words((i) => L.scratch(at.synced + i))),
    notified: bitmapVectors(words((i) => L.scratch(at.notified + i))),
  };
}

/** The descriptor, vCPU and pCPU words every round starts from (target outside guest mode). */
function setup(acc: Access, p: ScenarioParams): void {
  const L = acc.layout;
  for (let i = 0; i < 8; i++) {
    acc.poke(L.pid(TARGET, PID.PIR, i), 0);
    acc.poke(L.apicBitmapWord(TARGET, APIC_IRR, i), 0);
  }
  acc.poke(L.pid(TARGET, PID.CONTROL), POSTED_INTR_VECTOR << PI_NV_SHIFT);
  acc.poke(L.pid(TARGET, PID.NDST), TARGET_PCPU);
  for (let v = 0; v < p.vcpus; v++) {
    acc.poke(L.vcpu(v, VCPU.MODE), OUTSIDE_GUEST_MODE);
    acc.poke(L.vcpu(v, VCPU.CPU), v);
    acc.poke(L.vcpu(v, VCPU.APICV_ACTIVE), 1);
    acc.poke(L.vcpu(v, VCPU.READY), 0);
    acc.poke(L.pcpu(v, PCPU.HOST_IRR_SYS), 0);
  }
  const { words } = plan(p);
  for (let i = 0; i < words; i++) acc.poke(L.scratch(i), 0);
}

/** Clear what a round wrote (cheaper than {@link setup}: the other roles wait at the barrier). */
function resetRound(ctx: ScenarioCtx): void {
  const { acc, L, params } = ctx;
  const clear = (a: Addr) => {
    if (acc.peek(a) !== 0) acc.poke(a, 0);
  };
  const at = plan(params).at;
  for (let i = 0; i < 8; i++) {
    clear(L.pid(TARGET, PID.PIR, i));
    clear(L.apicBitmapWord(TARGET, APIC_IRR, i));
    clear(L.scratch(at.synced + i));
    clear(L.scratch(at.notified + i));
  }
  acc.poke(L.pid(TARGET, PID.CONTROL), POSTED_INTR_VECTOR << PI_NV_SHIFT);
  acc.poke(L.vcpu(TARGET, VCPU.MODE), OUTSIDE_GUEST_MODE);
  clear(L.vcpu(TARGET, VCPU.READY));
  clear(L.pcpu(TARGET_PCPU, PCPU.HOST_IRR_SYS));
  for (let s = 0; s < senders(params); s++) clear(L.scratch(at.posted + s * 16));
  clear(L.scratch(at.done));
  clear(L.scratch(at.go));
}

/** The scenario. */
export const piSbNotification: ScenarioDef = {
  id: 'pi-sb-notification',
  title: "VMX posted interrupts: store buffering between the sender's ON/mode and the target's mode/ON",
  seedFile: '000_12335ea9bf6ce8f5.txt',
  variants: [
    { name: 'buggy', buggy: true, differs: 'vcpu_enter_guest has no full barrier between the mode = IN_GUEST_MODE store and the PID.ON load of sync_pir_to_irr' },
    { name: 'fixed', buggy: false, differs: '' },
  ],
  invariants: [
    { name: 'piNoStrandedAtEntry', description: 'a vCPU in guest mode never holds PIR≠0 ∧ ON=1 with no notification pending for its pCPU' },
    { name: 'piPostedReachesTarget', description: 'every posted vector reaches the vIRR, by the entry sync or by a notification processed in the guest' },
  ],
  // Window widening off: the race needs nothing but the host CPU's store buffer.
  widen: { probability: 0, maxSpins: 0, points: [] },
  vcpus: { default: 2, min: 2, max: 4 },
  roles: (p) => ['target', ...Array.from({ length: senders(p) }, (_, i) => `sender${i + 1}`)],
  layout: (p) => ({ vcpus: p.vcpus, pcpus: p.vcpus, scratchWords: plan(p).words }),
  init(acc, p) {
    setup(acc, p);
  },
  round(ctx) {
    if (ctx.index === 0) targetRound(ctx);
    else senderRound(ctx);
  },
  check(ctx): Violation[] {
    const rec = roundRecord(ctx);
    return [...piNoStrandedAtEntry(rec), ...piPostedReachesTarget(rec)];
  },
  reset(ctx) {
    balancePhase(ctx);
    resetRound(ctx);
  },
};
