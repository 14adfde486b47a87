/**
 * The 256-bit IRR / ISR / TMR bitmaps: highest-vector scans and the IRR/ISR bit updates.
 *
 * Who writes what (as in KVM): IRR bits are set by any sender with a locked set_bit and cleared
 * by the target vCPU; ISR is written only by the target vCPU, with plain read-modify-writes
 * (`__test_and_set_bit`). `irr_pending` ({@link VCPU.IRR_PENDING}) is a hint: set *after* the IRR
 * bit, cleared and re-derived in {@link apicClearIrr}; a scan that sees it clear skips the IRR.
 */
import type { Access } from '../mem/access.js';
import type { VcpuId } from '../mem/layout.js';
import { VCPU, vecPos, vecWord } from '../mem/layout.js';
import { APIC_IRR, APIC_ISR, APIC_TMR } from '../mem/apicdef.js';
import { APIC_VECTORS_PER_REG, MAX_APIC_VECTOR } from './apic-bits.js';
import { apicClearVector, apicSetVector, checkVector } from './regs.js';

function scanLabel(bitmapOffset: number): string {
  if (bitmapOffset === APIC_IRR) return 'apic:irr-scan';
  if (bitmapOffset === APIC_ISR) return 'apic:isr-scan';
  if (bitmapOffset === APIC_TMR) return 'apic:tmr-scan';
  return 'apic:bitmap-scan';
}

/**
 * Highest set vector of a 256-bit bitmap (APIC_IRR, APIC_ISR or APIC_TMR): words 7 -> 0, fls of
 * the first non-zero word. Returns -1 when the bitmap is empty.
 * @kvm arch/x86/kvm/lapic.c apic_find_highest_vector
 */
export function apicFindHighestVector(acc: Access, v: VcpuId, bitmapOffset: number): number {
  const label = scanLabel(bitmapOffset);
  for (let vec = MAX_APIC_VECTOR - APIC_VECTORS_PER_REG; vec >= 0; vec -= APIC_VECTORS_PER_REG) {
    const reg = acc.readOnce(acc.layout.apicBitmapWord(v, bitmapOffset, vecWord(vec)), label);
    if (reg !== 0) return 31 - Math.clz32(reg) + vec;
  }
  return -1;
}

/** Highest IRR vector, ignoring the irr_pending hint. @kvm arch/x86/kvm/lapic.c apic_search_irr */
export function apicSearchIrr(acc: Access, v: VcpuId): number {
  return apicFindHighestVector(acc, v, APIC_IRR);
}

/**
 * Highest IRR vector, or -1; -1 without scanning when the irr_pending hint is clear (it is
 * always set while APICv is active, see {@link kvmApicUpdateApicv}).
 * @kvm arch/x86/kvm/lapic.c apic_find_highest_irr
 */
export function apicFindHighestIrr(acc: Access, v: VcpuId): number {
  if (acc.readOnce(acc.layout.vcpu(v, VCPU.IRR_PENDING), 'apic:irr-pending-read') === 0) return -1;
  return apicSearchIrr(acc, v);
}

/** Highest ISR vector, or -1. @kvm arch/x86/kvm/lapic.c apic_find_highest_isr */
export function apicFindHighestIsr(acc: Access, v: VcpuId): number {
  return apicFindHighestVector(acc, v, APIC_ISR);
}

/**
 * Make `vector` pending: locked set_bit in IRR, then irr_pending = true. irr_pending is set
 * after the IRR bit so it cannot be lost to a concurrent {@link apicClearIrr}.
 * @kvm arch/x86/kvm/lapic.h kvm_lapic_set_irr
 */
export function kvmLapicSetIrr(acc: Access, v: VcpuId, vector: number): void {
  checkVector(vector);
  apicSetVector(acc, v, APIC_IRR, vector, 'apic:irr-set');
  // Pairs with the irr_pending clear + IRR re-scan in apicClearIrr().
  acc.writeOnce(acc.layout.vcpu(v, VCPU.IRR_PENDING), 1, 'apic:irr-pending-set');
}

/**
 * Clear IRR[vector] on the target vCPU. Without APICv, irr_pending is cleared first and set
 * again if the IRR still holds a vector, so a racing {@link kvmLapicSetIrr} is never hidden.
 * @kvm arch/x86/kvm/lapic.c apic_clear_irr
 */
export function apicClearIrr(acc: Access, v: VcpuId, vector: number): void {
  checkVector(vector);
  if (acc.readOnce(acc.layout.vcpu(v, VCPU.APICV_ACTIVE), 'apic:apicv-active-read') !== 0) {
    apicClearVector(acc, v, APIC_IRR, vector, 'apic:irr-clear');
    return;
  }
  const pending = acc.layout.vcpu(v, VCPU.IRR_PENDING);
  acc.writeOnce(pending, 0, 'apic:irr-pending-clear');
  apicClearVector(acc, v, APIC_IRR, vector, 'apic:irr-clear');
  if (apicSearchIrr(acc, v) !== -1) acc.writeOnce(pending, 1, 'apic:irr-pending-set');
}

/**
 * Set ISR[vector] (target vCPU only; a plain read-modify-write as `__test_and_set_bit`).
 * With APICv KVM also calls the vendor `hwapic_isr_update` (SVI); that is the vendor's part.
 * @kvm arch/x86/kvm/lapic.c apic_set_isr
 */
export function apicSetIsr(acc: Access, v: VcpuId, vector: number): void {
  checkVector(vector);
  const addr = acc.layout.apicBitmapWord(v, APIC_ISR, vecWord(vector));
  const word = acc.readOnce(addr, 'apic:isr-read');
  acc.writeOnce(addr, word | (1 << vecPos(vector)), 'apic:isr-set');
}

/** Clear ISR[vector] (target vCPU only; plain read-modify-write). @kvm arch/x86/kvm/lapic.c apic_clear_isr */
export function apicClearIsr(acc: Access, v: VcpuId, vector: number): void {
  checkVector(vector);
  const addr = acc.layout.apicBitmapWord(v, APIC_ISR, vecWord(vector));
  const word = acc.readOnce(addr, 'apic:isr-read');
  acc.writeOnce(addr, word & ~(1 << vecPos(vector)), 'apic:isr-clear');
}

/**
 * APICv was (de)activated: irr_pending becomes true either way (with APICv the IRR must always
 * be searched; without it, hardware may still be posting, so KVM searches once more).
 * @kvm arch/x86/kvm/lapic.c kvm_apic_update_apicv
 */
export function kvmApicUpdateApicv(acc: Access, v: VcpuId): void {
  acc.writeOnce(acc.layout.vcpu(v, VCPU.IRR_PENDING), 1, 'apic:irr-pending-set');
}
