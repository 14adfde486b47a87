/**
 * apic-memslot-inhibit — AVIC hybrid mode: a vCPU that enables x2APIC deletes the APIC-access
 * memslot (kvm_inhibit_apic_access_page) while other vCPUs resolve the APIC GFN through the
 * SRCU-published memslots, and a VMM thread hot-adds vCPUs (kvm_alloc_apic_access_page) and
 * plugs RAM (a memslot update with synchronize_srcu under slots_lock). Seed 001: Maxim
 * Levitsky's review of "[PATCH v4 11/32] KVM: x86: Inhibit APIC memslot if x2APIC and AVIC are
 * enabled"; domain notes 3.4, 5.1-5.4 (MS-1..MS-4). README.md beside this file has the actors,
 * the interleavings and the measured results.
 *
 * kvm_inhibit_apic_access_page (fixed = the seed's order; each buggy variant changes one step):
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
 * Invariants: noDeadlock (the runner, from the deadline machinery), memslotInhibitSticky and
 * memslotDisabledImpliesGone (src/invariants/memslot.ts). Window widening is the same for all
 * variants.
 */
import { VCPU, VM, planScratch, type Addr, type Layout, type VcpuId } from '../../mem/layout.js';
import type { Access } from '../../mem/access.js';
import { MSR_IA32_APICBASE_ENABLE, APIC_DEFAULT_PHYS_BASE, X2APIC_ENABLE } from '../../mem/apicdef.js';
import { kvmSrcu, mutexLock, mutexUnlock, srcuReadLock, srcuReadUnlock, synchronizeSrcu, wordAt, type SrcuStruct } from '../../sync/index.js';
import { KVM_REQ_APICV_UPDATE, kvmCheckRequest, kvmMakeRequest } from '../../kvm/requests.js';
import { memslotDisabledImpliesGone, memslotInhibitSticky, type MemslotLookup, type MemslotOp, type MemslotRound, type MemslotUpdate } from '../../invariants/memslot.js';
import type { Violation } from '../../invariants/checks.js';
import { EmuError } from '../../errors.js';
import { thinkSpins, type ScenarioCtx, type ScenarioDef, type ScenarioParams } from '../define.js';

/** Slots of one memslots array; the last one stands for APIC_ACCESS_PAGE_PRIVATE_MEMSLOT. */
const NR_SLOTS = 14;
/** Index of the APIC-access slot (GFN 0xFEE00) in a memslots array. */
const APIC_SLOT = NR_SLOTS - 1;
/** Guest RAM slots present at boot, and the one the VMM plugs during a round. */
const BOOT_RAM_SLOTS = [0, 1, 2] as const;
const HOTPLUG_RAM_SLOT = 3;

/**
 * Words of one memslots array generation: state, free count, one presence word per slot.
 * @kvm include/linux/kvm_host.h struct kvm_memslots (generation, the slot set)
 */
export const MEMSLOTS_GEN = { STATE: 0, SEQ: 1, SLOTS: 2 } as const;
/** Words a generation occupies (16: one 64-byte line). */
const GEN_WORDS = MEMSLOTS_GEN.SLOTS + NR_SLOTS;
/** {@link MEMSLOTS_GEN.STATE} values: freed (poisoned) or live (published or being used). */
const GEN_FREE = 0;
const GEN_LIVE = 1;

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
/** Update log capacity per round: a round logs at most one delete per vCPU, one create and one RAM update (≤ 10). */
const MAX_LOG = 31;
/** Words per vCPU of the lookup record: a count and one word per step (one line). */
const LOOKUP_STRIDE = 16;

/** Encoding of one lookup record word. */
const LK = { VALID: 1, X2APIC: 2, SAW_DISABLED: 4, REACHED: 8, STALE: 16, GEN_SHIFT: 8, STEP_SHIFT: 12 } as const;
/** Encoding of one update-log word: op in bits 1:0, inhibit in bit 2, writer role from bit 8. */
const LOG_OPS: readonly MemslotOp[] = ['apic-delete', 'apic-create', 'ram'];
const LOG_INHIBIT = 4;

