/**
 * apic-memslot-inhibit — AVIC hybrid mode: a vCPU that enables x2APIC deletes the APIC-access
 * memslot (kvm_inhibit_apic_access_page) while other vCPUs resolve the APIC GFN through the
 * SRCU-published memslots, and a VMM thread hot-adds vCPUs (kvm_alloc_apic_access_page) and
 * plugs RAM (a memslot update with synchronize_srcu under slots_lock). Seed 001: Maxim
 * Levitsky's review of "[PATCH v4 11/32] KVM: x86: Inhibit APIC memslot if x2APIC and AVIC are
 * enabled"; domain notes 3.4, 5.1-5.4 (MS-1..MS-4). README.md beside this file has the actors,
 * the interleavings and the measured results.
 *
 * The machine's kvm_inhibit_apic_access_page (src/kvm/apic-access-memslot.ts; fixed = the seed's
 * order; each buggy variant is one patch there, named in the variant):
 *   1  enabled == false → return                  (lockless fast check)
 *   2  srcu_read_unlock(kvm->srcu)                 buggy-srcu-held: skipped (and its relock in 5)
 *   3  mutex_lock(slots_lock)
 *   4  if enabled:  a  delete the slot: build gen', publish, synchronize_srcu, free gen
 *                   b  enabled = false              buggy-flag-order: before 4a
 *                   c  inhibited = true             buggy-no-inhibited: missing
 *   5  mutex_unlock(slots_lock); srcu_read_lock(kvm->srcu)
 *
 *   buggy-srcu-held (MS-2; MS-1 when vcpu0 itself wins slots_lock and synchronizes):
 *     CPU0 vcpu0 (x2APIC on)              | CPU1 vmm (KVM_SET_USER_MEMORY_REGION)
 *     kvm->srcu read lock held            | mutex_lock(slots_lock); publish gen'
 *     mutex_lock(slots_lock) → waits vmm  | synchronize_srcu → waits for vcpu0's reader
 *
 *   buggy-flag-order (MS-3):
 *     CPU0 vcpu0 (x2APIC on)              | CPU1 vcpu1 (x2APIC on)
 *     mutex_lock(slots_lock)              |
 *     enabled = false                     |
 *     build gen' (no APIC slot) ...       | enabled == false → return (fast check)
 *                                         | g = memslots; slot[APIC] present → APIC page reached
 *     publish gen'; synchronize_srcu      |
 *
 *   buggy-no-inhibited (MS-4):
 *     CPU0 vcpu0 (x2APIC on)              | CPU1 vmm (KVM_CREATE_VCPU)
 *     delete slot; enabled = false        |
 *     (inhibited stays false)             |
 *     mutex_unlock(slots_lock)            | mutex_lock(slots_lock)
 *                                         | !enabled && !inhibited → create the slot again
 *
 * Invariants: noDeadlock (the runner, from the deadline machinery: a stuck run is reported as its
 * wait-for cycle, e.g. the MS-2 ABBA "vcpu0 → vmm → vcpu0"), memslotInhibitSticky and
 * memslotDisabledImpliesGone (src/invariants/memslot.ts). Window widening is the same for all
 * variants.
 */
