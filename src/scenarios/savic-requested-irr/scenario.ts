/**
 * savic-requested-irr — AMD Secure AVIC: RequestedIRR written by a remote CPU races with VMRUN's
 * read-then-clear of RequestedIRR/UpdateIRR. Seed: 003 (RFC v2 cover letter, "Interrupt
 * Injection"; domain notes 7.2, SA-1). See README.md beside this file.
 *
 *   source thread (other pCPU)                   target thread (runs the vCPU)
 *   kvm/svm/sev.ts deliver_interrupt             kvm/svm/sev.ts sev_savic_set_requested_irr
 *   savic-remote-requested-irr (hypothetical):     (before VMRUN, on this thread)
 *     RequestedIRR[i] |= bit (locked)            hw/svm/savic.ts VMRUN: if UpdateIRR:
 *     UpdateIRR = 1                                 r = RequestedIRR[*]          (read)
 *                 ── lands here ──>                 IRR |= r & ALLOWED_IRR
 *                                                   RequestedIRR[*] = 0          (separate clear)
 *   fixed (the RFC): KVM IRR |= bit (locked),       UpdateIRR = 0
 *     KVM_REQ_EVENT, kick — never RequestedIRR
 *
 * The source calls the machine's deliver_interrupt for Secure AVIC, the target runs KVM's
 * inject_irq and the CPU's VMRUN merge; the variants are the patch.
 */
import { savicDeliverInterrupt, savicSetRequestedIrr, PATCH_SAVIC_REMOTE_REQUESTED_IRR } from '../../kvm/svm/sev.js';
import { savicVmrun } from '../../hw/svm/savic.js';
import { savicX86Ops } from '../../kvm/svm/savic.js';
import { APIC_IRR } from '../../mem/apicdef.js';
import { SAVIC_ALLOWED_IRR, VMCB, planScratch, type VcpuId } from '../../mem/layout.js';
import { savicNoDisallowedDelivered, savicNoLostAllowedVector, savicRequestedIrrSingleWriter, type SavicRound } from '../../invariants/savic.js';
import type { Violation } from '../../invariants/checks.js';
import type { ScenarioCtx, ScenarioDef, ScenarioParams } from '../define.js';
import { scenarioKvmCtx } from '../kvm-actor.js';

/** The vCPU whose RequestedIRR is contended. */
const TARGET: VcpuId = 0;
/** Vectors the sources use, and how many each source sends per round. */
const FIRST_VECTOR = 0x20;
const LAST_VECTOR = 0xef;
const SENDS_PER_ROUND = 12;

/** A vector the guest does not allow (it keeps those for its own IPIs). */
function guestDisallows(v: number): boolean {
  return (v & 7) === 7;
}

function sources(p: ScenarioParams): number {
  return Math.max(1, p.vcpus - 1);
}

function plan(p: ScenarioParams) {
  const n = sources(p);
  return planScratch({ srcDone: n * 16, foreign: n * 16, sent: n * 256, delivered: 256 });
}

/** The guest takes every vector in its backing-page IRR (handler + accelerated EOI). */
function guestConsume(ctx: ScenarioCtx, delivered: number): void {
  const { acc, L } = ctx;
  for (let i = 0; i < 8; i++) {
    const irr = L.savicBacking(TARGET, APIC_IRR + 0x10 * i);
    let w = acc.readOnce(irr, 'guest:irr-read');
    if (w === 0) continue;
    acc.writeOnce(irr, 0, 'guest:irr-ack');
    while (w !== 0) {
      const b = 31 - Math.clz32(w);
      w &= ~(1 << b);
      acc.bump(L.scratch(delivered + i * 32 + b));
    }
  }
}

function pending(ctx: ScenarioCtx): boolean {
  const { acc, L } = ctx;
  if (acc.readOnce(L.vmcb(TARGET, VMCB.UPDATE_IRR), 'savic:update-irr-read') !== 0) return true;
  for (let i = 0; i < 8; i++) if (acc.readOnce(L.apicBitmapWord(TARGET, APIC_IRR, i), 'savic:kvm-irr-read') !== 0) return true;
  return false;
}

/** One source's part of a round: deliver SENDS_PER_ROUND of its own vectors to the target. */
function sourceRound(ctx: ScenarioCtx): void {
  const { acc, L, params } = ctx;
  const k = scenarioKvmCtx(ctx, () => savicX86Ops);
  const s = ctx.index - 1;
  const n = sources(params);
  const at = plan(params).at;
  const mine: number[] = [];
  for (let v = FIRST_VECTOR; v <= LAST_VECTOR; v++) if (v % n === s) mine.push(v);
  for (let j = 0; j < SENDS_PER_ROUND && mine.length > 0; j++) {
    const v = mine.splice(ctx.prng.below(mine.length), 1)[0]!;
    acc.bump(L.scratch(at.sent + s * 256 + v));
    // kvm_irq_delivery_to_apic -> the vendor's deliver_interrupt (KVM's IRR, KVM_REQ_EVENT, kick).
    savicDeliverInterrupt(k, TARGET, v);
  }
  // RequestedIRR writes this thread made for another vCPU (the machine counts them).
  acc.bump(L.scratch(at.foreign + s * 16), k.stats.misc.savicRemoteRequestedIrr ?? 0);
  k.stats.misc.savicRemoteRequestedIrr = 0;
  acc.writeOnce(L.scratch(at.srcDone + s * 16), 1, 'savic:source-done');
}