const plans = new Map<number, ReturnType<typeof makePlan>>();
function makePlan(vcpus: number) {
  return planScratch({ enabled: 1, inhibited: 1, memslots: 1, gen0: GEN_WORDS, gen1: GEN_WORDS, log: 1 + MAX_LOG, lookups: vcpus * LOOKUP_STRIDE });
}
function plan(p: ScenarioParams): ReturnType<typeof makePlan> {
  let pl = plans.get(p.vcpus);
  if (!pl) plans.set(p.vcpus, (pl = makePlan(p.vcpus)));
  return pl;
}

/**
 * Where the modelled VM-wide state lives in machine memory.
 * @kvm arch/x86/include/asm/kvm_host.h struct kvm_arch (apic_access_memslot_enabled/_inhibited) + struct kvm (memslots, slots_lock, srcu)
 */
export interface ApicMemslotVm {
  /** kvm->arch.apic_access_memslot_enabled. */
  readonly enabled: Addr;
  /** kvm->arch.apic_access_memslot_inhibited. */
  readonly inhibited: Addr;
  /** kvm->memslots[0]: index (0 or 1) of the published generation. */
  readonly memslots: Addr;
  /** The two generations ({@link MEMSLOTS_GEN} words each). */
  readonly gen: readonly [Addr, Addr];
  /** kvm->slots_lock. */
  readonly slotsLock: Addr;
  /** kvm->srcu. */
  readonly srcu: SrcuStruct;
  /** Update log (emulator bookkeeping for the checkers): count, then one word per update. */
  readonly log: Addr;
}

/**
 * The VM-wide state of this scenario for a machine laid out with its `layout(p)`.
 * @emulator
 */
export function apicMemslotVm(L: Layout, p: ScenarioParams): ApicMemslotVm {
  const at = plan(p).at;
  return {
    enabled: L.scratch(at.enabled),
    inhibited: L.scratch(at.inhibited),
    memslots: L.scratch(at.memslots),
    gen: [L.scratch(at.gen0), L.scratch(at.gen1)],
    slotsLock: L.vm(VM.SLOTS_LOCK),
    srcu: kvmSrcu(L),
    log: L.scratch(at.log),
  };
}

const SLOTS_LOCK = 'slots_lock';

/** Append one update to the log (bookkeeping, under slots_lock: the log is in update order). */
function logUpdate(acc: Access, vm: ApicMemslotVm, op: MemslotOp, inhibit: boolean, role: number): void {
  const n = acc.peek(vm.log);
  if (n >= MAX_LOG) throw new EmuError('EMU_ERR_INTERNAL', `${acc.name}: memslot update log full (${MAX_LOG} updates in one round)`, { actor: acc.name });
  acc.poke(wordAt(vm.log, 1 + n), LOG_OPS.indexOf(op) | (inhibit ? LOG_INHIBIT : 0) | (role << 8));
  acc.poke(vm.log, n + 1);
}

/**
 * Change one slot of the memslots (caller holds slots_lock): build the inactive generation as a
 * copy of the published one with the change applied, publish it, wait for a grace period of
 * kvm->srcu, then free (poison) the old generation.
 * @kvm virt/kvm/kvm_main.c kvm_set_memslot (kvm_swap_active_memslots: rcu_assign_pointer + synchronize_srcu_expedited)
 */