import { VCPU, planScratch, type VcpuId } from '../../mem/layout.js';
import { MSR_IA32_APICBASE_ENABLE, APIC_DEFAULT_PHYS_BASE, X2APIC_ENABLE } from '../../mem/apicdef.js';
import { actorLabel, srcuReadLock, srcuReadUnlock, wordAt } from '../../sync/index.js';
import { apicX2apicMode } from '../../apic/index.js';
import { KVM_REQ_APICV_UPDATE, kvmCheckRequest } from '../../kvm/requests.js';
import { kvmLapicSetBase } from '../../kvm/lapic-ioctl.js';
import {
  kvmAllocApicAccessPage,
  kvmInhibitApicAccessPage,
  kvmLookupApicGfn,
  kvmMemslots,
  kvmMemslotsInit,
  kvmSetUserMemoryRegion,
  peekApicAccessMemslot,
  readMemslotLog,
  PATCH_APIC_ACCESS_FLAG_FIRST,
  PATCH_APIC_ACCESS_NO_INHIBITED,
  PATCH_APIC_ACCESS_SRCU_HELD,
} from '../../kvm/apic-access-memslot.js';
import { memslotDisabledImpliesGone, memslotInhibitSticky, type MemslotLookup, type MemslotRound } from '../../invariants/memslot.js';
import type { Violation } from '../../invariants/checks.js';
import { thinkSpins, type ScenarioCtx, type ScenarioDef, type ScenarioParams } from '../define.js';
import { scenarioKvmCtx } from '../kvm-actor.js';
import { svmX86Ops } from '../../kvm/svm/svm.js';

/** Guest RAM slots present at boot, and the one the VMM plugs during a round. */
const BOOT_RAM_SLOTS = [0, 1, 2] as const;
const HOTPLUG_RAM_SLOT = 3;

/** KVM_RUN loop iterations of one vCPU per round; the guest enables x2APIC in one of the first SWITCH_STEPS. */
const STEPS = 6;
const SWITCH_STEPS = 3;
/** Upper bound of a vCPU's delay before it enters KVM_RUN in a round, in cpu_relax iterations. */
const VCPU_START_SPINS = 2000;
/** Upper bound of a guest slice, in cpu_relax iterations. */
const GUEST_SPINS = 48;
/** Upper bound of the VMM's think time before each of its ioctls, in cpu_relax iterations. */
const VMM_THINK_SPINS = 1500;
/** Probability that the VMM also updates an ordinary memslot in a round. */
const VMM_RAM_UPDATE_P = 0.5;
/** Words per vCPU of the lookup record (the scenario's observation): a count and one word per step. */
const LOOKUP_STRIDE = 16;

/** Encoding of one lookup record word. */
const LK = { VALID: 1, X2APIC: 2, SAW_DISABLED: 4, REACHED: 8, STALE: 16, GEN_SHIFT: 8, STEP_SHIFT: 12 } as const;

const plans = new Map<number, ReturnType<typeof makePlan>>();
function makePlan(vcpus: number) {
  return planScratch({ lookups: vcpus * LOOKUP_STRIDE });
}
function plan(p: ScenarioParams): ReturnType<typeof makePlan> {
  let pl = plans.get(p.vcpus);
  if (!pl) plans.set(p.vcpus, (pl = makePlan(p.vcpus)));
  return pl;
}

/**
 * One vCPU's round: a slice of KVM_RUN. Host side under kvm->srcu, guest side without it. In
 * every guest slice the guest touches 0xFEE00000 (xAPIC MMIO); what it reaches is what the
 * memslots the vCPU sees at entry map there (the NPT fault is resolved through them, under
 * kvm->srcu). At one exit the guest has written IA32_APIC_BASE.EXTD (x2APIC on), which KVM turns
 * into KVM_REQ_APICV_UPDATE (kvm_lapic_set_base); at the next entry kvm_vcpu_update_apicv calls
 * kvm_inhibit_apic_access_page (hybrid AVIC: x2APIC without x2AVIC).
 */
