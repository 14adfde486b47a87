/**
 * NMI invariants (domain notes 6.4 NMI-2, 11.10), pure functions over what one round on one
 * pCPU left behind: the NMIs that arrived (with the arrival sequence number the latch gave them
 * and the source that raised them) and the NMI handler invocations in the order they ran.
 */
import type { Violation } from './checks.js';
import type { NmiEntry, NmiOutcome } from '../host/nmi.js';

export type { NmiEntry, NmiOutcome } from '../host/nmi.js';

/** One NMI that arrived at the pCPU: its arrival sequence number and who raised it. */
export interface NmiArrival {
  /** Arrival sequence number on the pCPU (1, 2, ... in the order the NMIs were latched). */
  seq: number;
  /** Index of the source that raised it, or -1 for an NMI with no source. */
  source: number;
}

/** One invocation of the NMI handler on the pCPU. */
export interface NmiInvocation {
  /** Arrivals this NMI covers (collapsed in the latch): `first..last` inclusive. */
  first: number;
  last: number;
  /** FRED-style NMI-source bitmap delivered with the NMI (event data / exit qualification). */
  sourceBits: number;
  entry: NmiEntry;
  /** Interrupted instruction pointer (the back-to-back test compares it). */
  ip: number;
  /** Events the handlers claimed. */
  handled: number;
  /** regs->ip == last_nmi_rip. */
  b2b: boolean;
  outcome: NmiOutcome;
}

/** What one round on one pCPU left behind. */
export interface NmiRound {
  pcpu: number;
  /** Every NMI raised at the pCPU this round. */
  arrivals: readonly NmiArrival[];
  /** Handler invocations, in the order they ran. */
  invocations: readonly NmiInvocation[];
}

/** Source vectors set in an NMI-source bitmap. */
function vectors(bits: number): number[] {
  const out: number[] = [];
  for (let v = 0; v < 16; v++) if ((bits >>> v) & 1) out.push(v);
  return out;
}
const range = (i: NmiInvocation) => `${i.first === i.last ? `NMI #${i.first}` : `NMIs #${i.first}-#${i.last}`} [source vector ${vectors(i.sourceBits).join(',') || 'none'}]`;
const via = (i: NmiInvocation) => (i.entry === 'kvm-exit' ? 'called by KVM for the NMI VM-exit' : 'delivered through the host IDT');

/**
 * NMIs are handled in arrival order per pCPU: each handler invocation covers only NMIs that
 * arrived after every NMI an earlier invocation covered.
 * @sdm SDM vol. 3, "Handling Multiple NMIs": NMIs are delivered one at a time and blocked until IRET
 */
export function nmiHandledInArrivalOrder(r: NmiRound): Violation[] {
  const out: Violation[] = [];
  let prev: NmiInvocation | undefined;
  for (const inv of r.invocations) {
    if (prev && inv.first <= prev.last) {
      out.push({
        invariant: 'nmiHandledInArrivalOrder',
        message: `pCPU${r.pcpu}: the handler for ${range(prev)} (${via(prev)}) ran before the handler for ${range(inv)} (${via(inv)}), which arrived first`,
      });
    }
    if (!prev || inv.last > prev.last) prev = inv;
  }
  return out;
}

/**
 * No "unknown NMI" report for an NMI that had a source: an invocation whose handlers found
 * nothing, and which was not swallowed as the second half of a back-to-back pair, may only
 * cover NMIs that nobody raised with a source event.
 * @kvm arch/x86/kernel/nmi.c default_do_nmi → unknown_nmi_error
 */
export function nmiNoUnknownWithSource(r: NmiRound): Violation[] {
  const out: Violation[] = [];
  const sourceOf = new Map<number, number>();
  for (const a of r.arrivals) sourceOf.set(a.seq, a.source);
  for (const inv of r.invocations) {
    if (inv.outcome !== 'unknown') continue;
    const sourced: string[] = [];
    for (let s = inv.first; s <= inv.last; s++) {
      const src = sourceOf.get(s);
      if (src !== undefined && src >= 0) sourced.push(`#${s} from source ${src}`);
    }
    if (sourced.length > 0) {
      out.push({
        invariant: 'nmiNoUnknownWithSource',
        message: `pCPU${r.pcpu}: "Uhhuh. NMI received for unknown reason" for ${range(inv)} (${via(inv)}, ${inv.b2b ? 'back-to-back but nothing to swallow' : 'not back-to-back'}), yet it had a source: ${sourced.join(', ')} — an earlier handler already serviced it`,
      });
    }
  }
  return out;
}