export function kvmSetMemslot(acc: Access, vm: ApicMemslotVm, slot: number, present: boolean): void {
  const cur = acc.readOnce(vm.memslots, 'memslot:active-read') & 1;
  const from = vm.gen[cur as 0 | 1];
  const to = vm.gen[(1 - cur) as 0 | 1];
  for (let k = 0; k < NR_SLOTS; k++) {
    const v = k === slot ? (present ? 1 : 0) : acc.readOnce(wordAt(from, MEMSLOTS_GEN.SLOTS + k), 'memslot:copy-read');
    acc.writeOnce(wordAt(to, MEMSLOTS_GEN.SLOTS + k), v, 'memslot:copy-write');
  }
  acc.writeOnce(wordAt(to, MEMSLOTS_GEN.STATE), GEN_LIVE, 'memslot:build-done');
  acc.storeRelease(vm.memslots, 1 - cur, 'memslot:publish');
  synchronizeSrcu(acc, vm.srcu);
  acc.writeOnce(wordAt(from, MEMSLOTS_GEN.STATE), GEN_FREE, 'memslot:free');
  acc.writeOnce(wordAt(from, MEMSLOTS_GEN.SEQ), acc.readOnce(wordAt(from, MEMSLOTS_GEN.SEQ), 'memslot:free') + 1, 'memslot:free');
}

/** What one lookup of the APIC-access GFN saw. */
export interface ApicGfnLookup {
  /** Generation the memslots pointer named. */
  gen: number;
  /** The APIC-access slot is in it (the access reaches the APIC page). */
  present: boolean;
  /** The generation was freed or rebuilt while the lookup used it. */
  stale: boolean;
}

/**
 * Resolve the APIC-access GFN through the memslots published now (caller is inside kvm->srcu):
 * dereference the pointer, look the slot up, and notice if the array was freed meanwhile.
 * @kvm virt/kvm/kvm_main.c kvm_vcpu_gfn_to_memslot (srcu_dereference(kvm->memslots), search_memslots) from kvm_faultin_pfn
 */
export function kvmLookupApicGfn(acc: Access, vm: ApicMemslotVm): ApicGfnLookup {
  const g = acc.loadAcquire(vm.memslots, 'memslot:deref') & 1;
  const base = vm.gen[g as 0 | 1];
  const seq0 = acc.readOnce(wordAt(base, MEMSLOTS_GEN.SEQ), 'memslot:gen-seq');
  const st0 = acc.readOnce(wordAt(base, MEMSLOTS_GEN.STATE), 'memslot:gen-state');
  const present = acc.readOnce(wordAt(base, MEMSLOTS_GEN.SLOTS + APIC_SLOT), 'memslot:lookup-apic-gfn') !== 0;
  const st1 = acc.readOnce(wordAt(base, MEMSLOTS_GEN.STATE), 'memslot:gen-state');
  const seq1 = acc.readOnce(wordAt(base, MEMSLOTS_GEN.SEQ), 'memslot:gen-seq');
  return { gen: g, present, stale: st0 !== GEN_LIVE || st1 !== GEN_LIVE || seq0 !== seq1 };
}

/**
 * Delete the APIC-access memslot because this vCPU enabled x2APIC under hybrid AVIC. `idx` is
 * the vCPU's kvm->srcu read-lock index; returns its index afterwards. On return the vCPU has
 * read (fast path or re-check) or written apic_access_memslot_enabled == false. `variant`
 * selects the one deviating step of a buggy variant; `role` names the caller in the update log.
 * @kvm arch/x86/kvm/lapic.c kvm_inhibit_apic_access_page
 */
export function kvmInhibitApicAccessPage(acc: Access, vm: ApicMemslotVm, idx: number, variant: string, role: number): number {
  if (acc.readOnce(vm.enabled, 'apic-access:enabled-check') === 0) return idx;
  // BUG (deliberate, buggy-srcu-held): step 2 is skipped — the vCPU keeps its kvm->srcu read
  // lock while it takes slots_lock and synchronize_srcu runs under it (MS-1 / MS-2).
  const dropSrcu = variant !== 'buggy-srcu-held';
  if (dropSrcu) srcuReadUnlock(acc, vm.srcu, idx);
  mutexLock(acc, vm.slotsLock, SLOTS_LOCK);
  if (acc.readOnce(vm.enabled, 'apic-access:enabled-recheck') !== 0) {
    // BUG (deliberate, buggy-flag-order): step 4b runs before 4a — "enabled" is cleared while
    // the APIC-access slot is still in the published memslots (MS-3).
    const clearFirst = variant === 'buggy-flag-order';
    if (clearFirst) acc.writeOnce(vm.enabled, 0, 'apic-access:enabled-clear');
    kvmSetMemslot(acc, vm, APIC_SLOT, false); // __x86_set_memory_region(kvm, APIC_ACCESS_PAGE_PRIVATE_MEMSLOT, 0, 0)
    logUpdate(acc, vm, 'apic-delete', true, role);
    if (!clearFirst) acc.writeOnce(vm.enabled, 0, 'apic-access:enabled-clear');
    // BUG (deliberate, buggy-no-inhibited): step 4c is missing — no sticky "inhibited" flag,
    // so a later kvm_alloc_apic_access_page re-creates the slot (MS-4).
    if (variant !== 'buggy-no-inhibited') acc.writeOnce(vm.inhibited, 1, 'apic-access:inhibited-set');
  }
  mutexUnlock(acc, vm.slotsLock, SLOTS_LOCK);
  return dropSrcu ? srcuReadLock(acc, vm.srcu) : idx;
}

