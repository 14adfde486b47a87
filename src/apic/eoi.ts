/**
 * End of interrupt: the highest in-service vector retires, whatever value or vector the guest
 * had in mind, and PPR is recomputed.
 */
import type { Access } from '../mem/access.js';
import type { VcpuId } from '../mem/layout.js';
import { APIC_TMR } from '../mem/apicdef.js';
import { apicClearIsr, apicFindHighestIsr } from './irr-isr.js';
import { apicUpdatePpr } from './ppr.js';
import { apicTestVector } from './regs.js';

/** What an EOI retired. @kvm arch/x86/kvm/lapic.c apic_set_eoi / kvm_ioapic_send_eoi */
export interface EoiResult {
  /** The vector cleared from ISR, -1 if ISR was empty. */
  vector: number;
  /** TMR marks it level-triggered: the IOAPIC must see the EOI (clear Remote IRR). */
  level: boolean;
}

/**
 * EOI: clear the highest set ISR bit, recompute PPR; returns the vector or -1 if ISR was empty.
 * The caller then makes KVM_REQ_EVENT and forwards level-triggered EOIs to the IOAPIC
 * ({@link apicEoiIsLevel}, or use {@link apicSetEoiEx}).
 * @kvm arch/x86/kvm/lapic.c apic_set_eoi
 */
export function apicSetEoi(acc: Access, v: VcpuId): number {
  const vector = apicFindHighestIsr(acc, v);
  if (vector === -1) return -1;
  apicClearIsr(acc, v, vector);
  apicUpdatePpr(acc, v);
  return vector;
}

/**
 * Trigger mode of a retired vector as the IOAPIC EOI sees it: TMR[vector] (TMR is not changed
 * by EOI). @kvm arch/x86/kvm/ioapic.c kvm_ioapic_send_eoi (apic_test_vector(vector, APIC_TMR))
 */
export function apicEoiIsLevel(acc: Access, v: VcpuId, vector: number): boolean {
  return vector >= 0 && apicTestVector(acc, v, APIC_TMR, vector, 'apic:tmr-read');
}

/**
 * {@link apicSetEoi} plus the trigger mode of the retired vector.
 * @kvm arch/x86/kvm/lapic.c apic_set_eoi
 */
export function apicSetEoiEx(acc: Access, v: VcpuId): EoiResult {
  const vector = apicSetEoi(acc, v);
  return { vector, level: apicEoiIsLevel(acc, v, vector) };
}
