/**
 * pi-sb-notification — VMX posted interrupts: the store-buffering (SB) pair between a sender's
 * PID.ON / vcpu->mode and the target's vcpu->mode / PID.ON (domain notes 2.2, 2.3, 2.5 O1+O2,
 * race PI-1). See README.md beside this file.
 *
 *   CPU0 target: kvm/x86.ts vcpuEnterGuest          CPU1 sender: kvm_x86_ops.deliver_interrupt =
 *   mode = IN_GUEST_MODE        (plain store)         kvm/vmx/posted-intr.ts vmxDeliverInterrupt
 *   smp_mb()                    (kvm-enter-guest-no-mb: none)   test_and_set_bit(v, PIR)   (locked)
 *   vmx_sync_pir_to_irr: ON? -> clear ON, PIR -> vIRR           test_and_set_bit(ON)       (locked = fence)
 *   VM-enter: hw/vmx/cpu.ts vmxVcpuRun processes               mode == IN_GUEST_MODE? -> notification IPI
 *   notifications in guest                                      else -> kvm_vcpu_wake_up
 *
 * Every step is the machine's own code; the buggy variant is the patch `kvm-enter-guest-no-mb`
 * (kvm/x86.ts). Without the barrier the mode store can still sit in CPU0's store buffer while
 * CPU0 reads ON = 0 and CPU1 (after its locked ON update) reads mode = OUTSIDE_GUEST_MODE: both
 * loads miss both stores — a genuine SB outcome of the host CPU. This module holds the topology,
 * the target's guest program (it runs until the senders are done, then records the round and
 * halts), pacing (a spin rendezvous plus a seeded, self-balancing start offset before either
 * side's first access) and the checks.
 */
import { APIC_IRR } from '../../mem/apicdef.js';
import { PCPU, PID, VCPU, planScratch, vecPos, vecWord, type PcpuId, type VcpuId } from '../../mem/layout.js';
import type { Access } from '../../mem/access.js';
import { IN_GUEST_MODE } from '../../kvm/modes.js';
import { FIRST_SYSTEM_VECTOR_WORD, POSTED_INTR_VECTOR } from '../../kvm/kick.js';
import { PATCH_ENTER_GUEST_NO_MB, vcpuEnterGuest } from '../../kvm/x86.js';
import { vmxX86Ops } from '../../kvm/vmx/vmx.js';
import type { GuestAction, GuestProgram, KvmCtx, KvmX86Ops } from '../../kvm/x86-ops.js';
import { piNoStrandedAtEntry, piPostedReachesTarget, type PiEntryRound } from '../../invariants/posted-intr.js';
import type { Violation } from '../../invariants/checks.js';
import { bitmapVectors, peekBitmap } from '../../invariants/snapshot.js';
import type { ScenarioCtx, ScenarioDef, ScenarioParams } from '../define.js';
import { resetVmSlice, scenarioKvmCtx } from '../kvm-actor.js';
import { countDone, rendezvous, spinUntil } from '../pacing.js';

/** The target vCPU and the pCPU it runs on (vcpu->cpu, NDST). */
const TARGET: VcpuId = 0;
const TARGET_PCPU: PcpuId = 0;
/** Vectors the senders post (each sender its own residue class, one vector per round). */
const FIRST_VECTOR = 0x20;
const LAST_VECTOR = 0xef;
/** Guest steps of the target's one VM-entry (it halts long before). */
const GUEST_STEPS = 1 << 20;

function senders(p: ScenarioParams): number {
  return p.vcpus - 1;
}

// `phase` comes last: the per-round reset clears every word before it and keeps it.
function makePlan(n: number) {
  return planScratch({ go: 1, done: 1, posted: n * 16, synced: 8, received: 8, phase: 1 });
}
const plans = new Map<number, ReturnType<typeof makePlan>>();
function plan(p: ScenarioParams): ReturnType<typeof makePlan> {
  let pl = plans.get(p.vcpus);
  if (!pl) plans.set(p.vcpus, (pl = makePlan(senders(p))));
  return pl;
}

/** Bit of POSTED_INTR_VECTOR in a pCPU's host IRR word. */
const NV_BIT = 1 << (POSTED_INTR_VECTOR - FIRST_SYSTEM_VECTOR_WORD);

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
 * random 0..START_JITTER_SPINS. After every round role 0 moves the offset towards the point
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

/** Words of a bitmap kept in consecutive scratch words from `first`. */
const scratchAt = (ctx: ScenarioCtx, first: number) => (i: number) => ctx.L.scratch(first + i);

