/**
 * Secure AVIC invariants (domain notes 7.3, 11.11), pure functions over one round's record.
 */
import type { Violation } from './checks.js';

/** What one round of the RequestedIRR scenario left behind. */
export interface SavicRound {
  target: number;
  /** Interrupts sent per vector (summed over sources). */
  sent: ArrayLike<number>;
  /** Vectors the guest's handler saw per vector. */
  delivered: ArrayLike<number>;
  /** ALLOWED_IRR words 0..7 of the target's backing page. */
  allowed: ArrayLike<number>;
  /** Writes of RequestedIRR/UpdateIRR made by threads other than the target's own. */
  foreignWrites: number;
}

/** Is vector v allowed by the guest's ALLOWED_IRR? */
export function savicAllowed(allowed: ArrayLike<number>, v: number): boolean {
  return ((allowed[v >>> 5]! >>> (v & 31)) & 1) === 1;
}

const hex = (v: number) => '0x' + v.toString(16);

/** Every interrupt sent to an allowed vector reaches the guest (lost = violation). */
export function savicNoLostAllowedVector(r: SavicRound): Violation[] {
  const out: Violation[] = [];
  for (let v = 0; v < 256; v++) {
    const s = r.sent[v] ?? 0;
    const d = r.delivered[v] ?? 0;
    if (s > 0 && savicAllowed(r.allowed, v) && d < s) {
      out.push({ invariant: 'savicNoLostAllowedVector', vcpu: r.target, vector: v, message: `vcpu${r.target} vector ${hex(v)} (allowed): sent ${s}, reached the guest ${d} — lost in RequestedIRR` });
    }
  }
  return out;
}

/** No vector outside ALLOWED_IRR ever reaches the guest. */
export function savicNoDisallowedDelivered(r: SavicRound): Violation[] {
  const out: Violation[] = [];
  for (let v = 0; v < 256; v++) {
    if ((r.delivered[v] ?? 0) > 0 && !savicAllowed(r.allowed, v)) {
      out.push({ invariant: 'savicNoDisallowedDelivered', vcpu: r.target, vector: v, message: `vcpu${r.target} vector ${hex(v)} reached the guest but is not in ALLOWED_IRR` });
    }
  }
  return out;
}

/** RequestedIRR/UpdateIRR are written only by the thread that runs the vCPU. */
export function savicRequestedIrrSingleWriter(r: SavicRound): Violation[] {
  if (r.foreignWrites === 0) return [];
  return [{ invariant: 'savicRequestedIrrSingleWriter', vcpu: r.target, message: `${r.foreignWrites} write(s) of vcpu${r.target}'s RequestedIRR/UpdateIRR came from other threads` }];
}
