/**
 * apicv-deactivate-pir — a posted interrupt races with APICv deactivation (domain notes 2.3, 2.6
 * PI-6, 4.2; historic fix "KVM: x86: check PIR even for vCPUs with disabled APICv", Paolo
 * Bonzini, Nov 2021). See README.md beside this file.
 *
 * An assigned device keeps posting through its IRTE (KVM does not rewrite IRTEs on an inhibit):
 * PIR bit, ON, notification vector to NDST. Meanwhile the VMM sets an inhibit
 * (kvm_set_or_clear_apicv_inhibit: KVM_REQ_APICV_UPDATE to every vCPU, kick, publish) and the
 * target vCPU deactivates APICv at its next entry (kvm_vcpu_update_apicv). From then on a
 * notification is an ordinary external-interrupt VM-exit that leaves ON set; only KVM's PIR sync
 * at entry (vmx_sync_pir_to_irr: PIR -> vIRR, KVM_REQ_EVENT) followed by VM-entry injection gets
 * the vector to the guest.
 *
 *   CPU0 target (vcpu_enter_guest loop)       CPU1 device (IOMMU)         CPU2 vmm
 *                                                                          set BLOCKIRQ: REQ_APICV_UPDATE,
 *   kicked out; APICV_UPDATE: apicv_active=0                                kick, publish
 *   guest runs (no VID, no PI processing)     PIR |= v; ON = 1; NV -> NDST
 *   external-interrupt exit (ON stays 1)
 *   mode = IN; smp_mb
 *   buggy:  if (lapic enabled && apicv_active) sync_pir_to_irr   -> skipped: v stays in PIR
 *   fixed:  if (lapic enabled) sync_pir_to_irr -> vIRR, KVM_REQ_EVENT -> inject v at next entry
 *
 * The entry path is the emulator's own vcpu_enter_guest (src/kvm/x86.ts) over the VMX vendor ops;
 * the buggy variant is the patch `kvm-sync-pir-only-with-apicv` (kvm/x86.ts), which puts the
 * pre-fix apicv_active guard back in front of sync_pir_to_irr where 37c4dbf337c5 removed it (the
 * entry sync and the fastpath re-entry sync).
 */
import { APIC_IRR, APIC_ISR } from '../../mem/apicdef.js';
import { PID, VCPU, VM, planScratch, vecPos, vecWord, type Addr, type Layout, type VcpuId } from '../../mem/layout.js';
import type { Access } from '../../mem/access.js';
import { APICV_INHIBIT_REASON_BLOCKIRQ, kvmSetOrClearApicvInhibit } from '../../kvm/apicv.js';
import { kvmRequestPending } from '../../kvm/requests.js';
import { PATCH_SYNC_PIR_ONLY_WITH_APICV, vcpuEnterGuest } from '../../kvm/x86.js';
import type { KvmCtx, KvmX86Ops } from '../../kvm/x86-ops.js';
import { vmxX86Ops } from '../../kvm/vmx/vmx.js';
import { vtdPostInterrupt } from '../../hw/vmx/posting.js';
import { apicvPostedNotLost, type ApicvPirRound } from '../../invariants/apicv.js';
import type { Violation } from '../../invariants/checks.js';
import { bitmapVectors, peekBitmap } from '../../invariants/snapshot.js';
import { thinkSpins, type ScenarioCtx, type ScenarioDef, type ScenarioParams } from '../define.js';
import { RecordingGuest, resetVmSlice, scenarioKvmCtx } from '../kvm-actor.js';

/** Vectors the device posts to each target per round (distinct within a round). */
const POSTS_PER_VCPU = 4;
/** Vector range of the device's MSIs. */
const FIRST_VECTOR = 0x30;
const LAST_VECTOR = 0xdf;
/** Guest steps per VM-entry before a preemption-timer exit. */
const GUEST_STEPS = 8;
/** KVM_RUN iterations a target keeps going once the device and the VMM are done, at most. */
const SETTLE_ENTRIES = 64;
/** Upper bounds (cpu_relax iterations) of the device's gap before each post and the VMM's delay. */
const DEVICE_GAP_SPINS = 3000;
const VMM_DELAY_SPINS = 8000;