/**
 * Create the APIC-access memslot at vCPU creation unless it exists or is inhibited.
 * @kvm arch/x86/kvm/lapic.c kvm_alloc_apic_access_page
 */
export function kvmAllocApicAccessPage(acc: Access, vm: ApicMemslotVm, role: number): void {
  mutexLock(acc, vm.slotsLock, SLOTS_LOCK);
  const enabled = acc.readOnce(vm.enabled, 'apic-access:alloc-enabled-read') !== 0;
  const inhibited = acc.readOnce(vm.inhibited, 'apic-access:alloc-inhibited-read') !== 0;
  if (!enabled && !inhibited) {
    kvmSetMemslot(acc, vm, APIC_SLOT, true); // __x86_set_memory_region(kvm, APIC_ACCESS_PAGE_PRIVATE_MEMSLOT, APIC_DEFAULT_PHYS_BASE, PAGE_SIZE)
    logUpdate(acc, vm, 'apic-create', false, role);
    acc.writeOnce(vm.enabled, 1, 'apic-access:enabled-set');
  }
  mutexUnlock(acc, vm.slotsLock, SLOTS_LOCK);
}

/**
 * KVM_SET_USER_MEMORY_REGION on an ordinary RAM slot: create (plug) or delete (unplug) it.
 * @kvm virt/kvm/kvm_main.c kvm_set_memory_region (mutex_lock(&kvm->slots_lock) around __kvm_set_memory_region)
 */
export function kvmSetUserMemoryRegion(acc: Access, vm: ApicMemslotVm, slot: number, present: boolean, role: number): void {
  mutexLock(acc, vm.slotsLock, SLOTS_LOCK);
  kvmSetMemslot(acc, vm, slot, present);
  logUpdate(acc, vm, 'ram', false, role);
  mutexUnlock(acc, vm.slotsLock, SLOTS_LOCK);
}

/**
 * Guest WRMSR(IA32_APIC_BASE) turning on x2APIC: update the base and ask for an APICv update
 * before the next entry.
 * @kvm arch/x86/kvm/lapic.c kvm_lapic_set_base (kvm_make_request(KVM_REQ_APICV_UPDATE))
 */
export function kvmLapicSetBaseX2apic(acc: Access, v: VcpuId): void {
  const base = acc.layout.vcpu(v, VCPU.APIC_BASE);
  acc.writeOnce(base, acc.readOnce(base, 'x2apic:apic-base-read') | X2APIC_ENABLE, 'x2apic:apic-base-write');
  kvmMakeRequest(acc, v, KVM_REQ_APICV_UPDATE);
}

/**
 * Whether the vCPU's local APIC is in x2APIC mode.
 * @kvm arch/x86/kvm/lapic.h apic_x2apic_mode
 */
export function apicX2apicMode(acc: Access, v: VcpuId): boolean {
  return (acc.readOnce(acc.layout.vcpu(v, VCPU.APIC_BASE), 'x2apic:apic-base-read') & X2APIC_ENABLE) !== 0;
}


