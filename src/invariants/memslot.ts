/**
 * APIC-access memslot invariants under SRCU (domain notes 3.4, 5.3, 5.4 MS-3 / MS-4), pure
 * functions over one round's record of the `apic-memslot-inhibit` scenario.
 *
 * The third invariant of that scenario, `noDeadlock` (MS-1 / MS-2), needs no checker here: a
 * deadlock ends the run through the deadline machinery (sync/wait, sync/srcu) and the race
 * runner reports it.
 */
import type { Violation } from './checks.js';

/** One resolution of the APIC-access GFN (0xFEE00) through a memslots array, under kvm->srcu. */
export interface MemslotLookup {
  vcpu: number;
  /** Run-loop iteration of the round in which the lookup happened. */
  step: number;
  /** Memslots array generation (the SRCU-published pointer) the vCPU dereferenced. */
  gen: number;
  /** The vCPU had x2APIC enabled (IA32_APIC_BASE.EXTD) at the lookup. */
  x2apic: boolean;
  /**
   * Before the lookup, the vCPU's kvm_inhibit_apic_access_page returned having read (fast path
   * or re-check) or written apic_access_memslot_enabled == false.
   */
  sawDisabled: boolean;
  /** The APIC-access slot was in the array: the access reached the APIC page. */
  reachedApicPage: boolean;
  /** The array was freed (or rebuilt) while the vCPU still used it. */
  stale: boolean;
}

/** Kinds of memslot update a round can log. */
export type MemslotOp = 'apic-delete' | 'apic-create' | 'ram';

/** One memslot update, logged under kvm->slots_lock (so the log is in update order). */
export interface MemslotUpdate {
  op: MemslotOp;
  /** Who made it (scenario role, e.g. `vcpu1`, `vmm`). */
  by: string;
  /** Made by kvm_inhibit_apic_access_page (the x2APIC inhibit of the APIC-access memslot). */
  inhibit: boolean;
}

/** What one round of the scenario left behind. */
export interface MemslotRound {
  /** Every APIC-GFN lookup of every vCPU, per vCPU in program order. */
  lookups: MemslotLookup[];
  /** Memslot updates in slots_lock order. */
  updates: MemslotUpdate[];
  /** State at the end of the round (no reader inside kvm->srcu any more). */
  final: {
    /** kvm->arch.apic_access_memslot_enabled. */
    enabled: boolean;
    /** kvm->arch.apic_access_memslot_inhibited. */
    inhibited: boolean;
    /** Generation the memslots pointer names. */
    activeGen: number;
    /** The APIC-access slot is in that generation. */
    apicSlotInActive: boolean;
  };
}

const who = (l: MemslotLookup) => `vcpu${l.vcpu}${l.x2apic ? ' (x2APIC)' : ''}`;

/**
 * `enabled == false` implies the APIC-access slot is gone from every memslots array a reader can
 * still see: a vCPU that has seen apic_access_memslot_enabled == false never reaches the APIC
 * page through the array it dereferences afterwards (MS-3); no reader uses an array that was
 * freed after synchronize_srcu; and at the end of the round, `enabled == false` means the slot
 * is absent from the active array.
 * @kvm arch/x86/kvm/lapic.c kvm_inhibit_apic_access_page (clear "enabled" only after the memslot is deleted)
 */
export function memslotDisabledImpliesGone(r: MemslotRound): Violation[] {
  const out: Violation[] = [];
  for (const l of r.lookups) {
    if (l.sawDisabled && l.reachedApicPage) {
      out.push({
        invariant: 'memslotDisabledImpliesGone',
        vcpu: l.vcpu,
        message: `${who(l)} saw apic_access_memslot_enabled == false, then (step ${l.step}) still reached the APIC-access page through memslots generation ${l.gen}, which holds the APIC-access slot`,
      });
    }
    if (l.stale) {
      out.push({
        invariant: 'memslotDisabledImpliesGone',
        vcpu: l.vcpu,
        message: `${who(l)} (step ${l.step}) used memslots generation ${l.gen} after it was freed: synchronize_srcu returned while the reader was inside`,
      });
    }
  }
  if (!r.final.enabled && r.final.apicSlotInActive) {
    out.push({ invariant: 'memslotDisabledImpliesGone', message: `apic_access_memslot_enabled == false but the active memslots (generation ${r.final.activeGen}) still hold the APIC-access slot` });
  }
  return out;
}

/**
 * Once inhibited, never re-created: after kvm_inhibit_apic_access_page deleted the APIC-access
 * memslot, no later update creates it again (MS-4), and a VM marked inhibited has no
 * APIC-access slot in its active memslots.
 * @kvm arch/x86/kvm/lapic.c kvm_alloc_apic_access_page (checks apic_access_memslot_inhibited under slots_lock)
 */
export function memslotInhibitSticky(r: MemslotRound): Violation[] {
  const out: Violation[] = [];
  let inhibitedBy: string | undefined;
  r.updates.forEach((u, i) => {
    if (u.op === 'apic-delete' && u.inhibit) inhibitedBy ??= u.by;
    else if (u.op === 'apic-create' && inhibitedBy !== undefined) {
      out.push({ invariant: 'memslotInhibitSticky', message: `${u.by} re-created the APIC-access memslot (update ${i + 1} of ${r.updates.length}) after ${inhibitedBy} deleted it for x2APIC` });
    }
  });
  if (r.final.inhibited && r.final.apicSlotInActive) {
    out.push({ invariant: 'memslotInhibitSticky', message: `apic_access_memslot_inhibited is set but the active memslots (generation ${r.final.activeGen}) hold the APIC-access slot` });
  }
  return out;
}
