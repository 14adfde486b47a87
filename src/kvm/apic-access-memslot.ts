/**
 * The APIC-access memslot of AMD's hybrid AVIC mode and the memslots it lives in: KVM deletes
 * APIC_ACCESS_PAGE_PRIVATE_MEMSLOT when any vCPU enables x2APIC (the guest must not reach the
 * virtual APIC page through 0xFEE00000 while KVM emulates x2APIC), while other vCPUs resolve GFNs
 * through the SRCU-published memslots and the VMM hot-adds vCPUs (kvm_alloc_apic_access_page)
 * and changes RAM slots, both under slots_lock with synchronize_srcu. Seed 001 (Maxim Levitsky's
 * review of "[PATCH v4 11/32] KVM: x86: Inhibit APIC memslot if x2APIC and AVIC are enabled").
 *
 * Memslots are two generations of presence words in the VM region (VM.MEMSLOTS_GEN0/1) and the
 * published index (VM.MEMSLOTS), as kvm_swap_active_memslots flips kvm->memslots between
 * __memslots[as_id][0] and [1]. A freed generation is poisoned (state FREE, sequence bumped) so a
 * reader that kept using it after the grace period sees it (KASAN's use-after-free).
 */
import { VM, type Addr, type Layout } from '../mem/layout.js';
import type { Access } from '../mem/access.js';
import { kvmSrcu, mutexLock, mutexUnlock, srcuReadLock, srcuReadUnlock, synchronizeSrcu, wordAt, type SrcuStruct } from '../sync/index.js';
import { EmuError } from '../errors.js';
import { definePatch, type PatchSet } from './patches.js';

/** Slots of one memslots generation; the last one is APIC_ACCESS_PAGE_PRIVATE_MEMSLOT. */
export const KVM_NR_MEMSLOTS = 14;
/**
 * Index of the APIC-access slot (GFN 0xFEE00) in a generation.
 * @kvm arch/x86/include/asm/kvm_host.h APIC_ACCESS_PAGE_PRIVATE_MEMSLOT
 */
export const APIC_ACCESS_PAGE_PRIVATE_MEMSLOT = KVM_NR_MEMSLOTS - 1;

/**
 * Words of one memslots generation: state, free sequence, one presence word per slot.
 * @kvm include/linux/kvm_host.h struct kvm_memslots (generation, the slot set)
 */
export const MEMSLOTS_GEN = { STATE: 0, SEQ: 1, SLOTS: 2 } as const;
/** {@link MEMSLOTS_GEN.STATE} values: freed (poisoned) or live. */
export const MEMSLOTS_FREE = 0;
/** A generation that is published or being built. */
export const MEMSLOTS_LIVE = 1;

/** Kinds of memslot update the tracepoint records. */
export const MEMSLOT_OPS = ['apic-delete', 'apic-create', 'ram'] as const;
/** One kind of memslot update. */
export type MemslotOpName = (typeof MEMSLOT_OPS)[number];
/** Capacity of the update tracepoint (two lines: count + 31 updates). */
export const MEMSLOT_LOG_MAX = 31;
const LOG_INHIBIT = 4;

/**
 * Where the VM-wide memslot state lives.
 * @kvm include/linux/kvm_host.h struct kvm (memslots, slots_lock, srcu) + struct kvm_arch (apic_access_memslot_enabled/_inhibited)
 */
export interface KvmMemslots {
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
  /** The update tracepoint: count, then one word per update. */
  readonly log: Addr;
}

/**
 * The memslot state of the VM in layout `L`.
 * @emulator
 */
export function kvmMemslots(L: Layout): KvmMemslots {
  return {
    enabled: L.vm(VM.APIC_ACCESS_MEMSLOT, 0),
    inhibited: L.vm(VM.APIC_ACCESS_MEMSLOT, 1),
    memslots: L.vm(VM.MEMSLOTS),
    gen: [L.vm(VM.MEMSLOTS_GEN0), L.vm(VM.MEMSLOTS_GEN1)],
    slotsLock: L.vm(VM.SLOTS_LOCK),
    srcu: kvmSrcu(L),
    log: L.vm(VM.MEMSLOT_LOG),
  };
}

/**
 * Boot state (main thread, before the actors start): generation 0 published with `slots` present
 * (the APIC-access slot among them when `apicAccess`), generation 1 free, nothing inhibited, an
 * empty tracepoint.
 * @emulator
 */