/**
 * The target's VMX operations: the machine's own, with the round's bookkeeping after the
 * pre-entry sync (what it moved into the still-empty vIRR).
 */
function targetOps(ctx: ScenarioCtx): KvmX86Ops {
  return {
    ...vmxX86Ops,
    syncPirToIrr(k, v) {
      const r = vmxX86Ops.syncPirToIrr(k, v);
      const at = plan(ctx.params).at;
      for (let i = 0; i < 8; i++) k.acc.poke(ctx.L.scratch(at.synced + i), k.acc.peek(k.L.apicBitmapWord(v, APIC_IRR, i)));
      return r;
    },
  };
}

/** This actor's KvmCtx: role r is vCPU r on pCPU r. */
function kvmCtxOf(ctx: ScenarioCtx): KvmCtx {
  return scenarioKvmCtx(ctx, (c) => (c.index === 0 ? targetOps(c) : vmxX86Ops));
}

/** The round's record, taken by the target's guest while it runs (keyed by role 0's context). */
const records = new WeakMap<ScenarioCtx, PiEntryRound>();

/** The vectors the senders posted this round. */
function postedVectors(ctx: ScenarioCtx): number[] {
  const { acc, L, params } = ctx;
  const out: number[] = [];
  for (let s = 0; s < senders(params); s++) {
    const p = acc.peek(L.scratch(plan(params).at.posted + s * 16));
    if (p !== 0) out.push(p - 1);
  }
  return out;
}

/** The descriptor, vIRR and host IRR as they are now, with what the guest took so far. */
function roundRecord(ctx: ScenarioCtx, mode: number): PiEntryRound {
  const { acc, L, params } = ctx;
  const at = plan(params).at;
  const synced = peekBitmap(acc, scratchAt(ctx, at.synced));
  const received = peekBitmap(acc, scratchAt(ctx, at.received));
  const virr = peekBitmap(acc, (i) => L.apicBitmapWord(TARGET, APIC_IRR, i));
  return {
    target: TARGET,
    mode,
    pir: peekBitmap(acc, (i) => L.pid(TARGET, PID.PIR, i)),
    on: (acc.peek(L.pid(TARGET, PID.CONTROL)) & 1) !== 0,
    notificationPending: (acc.peek(L.pcpu(TARGET_PCPU, PCPU.HOST_IRR_SYS)) & NV_BIT) !== 0,
    posted: postedVectors(ctx),
    // What reached the target: still in the vIRR, or already delivered to the guest from it.
    virr: virr.map((w, i) => (w | received[i]!) >>> 0),
    syncedAtEntry: bitmapVectors(synced),
    notified: bitmapVectors(received.map((w, i) => (w & ~synced[i]!) >>> 0)),
  };
}

/**
 * The target's guest: runs until every sender is done (one long guest step), lets the CPU take
 * what arrived meanwhile (a pending notification is processed in non-root mode and its vectors
 * delivered before the next step), then records the round — still in guest mode — and halts.
 */
class TargetGuest implements GuestProgram {
  private waited = false;
  constructor(private readonly ctx: ScenarioCtx) {}
  onInterrupt(vector: number): void {
    const a = this.ctx.L.scratch(plan(this.ctx.params).at.received + vecWord(vector));
    this.ctx.acc.poke(a, this.ctx.acc.peek(a) | (1 << vecPos(vector)));
  }
  step(): GuestAction {
    const { acc, L, params } = this.ctx;
    if (!this.waited) {
      this.waited = true;
      const done = L.scratch(plan(params).at.done);
      const n = senders(params);
      spinUntil(acc, done, 'pisb:guest-run', () => acc.readOnce(done, 'pisb:senders-done-read') === n, () => `${n} sender(s) to finish posting`);
      return { kind: 'run' };
    }
    // The vCPU is in guest mode by construction: this code runs inside it.
    records.set(this.ctx, roundRecord(this.ctx, IN_GUEST_MODE));
    return { kind: 'hlt' };
  }
}

/** The target: one trip through vcpu_enter_guest (role 0, vCPU 0 on CPU 0). */
function targetRound(ctx: ScenarioCtx): void {
  const k = kvmCtxOf(ctx);
  records.delete(ctx);
  rendezvous(ctx, ctx.L.scratch(plan(ctx.params).at.go));
  startOffset(ctx);
  vcpuEnterGuest(k, TARGET, new TargetGuest(ctx), GUEST_STEPS);
}