/** The guest runs for a seeded slice (SRCU dropped). */
function guestRun(ctx: ScenarioCtx): void {
  thinkSpins(ctx, 'guest:run', GUEST_SPINS);
}

/**
 * One vCPU's round: a slice of KVM_RUN. Host side under kvm->srcu, guest side without it. In
 * every guest slice the guest touches 0xFEE00000 (xAPIC MMIO); what it reaches is what the
 * memslots the vCPU sees at entry map there (the NPT fault is resolved through them, under
 * kvm->srcu). At one exit the guest has written IA32_APIC_BASE.EXTD (x2APIC on).
 */
function vcpuRound(ctx: ScenarioCtx, vm: ApicMemslotVm): void {
  const { acc, L, params } = ctx;
  const v = ctx.index;
  const switchAt = ctx.prng.below(SWITCH_STEPS);
  const rec = L.scratch(plan(params).at.lookups + v * LOOKUP_STRIDE);
  let sawDisabled = false;
  thinkSpins(ctx, 'vcpu:ioctl-run', VCPU_START_SPINS); // the vCPU thread enters KVM_RUN at a random time
  let idx = srcuReadLock(acc, vm.srcu); // kvm_arch_vcpu_ioctl_run: kvm_vcpu_srcu_read_lock
  for (let step = 0; step < STEPS; step++) {
    // vcpu_enter_guest: pending requests first (kvm_vcpu_update_apicv for KVM_REQ_APICV_UPDATE).
    // kvm_vcpu_update_apicv: x2APIC under hybrid AVIC (the X2APIC inhibit reason applies).
    if (kvmCheckRequest(acc, v, KVM_REQ_APICV_UPDATE) && apicX2apicMode(acc, v)) {
      idx = kvmInhibitApicAccessPage(acc, vm, idx, params.variant.name, ctx.index);
      sawDisabled = true; // it returns only after reading or writing enabled == false
    }
    const x2apic = apicX2apicMode(acc, v);
    const l = kvmLookupApicGfn(acc, vm);
    const word = LK.VALID | (x2apic ? LK.X2APIC : 0) | (sawDisabled ? LK.SAW_DISABLED : 0) | (l.present ? LK.REACHED : 0) | (l.stale ? LK.STALE : 0) | (l.gen << LK.GEN_SHIFT) | (step << LK.STEP_SHIFT);
    acc.poke(wordAt(rec, 1 + step), word);
    srcuReadUnlock(acc, vm.srcu, idx); // in guest mode without kvm->srcu
    guestRun(ctx);
    idx = srcuReadLock(acc, vm.srcu); // VM-exit: back under kvm->srcu
    if (step === switchAt) kvmLapicSetBaseX2apic(acc, v);
  }
  srcuReadUnlock(acc, vm.srcu, idx);
  acc.poke(rec, STEPS);
}

/**
 * The VMM's round: hot-add a vCPU (KVM_CREATE_VCPU) and, in some rounds, plug a RAM slot
 * (KVM_SET_USER_MEMORY_REGION, a memslot update with synchronize_srcu under slots_lock), in
 * random order and at random times.
 */
function vmmRound(ctx: ScenarioCtx, vm: ApicMemslotVm): void {
  const { acc, prng } = ctx;
  const think = () => thinkSpins(ctx, 'vmm:think', VMM_THINK_SPINS);
  const ram = prng.next() < VMM_RAM_UPDATE_P;
  const ramFirst = prng.next() < 0.5;
  think();
  if (ram && ramFirst) {
    kvmSetUserMemoryRegion(acc, vm, HOTPLUG_RAM_SLOT, true, ctx.index);
    think();
  }
  // KVM_CREATE_VCPU → kvm_arch_vcpu_create → svm_vcpu_create → avic_init_vcpu →
  // avic_init_backing_page → kvm_alloc_apic_access_page
  kvmAllocApicAccessPage(acc, vm, ctx.index);
  if (ram && !ramFirst) {
    think();
    kvmSetUserMemoryRegion(acc, vm, HOTPLUG_RAM_SLOT, true, ctx.index);
  }
}