export function kvmMemslotsInit(acc: Access, slots: readonly number[], apicAccess: boolean): void {
  const m = kvmMemslots(acc.layout);
  for (const g of m.gen) for (let i = 0; i < MEMSLOTS_GEN.SLOTS + KVM_NR_MEMSLOTS; i++) acc.poke(wordAt(g, i), 0);
  for (const k of slots) acc.poke(wordAt(m.gen[0], MEMSLOTS_GEN.SLOTS + k), 1);
  if (apicAccess) acc.poke(wordAt(m.gen[0], MEMSLOTS_GEN.SLOTS + APIC_ACCESS_PAGE_PRIVATE_MEMSLOT), 1);
  acc.poke(wordAt(m.gen[0], MEMSLOTS_GEN.STATE), MEMSLOTS_LIVE);
  acc.poke(m.memslots, 0);
  acc.poke(m.enabled, apicAccess ? 1 : 0);
  acc.poke(m.inhibited, 0);
  for (let i = 0; i <= MEMSLOT_LOG_MAX; i++) acc.poke(wordAt(m.log, i), 0);
}

/** One entry of the memslot update tracepoint. */
export interface MemslotLogEntry {
  op: MemslotOpName;
  /** Actor id of the updater. */
  actor: number;
  /** The update came from kvm_inhibit_apic_access_page. */
  inhibit: boolean;
}

/** Record one update (caller holds slots_lock, so the log is in update order). */
function traceMemslotUpdate(acc: Access, m: KvmMemslots, op: MemslotOpName, inhibit: boolean): void {
  const n = acc.peek(m.log);
  if (n >= MEMSLOT_LOG_MAX) throw new EmuError('EMU_ERR_INTERNAL', `${acc.name}: memslot update tracepoint full (${MEMSLOT_LOG_MAX} updates)`, { actor: acc.name });
  acc.poke(wordAt(m.log, 1 + n), MEMSLOT_OPS.indexOf(op) | (inhibit ? LOG_INHIBIT : 0) | (acc.actor << 8));
  acc.poke(m.log, n + 1);
}

/**
 * The updates recorded since the last {@link kvmMemslotsInit}, in slots_lock order.
 * @kvm include/trace/events/kvm.h (a memslot-update tracepoint; emulator bookkeeping, read after the run)
 */
export function readMemslotLog(acc: Access): MemslotLogEntry[] {
  const m = kvmMemslots(acc.layout);
  const out: MemslotLogEntry[] = [];
  for (let i = 0, n = acc.peek(m.log); i < n; i++) {
    const w = acc.peek(wordAt(m.log, 1 + i));
    out.push({ op: MEMSLOT_OPS[w & 3] ?? 'ram', actor: w >>> 8, inhibit: (w & LOG_INHIBIT) !== 0 });
  }
  return out;
}

/**
 * Change one slot (caller holds slots_lock): build the inactive generation as a copy of the
 * published one with the change, publish it, wait for a grace period of kvm->srcu, then free
 * (poison) the old generation.
 * @kvm virt/kvm/kvm_main.c kvm_set_memslot (kvm_swap_active_memslots: rcu_assign_pointer + synchronize_srcu_expedited)
 */