/**
 * A sender: another vCPU's thread that handled its guest's x2APIC ICR write exit (no IPIv) or an
 * emulated device's MSI; the target's APIC accepted the fixed interrupt (kvm_apic_set_irq, which
 * touches nothing of the race and is left out) and KVM delivers it: kvm_x86_ops.deliver_interrupt.
 */
function senderRound(ctx: ScenarioCtx): void {
  const k = kvmCtxOf(ctx);
  const { acc, L, params } = ctx;
  const at = plan(params).at;
  const s = ctx.index - 1;
  const n = senders(params);
  const span = Math.floor((LAST_VECTOR - FIRST_VECTOR - s) / n) + 1;
  const vector = FIRST_VECTOR + s + n * ctx.prng.below(span);
  acc.poke(L.scratch(at.posted + s * 16), vector + 1);
  rendezvous(ctx, L.scratch(at.go));
  startOffset(ctx);
  // vmx_deliver_interrupt -> vmx_deliver_posted_interrupt -> __vmx_deliver_posted_interrupt.
  k.ops.deliverInterrupt(k, TARGET, vector, false);
  countDone(acc, L.scratch(at.done), 'pisb:sender-done');
}

/**
 * Move the start offset one step (role 0, after the check, before the reset): the target was
 * late if its entry sync picked something up, early if a notification reached it in the guest.
 */
function balancePhase(ctx: ScenarioCtx, rec: PiEntryRound): void {
  const { acc, L, params } = ctx;
  const late = rec.syncedAtEntry.length > 0;
  const notified = rec.notified.length > 0 || rec.notificationPending;
  const addr = L.scratch(plan(params).at.phase);
  const phase = acc.peek(addr) + (late ? -PHASE_STEP : 0) + (notified ? PHASE_STEP : 0);
  acc.poke(addr, Math.max(-PHASE_MAX, Math.min(PHASE_MAX, phase)));
}

/** A fresh VMX VM for every round (vCPU v on pCPU v, outside guest mode); the start offset stays. */
function setup(acc: Access, p: ScenarioParams): void {
  resetVmSlice(acc, 'vmx', p.vcpus, plan(p).at.phase);
}

/** The scenario. */
export const piSbNotification: ScenarioDef = {
  id: 'pi-sb-notification',
  title: "VMX posted interrupts: store buffering between the sender's ON/mode and the target's mode/ON",
  seedFile: '000_12335ea9bf6ce8f5.txt',
  variants: [
    { name: 'buggy', buggy: true, differs: 'vcpu_enter_guest has no full barrier between the mode = IN_GUEST_MODE store and the PID.ON load of sync_pir_to_irr', patches: [PATCH_ENTER_GUEST_NO_MB] },
    { name: 'fixed', buggy: false, differs: '', kernel: 'every kernel we know of (v6.16: the smp_mb() of kvm_vcpu_srcu_read_unlock after the mode store)' },
  ],
  invariants: [
    { name: 'piNoStrandedAtEntry', description: 'a vCPU in guest mode never holds PIR≠0 ∧ ON=1 with no notification pending for its pCPU' },
    { name: 'piPostedReachesTarget', description: 'every posted vector reaches the vIRR (or the guest), by the entry sync or by a notification processed in the guest' },
  ],
  // Window widening off: the race needs nothing but the host CPU's store buffer.
  widen: { probability: 0, maxSpins: 0, points: [] },
  vcpus: { default: 2, min: 2, max: 4 },
  roles: (p) => ['target', ...Array.from({ length: senders(p) }, (_, i) => `sender${i + 1}`)],
  layout: (p) => ({ vcpus: p.vcpus, pcpus: p.vcpus, scratchWords: plan(p).words }),
  init(acc, p) {
    setup(acc, p);
    acc.poke(acc.layout.scratch(plan(p).at.phase), 0);
  },
  round(ctx) {
    if (ctx.index === 0) targetRound(ctx);
    else senderRound(ctx);
  },
  check(ctx): Violation[] {
    // The target records the round from inside the guest; if it never got there (no VM-entry),
    // judge the state it left (outside guest mode).
    const rec = records.get(ctx) ?? roundRecord(ctx, ctx.acc.peek(ctx.L.vcpu(TARGET, VCPU.MODE)));
    return [...piNoStrandedAtEntry(rec), ...piPostedReachesTarget(rec)];
  },
  reset(ctx) {
    const rec = records.get(ctx);
    if (rec) balancePhase(ctx, rec);
    setup(ctx.acc, ctx.params);
  },
};
