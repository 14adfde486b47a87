/**
 * The interrupt command register and the interrupt request it describes.
 *
 *     31-20 rsvd | 19-18 shorthand | 17-16 rsvd | 15 trigger | 14 level | 13 rsvd | 12 busy
 *     11 dest mode | 10-8 delivery mode | 7-0 vector
 *     destination: ICR2[31:24] (xAPIC) or ICR[63:32] (x2APIC, one 64-bit MSR)
 */
import {
  APIC_DEST_ALLBUT,
  APIC_DEST_ALLINC,
  APIC_DEST_LOGICAL,
  APIC_DEST_NOSHORT,
  APIC_DEST_SELF,
  APIC_INT_ASSERT,
  APIC_INT_LEVELTRIG,
  APIC_MODE_MASK,
  APIC_SHORT_MASK,
  APIC_VECTOR_MASK,
} from './apic-bits.js';

/** ICR 10:8, in field order (000 fixed .. 111 ExtINT). @kvm apicdef.h APIC_DM_* */
export const DELIVERY_MODES = ['fixed', 'lowest', 'smi', 'remrd', 'nmi', 'init', 'startup', 'extint'] as const;
/** Delivery mode (APIC_DM_FIXED .. APIC_DM_EXTINT). @kvm include/linux/kvm_host.h kvm_lapic_irq.delivery_mode */
export type DeliveryMode = (typeof DELIVERY_MODES)[number];
/** ICR bit 11. @kvm include/linux/kvm_host.h kvm_lapic_irq.dest_mode */
export type DestMode = 'physical' | 'logical';
/** ICR bit 15 / TMR bit. @kvm include/linux/kvm_host.h kvm_lapic_irq.trig_mode */
export type TriggerMode = 'edge' | 'level';
/** ICR 19:18, in field order. @kvm apicdef.h APIC_DEST_NOSHORT / _SELF / _ALLINC / _ALLBUT */
export const SHORTHANDS = ['none', 'self', 'all-including-self', 'all-excluding-self'] as const;
/** Destination shorthand. @kvm include/linux/kvm_host.h kvm_lapic_irq.shorthand */
export type Shorthand = (typeof SHORTHANDS)[number];

/**
 * An interrupt request as the APIC bus carries it (also what an ICR write sends).
 * @kvm include/linux/kvm_host.h struct kvm_lapic_irq
 */
export interface LapicIrq {
  /** 0..255; 0-15 are illegal for fixed / lowest-priority. */
  vector: number;
  deliveryMode: DeliveryMode;
  destMode: DestMode;
  /** Level (assert) bit 14: false is a deassert of a level-triggered interrupt. */
  level: boolean;
  triggerMode: TriggerMode;
  shorthand: Shorthand;
  /** Destination: 8-bit xAPIC ID / logical ID, or 32-bit x2APIC ID / logical ID (unsigned). */
  dest: number;
}

/** A decoded ICR is the interrupt request it sends. @kvm arch/x86/kvm/lapic.c kvm_apic_send_ipi */
export type Icr = LapicIrq;

/**
 * Decode an ICR pair: `lo` is ICR (bits 31:0), `hi` is ICR2 (xAPIC, destination in 31:24) or
 * ICR bits 63:32 (x2APIC, a 32-bit destination).
 * @kvm arch/x86/kvm/lapic.c kvm_apic_send_ipi (kvm_lapic_irq from icr_low / icr_high)
 */
export function decodeIcr(lo: number, hi: number, x2apic: boolean): Icr {
  return {
    vector: lo & APIC_VECTOR_MASK,
    deliveryMode: DELIVERY_MODES[(lo & APIC_MODE_MASK) >>> 8]!,
    destMode: (lo & APIC_DEST_LOGICAL) !== 0 ? 'logical' : 'physical',
    level: (lo & APIC_INT_ASSERT) !== 0,
    triggerMode: (lo & APIC_INT_LEVELTRIG) !== 0 ? 'level' : 'edge',
    shorthand: SHORTHANDS[(lo & APIC_SHORT_MASK) >>> 18]!,
    dest: x2apic ? hi >>> 0 : (hi >>> 24) & 0xff,
  };
}

const SHORTHAND_BITS: Record<Shorthand, number> = {
  none: APIC_DEST_NOSHORT,
  self: APIC_DEST_SELF,
  'all-including-self': APIC_DEST_ALLINC,
  'all-excluding-self': APIC_DEST_ALLBUT,
};

/**
 * Encode an ICR (for guests and tests): returns `lo` (ICR) and `hi` (ICR2 for xAPIC with the
 * destination in 31:24, or ICR[63:32] for x2APIC). Omitted fields default to a fixed, physical,
 * edge-triggered, deasserted (level 0), no-shorthand IPI to destination 0. Inverse of
 * {@link decodeIcr}. @kvm arch/x86/include/asm/apic.h __prepare_ICR / __prepare_ICR2
 */
export function encodeIcr(icr: Partial<Icr>, x2apic: boolean): { lo: number; hi: number } {
  const mode = DELIVERY_MODES.indexOf(icr.deliveryMode ?? 'fixed');
  let lo = ((icr.vector ?? 0) & APIC_VECTOR_MASK) | (mode << 8) | SHORTHAND_BITS[icr.shorthand ?? 'none'];
  if (icr.destMode === 'logical') lo |= APIC_DEST_LOGICAL;
  if (icr.level === true) lo |= APIC_INT_ASSERT;
  if (icr.triggerMode === 'level') lo |= APIC_INT_LEVELTRIG;
  const dest = icr.dest ?? 0;
  const hi = x2apic ? dest >>> 0 : ((dest & 0xff) << 24) >>> 0;
  return { lo: lo >>> 0, hi };
}
