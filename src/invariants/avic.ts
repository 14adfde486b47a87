/**
 * AVIC and Secure AVIC invariants (domain notes 0.2, 3.5 AV-1/AV-2, 7.3 SA-2/SA-3, 11 items 1
 * and 5), pure functions over what one round left behind:
 *
 * - lost-wake-up freedom: a vCPU asleep in kvm_vcpu_block() never has a deliverable vector
 *   pending in its backing page while no sender is still on its way to wake it;
 * - IsRunning consistency: an AVIC physical APIC ID table entry (and KVM's copy of it) says
 *   IsRunning only while the vCPU is loaded on the pCPU the entry names and is not blocking.
 */
import type { Violation } from './checks.js';

/** One vCPU at the end of a round: its sleep state and the IRR of its backing page. */
export interface SleepRound {
  vcpu: number;
  /**
   * The vCPU's thread reached schedule() in TASK_INTERRUPTIBLE with its rcuwait registered,
   * and nobody woke it before the round ended.
   */
  sleeping: boolean;
  /** IRR words 0..7 of the backing page (AVIC: KVM's APIC page; Secure AVIC: the guest-owned page). */
  irr: ArrayLike<number>;
  /** The guest's processor priority: vector v is deliverable iff v >= 0x10 and v's class is above PPR's. */
  ppr: number;
  /** Senders still between their IRR write and the end of their notification (doorbell, exit, wake-up). */
  inFlight: number;
  /** IPIs sent to the vCPU this round, and how many its guest took. */
  sent: number;
  delivered: number;
  /** Secure AVIC only: `sev_savic_has_pending_ipi` as left behind. */
  pendingIpiFlag?: boolean;
}

/**
 * Vectors of a 256-bit IRR (8 words) the guest could take at priority `ppr`, ascending.
 * @kvm arch/x86/kvm/lapic.c apic_has_interrupt_for_ppr (vector class above PPR's)
 */
export function deliverableVectors(irr: ArrayLike<number>, ppr: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < 8; i++) {
    const w = (irr[i] ?? 0) >>> 0;
    if (w === 0) continue;
    for (let b = 0; b < 32; b++) {
      const v = i * 32 + b;
      if (((w >>> b) & 1) === 1 && v >= 0x10 && (v & 0xf0) > (ppr & 0xf0)) out.push(v);
    }
  }
  return out;
}

const hex = (v: number) => '0x' + v.toString(16);

function sleepsWithPending(r: SleepRound): number[] {
  if (!r.sleeping || r.inFlight > 0) return [];
  return deliverableVectors(r.irr, r.ppr);
}

/**
 * AVIC lost-wake-up freedom: a vCPU asleep in kvm_vcpu_block() has no deliverable IRR bit in
 * its backing page unless a sender is still on its way to wake it.
 * @kvm virt/kvm/kvm_main.c kvm_vcpu_block / arch/x86/kvm/svm/avic.c avic_vcpu_blocking (the property their ordering protects)
 */
export function avicNoSleepWithPendingIrr(r: SleepRound): Violation[] {
  const vecs = sleepsWithPending(r);
  if (vecs.length === 0) return [];
  return [
    {
      invariant: 'avicNoSleepWithPendingIrr',
      vcpu: r.vcpu,
      vector: vecs[0]!,
      message: `vcpu${r.vcpu} sleeps in kvm_vcpu_block with IRR ${vecs.map(hex).join(', ')} pending in its AVIC backing page and no wake-up in flight (IPIs sent ${r.sent}, taken ${r.delivered}): the sender saw IsRunning=1 and rang a doorbell while the target's last vIRR check missed the bit`,
    },
  ];
}

/**
 * Secure AVIC lost-wake-up freedom: a vCPU asleep in kvm_vcpu_block() has no deliverable vector
 * in its guest-owned backing page unless a sender is still on its way to wake it. A set
 * `has_pending_ipi` does not excuse it: nothing re-reads the flag once the vCPU sleeps.
 * @kvm arch/x86/kvm/svm/sev.c savic_handle_icr_write / sev_savic_has_pending_interrupt (RFC v2; the property their ordering protects)
 */