/** Words of a target's block: posted bitmap (device-written), received bitmap and entry counts (vCPU-written). */
const BLK = { POSTED: 0, RECEIVED: 16, ENTRIES: 32, INACTIVE_ENTRIES: 33, WORDS: 48 } as const;

const plans = new Map<number, ReturnType<typeof makePlan>>();
function makePlan(vcpus: number) {
  return planScratch({ deviceDone: 1, vmmDone: 1, vcpus: vcpus * BLK.WORDS });
}
function plan(p: ScenarioParams): ReturnType<typeof makePlan> {
  let pl = plans.get(p.vcpus);
  if (!pl) plans.set(p.vcpus, (pl = makePlan(p.vcpus)));
  return pl;
}

function block(L: Layout, p: ScenarioParams, v: VcpuId, word: number): Addr {
  return L.scratch(plan(p).at.vcpus + v * BLK.WORDS + word);
}

/**
 * The VMX vendor operations of this scenario: VMX's own, with an entry counter at VM-entry (the
 * scenario's bookkeeping; the buggy variant is the patch PATCH_SYNC_PIR_ONLY_WITH_APICV on
 * kvm/x86.ts vcpu_enter_guest).
 */
function scenarioOps(p: ScenarioParams): KvmX86Ops {
  return {
    ...vmxX86Ops,
    vcpuRun(k, v, guest, maxSteps) {
      // Bookkeeping at the VM-entry commit: entries, and those with APICv inactive.
      const { acc } = k;
      acc.bump(block(k.L, p, v, BLK.ENTRIES));
      if (acc.peek(k.L.vcpu(v, VCPU.APICV_ACTIVE)) === 0) acc.bump(block(k.L, p, v, BLK.INACTIVE_ENTRIES));
      return vmxX86Ops.vcpuRun(k, v, guest, maxSteps);
    },
  };
}

/** This actor's KvmCtx (vCPU v on pCPU v; the device and the VMM on no pCPU of the VM). */
function kvmCtxOf(ctx: ScenarioCtx): KvmCtx {
  return scenarioKvmCtx(ctx, (c) => scenarioOps(c.params));
}


/** Word i of a bitmap kept in consecutive scratch words from `first`. */
const scratchWords = (first: Addr) => (i: number) => (first + i) as Addr;



/** A target vCPU: KVM_RUN until the device and the VMM are done and everything posted arrived (or it settled). */
function targetRound(ctx: ScenarioCtx): void {
  const k = kvmCtxOf(ctx);
  const { acc, L, params } = ctx;
  const v = ctx.index;
  const at = plan(params).at;
  const posted = block(L, params, v, BLK.POSTED);
  const received = block(L, params, v, BLK.RECEIVED);
  const guest = new RecordingGuest(acc, received);
  let settle = 0;
  for (;;) {
    vcpuEnterGuest(k, v, guest, GUEST_STEPS);
    if (acc.peek(L.scratch(at.deviceDone)) === 0 || acc.peek(L.scratch(at.vmmDone)) === 0) continue;
    if (++settle >= SETTLE_ENTRIES) break;
    if (kvmRequestPending(acc, v)) continue;
    let all = true;
    for (let i = 0; i < 8 && all; i++) {
      const p = acc.peek((posted + i) as Addr);
      all = (acc.peek((received + i) as Addr) & p) === p;
    }
    if (all) break;
  }
}

/** The device: POSTS_PER_VCPU distinct vectors to every target, at seeded random times. */
function deviceRound(ctx: ScenarioCtx): void {
  const k = kvmCtxOf(ctx);
  const { acc, L, params } = ctx;
  const n = params.vcpus;
  for (let i = 0; i < POSTS_PER_VCPU * n; i++) {
    thinkSpins(ctx, 'device:gap', DEVICE_GAP_SPINS);
    const v = i % n;
    const posted = block(L, params, v, BLK.POSTED);
    let vector: number;
    do vector = FIRST_VECTOR + ctx.prng.below(LAST_VECTOR - FIRST_VECTOR + 1);
    while ((acc.peek((posted + vecWord(vector)) as Addr) >>> vecPos(vector)) & 1);
    const w = (posted + vecWord(vector)) as Addr;
    acc.poke(w, acc.peek(w) | (1 << vecPos(vector)));
    vtdPostInterrupt(k, v, vector);
  }
  acc.poke(L.scratch(plan(params).at.deviceDone), 1);
}