/** Write the state every round starts from: a running VM in xAPIC mode with the slot present. */
function writeInitialState(acc: Access, p: ScenarioParams): void {
  const L = acc.layout;
  const { words } = plan(p);
  for (let i = 0; i < words; i++) acc.poke(L.scratch(i), 0);
  const vm = apicMemslotVm(L, p);
  for (const k of [...BOOT_RAM_SLOTS, APIC_SLOT]) acc.poke(wordAt(vm.gen[0], MEMSLOTS_GEN.SLOTS + k), 1);
  acc.poke(wordAt(vm.gen[0], MEMSLOTS_GEN.STATE), GEN_LIVE);
  acc.poke(vm.memslots, 0);
  acc.poke(vm.enabled, 1);
  for (let v = 0; v < p.vcpus; v++) {
    acc.poke(L.vcpu(v, VCPU.APIC_BASE), APIC_DEFAULT_PHYS_BASE | MSR_IA32_APICBASE_ENABLE);
    acc.poke(L.vcpu(v, VCPU.REQUESTS), 0);
  }
}

/** The round's record for the checkers (role 0, after the round). */
function roundRecord(ctx: ScenarioCtx, vm: ApicMemslotVm): MemslotRound {
  const { acc, L, params, roles } = ctx;
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
  const count = acc.peek(vm.log);
  const updates: MemslotUpdate[] = [];
  for (let i = 0; i < count; i++) {
    const w = acc.peek(wordAt(vm.log, 1 + i));
    updates.push({ op: LOG_OPS[w & 3] ?? 'ram', by: roles[w >>> 8] ?? `role${w >>> 8}`, inhibit: (w & LOG_INHIBIT) !== 0 });
  }
  const activeGen = acc.peek(vm.memslots) & 1;
  const g = vm.gen[activeGen as 0 | 1];
  return {
    lookups,
    updates,
    final: {
      enabled: acc.peek(vm.enabled) !== 0,
      inhibited: acc.peek(vm.inhibited) !== 0,
      activeGen,
      apicSlotInActive: acc.peek(wordAt(g, MEMSLOTS_GEN.STATE)) === GEN_LIVE && acc.peek(wordAt(g, MEMSLOTS_GEN.SLOTS + APIC_SLOT)) !== 0,
    },
  };
}

/** The scenario. */
export const apicMemslotInhibit: ScenarioDef = {
  id: 'apic-memslot-inhibit',
  title: 'AVIC hybrid mode: x2APIC deletes the APIC-access memslot under SRCU while vCPUs use it and the VMM hot-adds vCPUs',
  seedFile: '001_a8da36bbce728554.txt',
  variants: [
    { name: 'buggy-srcu-held', buggy: true, differs: 'kvm_inhibit_apic_access_page keeps the vCPU\'s kvm->srcu read lock while it takes slots_lock and synchronizes (step 2 skipped)' },
    { name: 'buggy-flag-order', buggy: true, differs: 'apic_access_memslot_enabled is cleared before the memslot is deleted (step 4b before 4a)' },
    { name: 'buggy-no-inhibited', buggy: true, differs: 'apic_access_memslot_inhibited is never set (step 4c missing)' },
    { name: 'fixed', buggy: false, differs: '' },
  ],
  invariants: [
    { name: 'noDeadlock', description: 'every actor leaves every wait (no synchronize_srcu inside a read section of kvm->srcu, no kvm->srcu → slots_lock → synchronize_srcu cycle)' },
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
    const vm = apicMemslotVm(ctx.L, ctx.params);
    if (ctx.index < ctx.params.vcpus) vcpuRound(ctx, vm);
    else vmmRound(ctx, vm);
  },
  check(ctx): Violation[] {
    const rec = roundRecord(ctx, apicMemslotVm(ctx.L, ctx.params));
    return [...memslotInhibitSticky(rec), ...memslotDisabledImpliesGone(rec)];
  },
  reset(ctx) {
    writeInitialState(ctx.acc, ctx.params);
  },
};