/** The target's part of a round: enter (inject + VMRUN) and run the guest until all is consumed. */
function targetRound(ctx: ScenarioCtx): void {
  const { acc, L, params } = ctx;
  const at = plan(params).at;
  const n = sources(params);
  for (;;) {
    let done = true;
    for (let s = 0; s < n && done; s++) done = acc.readOnce(L.scratch(at.srcDone + s * 16), 'savic:source-done-read') !== 0;
    savicSetRequestedIrr(acc, TARGET);
    savicVmrun(acc, TARGET);
    guestConsume(ctx, at.delivered);
    if (done && !pending(ctx)) return;
  }
}

/** The round's record for the checkers. */
function roundRecord(ctx: ScenarioCtx): SavicRound {
  const { acc, L, params } = ctx;
  const at = plan(params).at;
  const n = sources(params);
  const sent = new Uint32Array(256);
  const delivered = new Uint32Array(256);
  const allowed: number[] = [];
  let foreign = 0;
  for (let s = 0; s < n; s++) {
    for (let v = 0; v < 256; v++) sent[v]! += acc.peek(L.scratch(at.sent + s * 256 + v));
    foreign += acc.peek(L.scratch(at.foreign + s * 16));
  }
  for (let v = 0; v < 256; v++) delivered[v] = acc.peek(L.scratch(at.delivered + v));
  for (let i = 0; i < 8; i++) allowed.push(acc.peek(L.savicBacking(TARGET, SAVIC_ALLOWED_IRR + 0x10 * i)) >>> 0);
  return { target: TARGET, sent, delivered, allowed, foreignWrites: foreign };
}

/** The scenario. */
export const savicRequestedIrr: ScenarioDef = {
  id: 'savic-requested-irr',
  title: 'Secure AVIC: a remote RequestedIRR write races with VMRUN clearing RequestedIRR/UpdateIRR',
  seedFile: '003_7040354a06e62716.txt',
  variants: [
    { name: 'buggy', buggy: true, differs: "deliver_interrupt on the sender's thread ORs the vector into the target's RequestedIRR and sets UpdateIRR (the flow the RFC's cover letter rules out)", patches: [PATCH_SAVIC_REMOTE_REQUESTED_IRR] },
    { name: 'fixed', buggy: false, differs: '', kernel: 'none upstream: the RFC (v1 Feb 2025, v2 Sep 2025) as posted — Secure AVIC KVM support is a proposal' },
  ],
  invariants: [
    { name: 'savicNoLostAllowedVector', description: 'every interrupt sent to an allowed vector reaches the guest' },
    { name: 'savicNoDisallowedDelivered', description: 'no vector outside ALLOWED_IRR reaches the guest' },
    { name: 'savicRequestedIrrSingleWriter', description: 'RequestedIRR/UpdateIRR are written only by the thread that runs the vCPU' },
  ],
  widen: { probability: 0.5, maxSpins: 400, points: ['savic:vmrun-', 'savic:remote-', 'savic:kvm-irr-'] },
  vcpus: { default: 3, min: 2, max: 16 },
  roles: (p) => ['target', ...Array.from({ length: sources(p) }, (_, i) => `source${i}`)],
  layout: (p) => ({ vcpus: p.vcpus, pcpus: p.vcpus, savic: true, scratchWords: plan(p).words }),
  init(acc, p) {
    // The guest allows device vectors and keeps every 8th vector for itself.
    for (let i = 0; i < 8; i++) {
      let allowed = 0;
      for (let b = 0; b < 32; b++) if (!guestDisallows(i * 32 + b)) allowed |= 1 << b;
      acc.writeOnce(acc.layout.savicBacking(TARGET, SAVIC_ALLOWED_IRR + 0x10 * i), allowed, 'savic:init');
    }
    void p;
  },
  round(ctx) {
    if (ctx.index === 0) targetRound(ctx);
    else sourceRound(ctx);
  },
  check(ctx): Violation[] {
    const rec = roundRecord(ctx);
    return [...savicNoLostAllowedVector(rec), ...savicNoDisallowedDelivered(rec), ...savicRequestedIrrSingleWriter(rec)];
  },
  reset(ctx) {
    const { acc, L, params } = ctx;
    const { words } = plan(params);
    for (let i = 0; i < words; i++) acc.poke(L.scratch(i), 0);
  },
};