function vcpuRound(ctx: ScenarioCtx): void {
  const { acc, L, params } = ctx;
  const k = scenarioKvmCtx(ctx, () => svmX86Ops);
  const m = kvmMemslots(L);
  const v: VcpuId = ctx.index;
  const switchAt = ctx.prng.below(SWITCH_STEPS);
  const rec = L.scratch(plan(params).at.lookups + v * LOOKUP_STRIDE);
  let sawDisabled = false;
  thinkSpins(ctx, 'vcpu:ioctl-run', VCPU_START_SPINS); // the vCPU thread enters KVM_RUN at a random time
  let idx = srcuReadLock(acc, m.srcu); // kvm_arch_vcpu_ioctl_run: kvm_vcpu_srcu_read_lock
  for (let step = 0; step < STEPS; step++) {
    // vcpu_enter_guest: KVM_REQ_APICV_UPDATE -> kvm_vcpu_update_apicv: x2APIC under hybrid AVIC
    // (allow_apicv_in_x2apic_without_x2apic_virtualization) -> kvm_inhibit_apic_access_page.
    if (kvmCheckRequest(acc, v, KVM_REQ_APICV_UPDATE) && apicX2apicMode(acc, v)) {
      idx = kvmInhibitApicAccessPage(acc, k.patches, idx);
      sawDisabled = true; // it returns only after reading or writing enabled == false
    }
    const x2apic = apicX2apicMode(acc, v);
    const l = kvmLookupApicGfn(acc, m);
    const word = LK.VALID | (x2apic ? LK.X2APIC : 0) | (sawDisabled ? LK.SAW_DISABLED : 0) | (l.present ? LK.REACHED : 0) | (l.stale ? LK.STALE : 0) | (l.gen << LK.GEN_SHIFT) | (step << LK.STEP_SHIFT);
    acc.poke(wordAt(rec, 1 + step), word);
    srcuReadUnlock(acc, m.srcu, idx); // in guest mode without kvm->srcu
    thinkSpins(ctx, 'guest:run', GUEST_SPINS);
    idx = srcuReadLock(acc, m.srcu); // VM-exit: back under kvm->srcu
    if (step === switchAt) kvmLapicSetBase(k, v, APIC_DEFAULT_PHYS_BASE | MSR_IA32_APICBASE_ENABLE | X2APIC_ENABLE); // WRMSR(IA32_APIC_BASE) exit
  }
  srcuReadUnlock(acc, m.srcu, idx);
  acc.poke(rec, STEPS);
}

/**
 * The VMM's round: hot-add a vCPU (KVM_CREATE_VCPU) and, in some rounds, plug a RAM slot
 * (KVM_SET_USER_MEMORY_REGION, a memslot update with synchronize_srcu under slots_lock), in
 * random order and at random times.
 */
function vmmRound(ctx: ScenarioCtx): void {
  const { acc, prng } = ctx;
  const think = () => thinkSpins(ctx, 'vmm:think', VMM_THINK_SPINS);
  const ram = prng.next() < VMM_RAM_UPDATE_P;
  const ramFirst = prng.next() < 0.5;
  think();
  if (ram && ramFirst) {
    kvmSetUserMemoryRegion(acc, HOTPLUG_RAM_SLOT, true);
    think();
  }
  // KVM_CREATE_VCPU → kvm_arch_vcpu_create → svm_vcpu_create → avic_init_vcpu →
  // avic_init_backing_page → kvm_alloc_apic_access_page
  kvmAllocApicAccessPage(acc);
  if (ram && !ramFirst) {
    think();
    kvmSetUserMemoryRegion(acc, HOTPLUG_RAM_SLOT, true);
  }
}

/** Write the state every round starts from: a running VM in xAPIC mode with the slot present. */
function writeInitialState(acc: Parameters<ScenarioDef['init']>[0], p: ScenarioParams): void {
  const L = acc.layout;
  const { words } = plan(p);
  for (let i = 0; i < words; i++) acc.poke(L.scratch(i), 0);
  kvmMemslotsInit(acc, BOOT_RAM_SLOTS, true);
  for (let v = 0; v < p.vcpus; v++) {
    acc.poke(L.vcpu(v, VCPU.APIC_BASE), APIC_DEFAULT_PHYS_BASE | MSR_IA32_APICBASE_ENABLE);
    acc.poke(L.vcpu(v, VCPU.REQUESTS), 0);
  }
}

