/**
 * Guest reads of APIC registers: which offsets are readable in which mode, and the registers
 * whose value is derived on read (PPR is recomputed, APR reads as 0).
 */
import type { Access } from '../mem/access.js';
import type { VcpuId } from '../mem/layout.js';
import {
  APIC_ARBPRI,
  APIC_DFR,
  APIC_ESR,
  APIC_ICR,
  APIC_ICR2,
  APIC_ID,
  APIC_IRR,
  APIC_ISR,
  APIC_LDR,
  APIC_LVR,
  APIC_PROCPRI,
  APIC_SPIV,
  APIC_TASKPRI,
  APIC_TDCR,
  APIC_TMCCT,
  APIC_TMICT,
  APIC_TMR,
  APIC_VECTOR_STRIDE_BYTES,
} from '../mem/apicdef.js';
import { apicUpdatePpr } from './ppr.js';
import { APIC_LVTS, apicX2apicMode, kvmLapicGetReg } from './regs.js';

const BITMAP_BYTES = 8 * APIC_VECTOR_STRIDE_BYTES;

function inBitmap(offset: number, base: number): boolean {
  return offset >= base && offset < base + BITMAP_BYTES;
}

/**
 * Is the register at `offset` readable? Write-only (EOI, SELF_IPI) and reserved offsets are
 * not; APR, DFR and ICR2 exist only in xAPIC mode.
 * @kvm arch/x86/kvm/lapic.c kvm_lapic_readable_reg_mask
 */
export function kvmLapicRegReadable(offset: number, x2apic: boolean): boolean {
  if ((offset & 0xf) !== 0 || offset < 0 || offset > 0x3f0) return false;
  switch (offset) {
    case APIC_ID:
    case APIC_LVR:
    case APIC_TASKPRI:
    case APIC_PROCPRI:
    case APIC_LDR:
    case APIC_SPIV:
    case APIC_ESR:
    case APIC_ICR:
    case APIC_TMICT:
    case APIC_TMCCT:
    case APIC_TDCR:
      return true;
    case APIC_ARBPRI:
    case APIC_DFR:
    case APIC_ICR2:
      return !x2apic;
    default:
      return APIC_LVTS.includes(offset) || inBitmap(offset, APIC_ISR) || inBitmap(offset, APIC_TMR) || inBitmap(offset, APIC_IRR);
  }
}

/**
 * Read the 32-bit register at `offset` (unsigned), or undefined if it is not readable in the
 * APIC's current mode (KVM returns 1: the x2APIC MSR path turns that into #GP). TMCCT returns
 * the stored value (the timer is not modelled here).
 * @kvm arch/x86/kvm/lapic.c kvm_lapic_reg_read / __apic_read
 */
export function kvmLapicRegRead(acc: Access, v: VcpuId, offset: number): number | undefined {
  if (!kvmLapicRegReadable(offset, apicX2apicMode(acc, v))) return undefined;
  switch (offset) {
    case APIC_ARBPRI:
      // SDM: APR is not supported on P6 and later; KVM reads it as 0.
      return 0;
    case APIC_PROCPRI:
      return apicUpdatePpr(acc, v);
    default:
      return kvmLapicGetReg(acc, v, offset, 'apic:reg-read');
  }
}