export function kvmSetMemslot(acc: Access, m: KvmMemslots, slot: number, present: boolean): void {
  const cur = acc.readOnce(m.memslots, 'memslot:active-read') & 1;
  const from = m.gen[cur as 0 | 1];
  const to = m.gen[(1 - cur) as 0 | 1];
  for (let k = 0; k < KVM_NR_MEMSLOTS; k++) {
    const v = k === slot ? (present ? 1 : 0) : acc.readOnce(wordAt(from, MEMSLOTS_GEN.SLOTS + k), 'memslot:copy-read');
    acc.writeOnce(wordAt(to, MEMSLOTS_GEN.SLOTS + k), v, 'memslot:copy-write');
  }
  acc.writeOnce(wordAt(to, MEMSLOTS_GEN.STATE), MEMSLOTS_LIVE, 'memslot:build-done');
  acc.storeRelease(m.memslots, 1 - cur, 'memslot:publish');
  synchronizeSrcu(acc, m.srcu);
  acc.writeOnce(wordAt(from, MEMSLOTS_GEN.STATE), MEMSLOTS_FREE, 'memslot:free');
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
 * dereference the pointer, search the slot, and notice if the array was freed meanwhile.
 * @kvm virt/kvm/kvm_main.c kvm_vcpu_gfn_to_memslot (srcu_dereference(kvm->memslots), search_memslots) from kvm_faultin_pfn
 */
export function kvmLookupApicGfn(acc: Access, m: KvmMemslots): ApicGfnLookup {
  const g = acc.loadAcquire(m.memslots, 'memslot:deref') & 1;
  const base = m.gen[g as 0 | 1];
  const seq0 = acc.readOnce(wordAt(base, MEMSLOTS_GEN.SEQ), 'memslot:gen-seq');
  const st0 = acc.readOnce(wordAt(base, MEMSLOTS_GEN.STATE), 'memslot:gen-state');
  const present = acc.readOnce(wordAt(base, MEMSLOTS_GEN.SLOTS + APIC_ACCESS_PAGE_PRIVATE_MEMSLOT), 'memslot:lookup-apic-gfn') !== 0;
  const st1 = acc.readOnce(wordAt(base, MEMSLOTS_GEN.STATE), 'memslot:gen-state');
  const seq1 = acc.readOnce(wordAt(base, MEMSLOTS_GEN.SEQ), 'memslot:gen-seq');
  return { gen: g, present, stale: st0 !== MEMSLOTS_LIVE || st1 !== MEMSLOTS_LIVE || seq0 !== seq1 };
}

const SLOTS_LOCK = 'slots_lock';
const SEED_001 = '001_a8da36bbce728554.txt ([PATCH v4 11/32] KVM: x86: Inhibit APIC memslot if x2APIC and AVIC are enabled, Sean Christopherson, 2022-10-01; review by Maxim Levitsky, 2022-12-08)';

/**
 * Bug patch (MS-1 / MS-2): kvm_inhibit_apic_access_page keeps the vCPU's kvm->srcu read lock
 * while it takes slots_lock and deletes the memslot. synchronize_srcu then waits for the caller
 * itself (MS-1), or the VMM, holding slots_lock in its own synchronize_srcu, waits for this
 * vCPU's read section while the vCPU waits for slots_lock (MS-2, an ABBA).
 * @kvm arch/x86/kvm/lapic.c kvm_inhibit_apic_access_page (without kvm_vcpu_srcu_read_unlock)
 */
export const PATCH_APIC_ACCESS_SRCU_HELD = definePatch({
  id: 'apic-access-inhibit-srcu-held',
  step: 'kvm_inhibit_apic_access_page',
  summary: "keep the vCPU's kvm->srcu read lock across mutex_lock(slots_lock) and the memslot delete (no kvm_vcpu_srcu_read_unlock/lock around them)",
  origin: { kind: 'hypothetical', ref: SEED_001, subject: 'the first step of v4 11/32 removed: "drop the vCPU\'s SRCU lock" (the commit message names the hazard)' },
  kernel: 'none: every posted version drops SRCU first',
  vendors: ['svm'],
});

/**
 * Bug patch (MS-3): apic_access_memslot_enabled is cleared before the memslot is deleted, so a
 * vCPU's lockless fast check sees "disabled" while the slot is still published.
 * @kvm arch/x86/kvm/lapic.c kvm_inhibit_apic_access_page (flag cleared before __x86_set_memory_region)
 */
export const PATCH_APIC_ACCESS_FLAG_FIRST = definePatch({
  id: 'apic-access-inhibit-flag-first',
  step: 'kvm_inhibit_apic_access_page',
  summary: 'clear apic_access_memslot_enabled before deleting APIC_ACCESS_PAGE_PRIVATE_MEMSLOT (the comment in v4 11/32 says why it must come after)',
  origin: { kind: 'hypothetical', ref: SEED_001, subject: '"Clear enabled after the memslot is deleted so that a different vCPU doesn\'t get a false negative" reversed' },
  kernel: 'none',
  vendors: ['svm'],
});

/**
 * Bug patch (MS-4): apic_access_memslot_inhibited is never set, so kvm_alloc_apic_access_page
 * for a hot-added vCPU re-creates the slot after an x2APIC vCPU deleted it.
 * @kvm arch/x86/kvm/lapic.c kvm_inhibit_apic_access_page (no apic_access_memslot_inhibited)
 */
export const PATCH_APIC_ACCESS_NO_INHIBITED = definePatch({
  id: 'apic-access-no-inhibited-flag',
  step: 'kvm_inhibit_apic_access_page',
  summary: 'never set apic_access_memslot_inhibited, so a vCPU created later re-creates the deleted APIC-access memslot',
  origin: { kind: 'hypothetical', ref: SEED_001, subject: 'v4 11/32 without its sticky "inhibited" flag (the state before the patch: only "enabled" existed)' },
  kernel: 'none with x2APIC + hybrid AVIC handled (before v4 11/32 the slot was never deleted at all)',
  vendors: ['svm'],
});

/**
 * Delete the APIC-access memslot because this vCPU enabled x2APIC under hybrid AVIC. `idx` is
 * the vCPU's kvm->srcu read-lock index; returns its index afterwards. On return the caller has
 * read (fast path or re-check) or written apic_access_memslot_enabled == false.
 * @kvm arch/x86/kvm/lapic.c kvm_inhibit_apic_access_page
 */
export function kvmInhibitApicAccessPage(acc: Access, patches: PatchSet, idx: number): number {
  const m = kvmMemslots(acc.layout);
  if (acc.readOnce(m.enabled, 'apic-access:enabled-check') === 0) return idx;
  const dropSrcu = !patches.has(PATCH_APIC_ACCESS_SRCU_HELD);
  if (dropSrcu) srcuReadUnlock(acc, m.srcu, idx); // kvm_vcpu_srcu_read_unlock(vcpu)
  mutexLock(acc, m.slotsLock, SLOTS_LOCK);
  if (acc.readOnce(m.enabled, 'apic-access:enabled-recheck') !== 0) {
    const clearFirst = patches.has(PATCH_APIC_ACCESS_FLAG_FIRST);
    if (clearFirst) acc.writeOnce(m.enabled, 0, 'apic-access:enabled-clear');
    kvmSetMemslot(acc, m, APIC_ACCESS_PAGE_PRIVATE_MEMSLOT, false); // __x86_set_memory_region(kvm, APIC_ACCESS_PAGE_PRIVATE_MEMSLOT, 0, 0)
    traceMemslotUpdate(acc, m, 'apic-delete', true);
    if (!clearFirst) acc.writeOnce(m.enabled, 0, 'apic-access:enabled-clear');
    if (!patches.has(PATCH_APIC_ACCESS_NO_INHIBITED)) acc.writeOnce(m.inhibited, 1, 'apic-access:inhibited-set');
  }
  mutexUnlock(acc, m.slotsLock, SLOTS_LOCK);
  return dropSrcu ? srcuReadLock(acc, m.srcu) : idx;
}

/**
 * Create the APIC-access memslot at vCPU creation unless it exists or is inhibited.
 * @kvm arch/x86/kvm/lapic.c kvm_alloc_apic_access_page
 */
export function kvmAllocApicAccessPage(acc: Access): void {
  const m = kvmMemslots(acc.layout);
  mutexLock(acc, m.slotsLock, SLOTS_LOCK);
  const enabled = acc.readOnce(m.enabled, 'apic-access:alloc-enabled-read') !== 0;
  const inhibited = acc.readOnce(m.inhibited, 'apic-access:alloc-inhibited-read') !== 0;
  if (!enabled && !inhibited) {
    kvmSetMemslot(acc, m, APIC_ACCESS_PAGE_PRIVATE_MEMSLOT, true); // __x86_set_memory_region(kvm, APIC_ACCESS_PAGE_PRIVATE_MEMSLOT, APIC_DEFAULT_PHYS_BASE, PAGE_SIZE)
    traceMemslotUpdate(acc, m, 'apic-create', false);
    acc.writeOnce(m.enabled, 1, 'apic-access:enabled-set');
  }
  mutexUnlock(acc, m.slotsLock, SLOTS_LOCK);
}

/**
 * KVM_SET_USER_MEMORY_REGION on an ordinary RAM slot: create (plug) or delete (unplug) it.
 * @kvm virt/kvm/kvm_main.c kvm_set_memory_region (mutex_lock(&kvm->slots_lock) around __kvm_set_memory_region)
 */
export function kvmSetUserMemoryRegion(acc: Access, slot: number, present: boolean): void {
  if (slot === APIC_ACCESS_PAGE_PRIVATE_MEMSLOT) throw new EmuError('EMU_ERR_BAD_PARAM', `invalid slot: ${slot} is KVM's private APIC-access memslot`, { detail: { param: 'slot' } });
  const m = kvmMemslots(acc.layout);
  mutexLock(acc, m.slotsLock, SLOTS_LOCK);
  kvmSetMemslot(acc, m, slot, present);
  traceMemslotUpdate(acc, m, 'ram', false);
  mutexUnlock(acc, m.slotsLock, SLOTS_LOCK);
}

/**
 * The state at the end of a run: flags and whether the published generation has the slot.
 * @emulator
 */
export function peekApicAccessMemslot(acc: Access): { enabled: boolean; inhibited: boolean; activeGen: number; apicSlotInActive: boolean } {
  const m = kvmMemslots(acc.layout);
  const activeGen = acc.peek(m.memslots) & 1;
  const g = m.gen[activeGen as 0 | 1];
  return {
    enabled: acc.peek(m.enabled) !== 0,
    inhibited: acc.peek(m.inhibited) !== 0,
    activeGen,
    apicSlotInActive: acc.peek(wordAt(g, MEMSLOTS_GEN.STATE)) === MEMSLOTS_LIVE && acc.peek(wordAt(g, MEMSLOTS_GEN.SLOTS + APIC_ACCESS_PAGE_PRIVATE_MEMSLOT)) !== 0,
  };
}