/** The round's record for the checkers (role 0, after the round). */
function roundRecord(ctx: ScenarioCtx): MemslotRound {
  const { acc, L, params } = ctx;
  const at = plan(params).at;
  const lookups: MemslotLookup[] = [];
  for (let v = 0; v < params.vcpus; v++) {
    const rec = L.scratch(at.lookups + v * LOOKUP_STRIDE);
    const n = acc.peek(rec);
    for (let i = 0; i < n; i++) {
      const w = acc.peek(wordAt(rec, 1 + i));
      lookups.push({
        vcpu: v,
        step: (w >>> LK.STEP_SHIFT) & 0xf,
        gen: (w >>> LK.GEN_SHIFT) & 0xf,
        x2apic: (w & LK.X2APIC) !== 0,
        sawDisabled: (w & LK.SAW_DISABLED) !== 0,
        reachedApicPage: (w & LK.REACHED) !== 0,
        stale: (w & LK.STALE) !== 0,
      });
    }
  }
  const updates = readMemslotLog(acc).map((u) => ({ op: u.op, by: actorLabel(L, u.actor), inhibit: u.inhibit }));
  return { lookups, updates, final: peekApicAccessMemslot(acc) };
}

/** The scenario. */
export const apicMemslotInhibit: ScenarioDef = {
  id: 'apic-memslot-inhibit',
  title: 'AVIC hybrid mode: x2APIC deletes the APIC-access memslot under SRCU while vCPUs use it and the VMM hot-adds vCPUs',
  seedFile: '001_a8da36bbce728554.txt',
  variants: [
    { name: 'buggy-srcu-held', buggy: true, differs: "kvm_inhibit_apic_access_page keeps the vCPU's kvm->srcu read lock while it takes slots_lock and synchronizes (step 2 skipped)", patches: [PATCH_APIC_ACCESS_SRCU_HELD] },
    { name: 'buggy-flag-order', buggy: true, differs: 'apic_access_memslot_enabled is cleared before the memslot is deleted (step 4b before 4a)', patches: [PATCH_APIC_ACCESS_FLAG_FIRST] },
    { name: 'buggy-no-inhibited', buggy: true, differs: 'apic_access_memslot_inhibited is never set (step 4c missing)', patches: [PATCH_APIC_ACCESS_NO_INHIBITED] },
    { name: 'fixed', buggy: false, differs: '', kernel: 'the order of [PATCH v4 11/32] (seed 001), as merged upstream' },
  ],
  invariants: [
    { name: 'noDeadlock', description: 'every actor leaves every wait; a stuck run is reported as its wait-for cycle (MS-1: synchronize_srcu inside its own read section; MS-2: the ABBA vCPU holds kvm->srcu and waits for slots_lock, VMM holds slots_lock and waits in synchronize_srcu for that reader)' },
    { name: 'memslotInhibitSticky', description: 'once kvm_inhibit_apic_access_page deleted the APIC-access memslot, nothing re-creates it' },
    { name: 'memslotDisabledImpliesGone', description: 'apic_access_memslot_enabled == false implies the APIC-access slot is absent from every memslots array a reader can still see' },
  ],
  widen: { probability: 0.3, maxSpins: 1500, points: ['memslot:', 'apic-access:'] },
  vcpus: { default: 3, min: 2, max: 8 },
  roles: (p) => [...Array.from({ length: p.vcpus }, (_, i) => `vcpu${i}`), 'vmm'],
  layout: (p) => ({ vcpus: p.vcpus, pcpus: 1, scratchWords: plan(p).words }),
  init(acc, p) {
    writeInitialState(acc, p);
  },
  round(ctx) {
    if (ctx.index < ctx.params.vcpus) vcpuRound(ctx);
    else vmmRound(ctx);
  },
  check(ctx): Violation[] {
    const rec = roundRecord(ctx);
    return [...memslotInhibitSticky(rec), ...memslotDisabledImpliesGone(rec)];
  },
  reset(ctx) {
    writeInitialState(ctx.acc, ctx.params);
  },
};