export function savicNoSleepWithPendingIpi(r: SleepRound): Violation[] {
  const vecs = sleepsWithPending(r);
  if (vecs.length === 0) return [];
  const flag = r.pendingIpiFlag === undefined ? '' : `, has_pending_ipi=${r.pendingIpiFlag ? 1 : 0}`;
  return [
    {
      invariant: 'savicNoSleepWithPendingIpi',
      vcpu: r.vcpu,
      vector: vecs[0]!,
      message: `vcpu${r.vcpu} sleeps in kvm_vcpu_block with IPI vector(s) ${vecs.map(hex).join(', ')} pending in its Secure AVIC backing page and no wake-up in flight (IPIs sent ${r.sent}, taken ${r.delivered}${flag}): KVM, which cannot read the guest IRR, blocked the vCPU`,
    },
  ];
}

/** A physical APIC ID table entry, decoded (the backing-page address is not modelled). */
export interface PhysIdEntry {
  valid: boolean;
  isRunning: boolean;
  /** Host physical APIC ID (bits 11:0). */
  hostId: number;
}

/** Which copy of the entry: the table hardware reads, or KVM's `svm->avic_physical_id_entry`. */
export type PhysIdCopy = 'table' | 'kvm';

/** One write of a vCPU's entry, with the writing vCPU's state at that moment. */
export interface PhysIdEntryWrite {
  vcpu: number;
  copy: PhysIdCopy;
  entry: PhysIdEntry;
  /** APIC ID of the pCPU the vCPU is loaded on (per-CPU running vCPU), -1 when not loaded. */
  loadedHostId: number;
  /** kvm_vcpu_is_blocking(): the vCPU's rcuwait has a task. */
  blocking: boolean;
}

/** A vCPU's entry (both copies) and state at the end of a round. */
export interface PhysIdFinal {
  vcpu: number;
  table: PhysIdEntry;
  kvm: PhysIdEntry;
  loadedHostId: number;
  blocking: boolean;
}

/** What one round left behind for the IsRunning checker. */
export interface IsRunningRound {
  /** Entry writes in program order of their writers (the vCPUs' own threads). */
  writes: readonly PhysIdEntryWrite[];
  final: readonly PhysIdFinal[];
}

function isRunningBad(entry: PhysIdEntry, loadedHostId: number, blocking: boolean): string | null {
  if (!entry.isRunning) return null;
  if (!entry.valid) return 'the entry is not valid';
  if (blocking) return 'the vCPU is blocking';
  if (loadedHostId < 0) return 'the vCPU is not loaded on any pCPU';
  if (entry.hostId !== loadedHostId) return `it names host APIC ID ${entry.hostId} but the vCPU is loaded on APIC ID ${loadedHostId}`;
  return null;
}

/**
 * IsRunning == 1 implies the vCPU is loaded on the pCPU whose APIC ID the entry holds and is not
 * blocking — for every write of either copy of the entry, and for the state the round ends in.
 * @kvm arch/x86/kvm/svm/avic.c avic_vcpu_load / avic_vcpu_put / avic_vcpu_blocking
 */
export function avicIsRunningImpliesLoaded(r: IsRunningRound): Violation[] {
  const out: Violation[] = [];
  r.writes.forEach((w, i) => {
    const why = isRunningBad(w.entry, w.loadedHostId, w.blocking);
    if (why) out.push({ invariant: 'avicIsRunningImpliesLoaded', vcpu: w.vcpu, message: `write #${i} of vcpu${w.vcpu}'s ${w.copy === 'table' ? 'physical APIC ID table entry' : 'KVM entry copy'} set IsRunning=1 although ${why}` });
  });
  for (const f of r.final) {
    for (const copy of ['table', 'kvm'] as const) {
      const why = isRunningBad(f[copy], f.loadedHostId, f.blocking);
      if (why) out.push({ invariant: 'avicIsRunningImpliesLoaded', vcpu: f.vcpu, message: `at the end of the round vcpu${f.vcpu}'s ${copy === 'table' ? 'physical APIC ID table entry' : 'KVM entry copy'} says IsRunning=1 although ${why}` });
    }
  }
  return out;
}