/** The VMM (a debugger thread): KVM_SET_GUEST_DEBUG with BLOCKIRQ at a seeded random time. */
function vmmRound(ctx: ScenarioCtx): void {
  const k = kvmCtxOf(ctx);
  thinkSpins(ctx, 'vmm:delay', VMM_DELAY_SPINS);
  // kvm_arch_vcpu_guestdbg_update_apicv_inhibit -> kvm_set_or_clear_apicv_inhibit(BLOCKIRQ, true)
  kvmSetOrClearApicvInhibit(k, APICV_INHIBIT_REASON_BLOCKIRQ, true);
  ctx.acc.poke(ctx.L.scratch(plan(ctx.params).at.vmmDone), 1);
}

/** A fresh VMX VM for every round: APICv active, no inhibit, target v loaded on pCPU v. */
function setup(acc: Access, p: ScenarioParams): void {
  resetVmSlice(acc, 'vmx', p.vcpus, plan(p).words);
}

/** The round's records for the checker (role 0, after the round). */
function roundRecords(ctx: ScenarioCtx): ApicvPirRound[] {
  const { acc, L, params } = ctx;
  const out: ApicvPirRound[] = [];
  for (let v = 0; v < params.vcpus; v++) {
    out.push({
      vcpu: v,
      apicvActive: acc.peek(L.vcpu(v, VCPU.APICV_ACTIVE)) !== 0,
      inhibitReasons: acc.peek(L.vm(VM.APICV_INHIBIT_REASONS)),
      posted: bitmapVectors(peekBitmap(acc, scratchWords(block(L, params, v, BLK.POSTED)))),
      received: bitmapVectors(peekBitmap(acc, scratchWords(block(L, params, v, BLK.RECEIVED)))),
      pir: peekBitmap(acc, (i) => L.pid(v, PID.PIR, i)),
      on: (acc.peek(L.pid(v, PID.CONTROL)) & 1) !== 0,
      irr: peekBitmap(acc, (i) => L.apicBitmapWord(v, APIC_IRR, i)),
      isr: peekBitmap(acc, (i) => L.apicBitmapWord(v, APIC_ISR, i)),
      injected: acc.peek(L.vcpu(v, VCPU.INJECTED)),
      inactiveEntries: acc.peek(block(L, params, v, BLK.INACTIVE_ENTRIES)),
    });
  }
  return out;
}

/** The scenario. */
export const apicvDeactivatePir: ScenarioDef = {
  id: 'apicv-deactivate-pir',
  title: 'A device keeps posting interrupts while an inhibit deactivates APICv: the PIR must still be synced at entry',
  seedFile: '000_12335ea9bf6ce8f5.txt',
  variants: [
    { name: 'buggy', buggy: true, differs: 'vcpu_enter_guest syncs the PIR only while APICv is active (pre-fix `if (kvm_lapic_enabled(vcpu) && kvm_vcpu_apicv_active(vcpu)) sync_pir_to_irr`)', patches: [PATCH_SYNC_PIR_ONLY_WITH_APICV] },
    { name: 'fixed', buggy: false, differs: '', kernel: 'v5.16 and later' },
  ],
  invariants: [{ name: 'apicvPostedNotLost', description: 'at the end of a round, APICv still inhibited, every vector the device posted reached the guest (a missing one is reported where it sits, e.g. PIR with ON=1)' }],
  widen: { probability: 0.3, maxSpins: 400, points: ['apicv:', 'pi:pir-', 'pi:on-', 'pi:hw-', 'vcpu:mode-', 'vmx:inject'] },
  vcpus: { default: 1, min: 1, max: 4 },
  roles: (p) => [...Array.from({ length: p.vcpus }, (_, i) => `vcpu${i}`), 'device', 'vmm'],
  layout: (p) => ({ vcpus: p.vcpus, pcpus: p.vcpus, scratchWords: plan(p).words }),
  init(acc, p) {
    setup(acc, p);
  },
  round(ctx) {
    if (ctx.index < ctx.params.vcpus) targetRound(ctx);
    else if (ctx.index === ctx.params.vcpus) deviceRound(ctx);
    else vmmRound(ctx);
  },
  check(ctx): Violation[] {
    return apicvPostedNotLost(roundRecords(ctx));
  },
  reset(ctx) {
    setup(ctx.acc, ctx.params);
  },
};
