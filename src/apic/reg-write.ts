/**
 * Guest writes to APIC registers (xAPIC MMIO or, through {@link kvmX2apicMsrWrite}, x2APIC MSRs).
 *
 * A write KVM refuses (its `ret = 1`) comes back as `{ kind: 'invalid' }`: for an xAPIC MMIO
 * write the caller ignores it (KVM does), the x2APIC MSR path turns it into #GP. Side effects
 * that belong to other layers are returned, not performed: the IPI to send, the EOI to forward
 * (KVM_REQ_EVENT, IOAPIC), whether a TPR write needs KVM_REQ_EVENT. The APIC timer is not
 * modelled here: TMICT/LVTT/TDCR writes only store the (masked) value.
 */
import type { Access } from '../mem/access.js';
import type { VcpuId } from '../mem/layout.js';
import {
  APIC_DFR,
  APIC_EOI,
  APIC_ESR,
  APIC_ICR,
  APIC_ICR2,
  APIC_ID,
  APIC_LDR,
  APIC_LVR,
  APIC_LVT0,
  APIC_LVT1,
  APIC_LVTCMCI,
  APIC_LVTERR,
  APIC_LVTPC,
  APIC_LVTT,
  APIC_LVTTHMR,
  APIC_LVT_MASKED,
  APIC_SELF_IPI,
  APIC_SPIV,
  APIC_SPIV_APIC_ENABLED,
  APIC_SPIV_DIRECTED_EOI,
  APIC_TASKPRI,
  APIC_TDCR,
  APIC_TMICT,
} from '../mem/apicdef.js';
import {
  APIC_DEST_SELF,
  APIC_DFR_CLUSTER,
  APIC_ICR_BUSY,
  APIC_LDR_MASK,
  APIC_LVR_DIRECTED_EOI,
  APIC_LVT_TIMER_MASK,
  APIC_LVT_TIMER_TSCDEADLINE,
  APIC_MODE_MASK,
  APIC_TDCR_MASK,
  APIC_VECTOR_MASK,
  LINT_MASK,
  LVT_MASK,
} from './apic-bits.js';
import { type EoiResult, apicSetEoiEx } from './eoi.js';
import { type Icr, decodeIcr } from './icr.js';
import { apicSetTpr } from './ppr.js';
import { APIC_LVTS, apicX2apicMode, kvmApicSwEnabled, kvmLapicGetReg, kvmLapicSetReg } from './regs.js';

/** What a register write asks of the caller. @kvm arch/x86/kvm/lapic.c kvm_lapic_reg_write (side effects, ret) */
export type ApicWriteResult =
  /** ICR or SELF_IPI written: send this IPI (kvm_apic_send_ipi). */
  | { kind: 'ipi'; icr: Icr }
  /** EOI performed: make KVM_REQ_EVENT; forward level-triggered vectors to the IOAPIC. */
  | { kind: 'eoi'; eoi: EoiResult }
  /** TPR written; `needEvent`: make KVM_REQ_EVENT. */
  | { kind: 'tpr'; ppr: number; needEvent: boolean }
  /** Any other register stored (or a write with no effect, e.g. ESR). */
  | { kind: 'reg'; offset: number }
  /** KVM refuses the write (read-only, absent in this mode, reserved bits). */
  | { kind: 'invalid'; offset: number; reason: string };

/** Writable bits of each LVT. @kvm arch/x86/kvm/lapic.c apic_lvt_mask */
function lvtWriteMask(offset: number): number {
  switch (offset) {
    case APIC_LVTT:
      // LVT_MASK plus the timer mode field (TSC-deadline supported).
      return LVT_MASK | APIC_LVT_TIMER_MASK;
    case APIC_LVT0:
    case APIC_LVT1:
      return LINT_MASK;
    case APIC_LVTERR:
      return LVT_MASK;
    default:
      // Thermal, PMC, CMCI.
      return LVT_MASK | APIC_MODE_MASK;
  }
}

function invalid(offset: number, reason: string): ApicWriteResult {
  return { kind: 'invalid', offset, reason };
}

/**
 * SPIV write: store 9:0 (+ bit 12 if directed EOI is exposed); a software disable masks every
 * LVT. @kvm arch/x86/kvm/lapic.c kvm_lapic_reg_write (APIC_SPIV) / apic_set_spiv
 */
function apicWriteSpiv(acc: Access, v: VcpuId, val: number): void {
  let mask = 0x3ff;
  if ((kvmLapicGetReg(acc, v, APIC_LVR, 'apic:lvr-read') & APIC_LVR_DIRECTED_EOI) !== 0) mask |= APIC_SPIV_DIRECTED_EOI;
  kvmLapicSetReg(acc, v, APIC_SPIV, val & mask, 'apic:spiv-write');
  if ((val & APIC_SPIV_APIC_ENABLED) === 0) {
    for (const lvt of APIC_LVTS) {
      kvmLapicSetReg(acc, v, lvt, kvmLapicGetReg(acc, v, lvt, 'apic:lvt-read') | APIC_LVT_MASKED, 'apic:lvt-write');
    }
  }
}

/**
 * Write `val` to the 32-bit register at `offset` of vCPU v's APIC, in the APIC's current mode.
 * @kvm arch/x86/kvm/lapic.c kvm_lapic_reg_write
 */
export function kvmLapicRegWrite(acc: Access, v: VcpuId, offset: number, val: number): ApicWriteResult {
  const x2apic = apicX2apicMode(acc, v);
  const u = val >>> 0;
  switch (offset) {
    case APIC_ID:
      if (x2apic) return invalid(offset, 'the x2APIC ID is read-only');
      kvmLapicSetReg(acc, v, APIC_ID, u & 0xff000000, 'apic:id-write');
      return { kind: 'reg', offset };
    case APIC_TASKPRI: {
      const { ppr, needEvent } = apicSetTpr(acc, v, u & 0xff);
      return { kind: 'tpr', ppr, needEvent };
    }
    case APIC_EOI:
      // SDM 11.12.1.2: in x2APIC mode only 0 may be written (KVM itself accepts any value).
      if (x2apic && u !== 0) return invalid(offset, 'EOI must be written with 0 in x2APIC mode');
      return { kind: 'eoi', eoi: apicSetEoiEx(acc, v) };
    case APIC_LDR:
      if (x2apic) return invalid(offset, 'the x2APIC LDR is read-only');
      kvmLapicSetReg(acc, v, APIC_LDR, u & APIC_LDR_MASK, 'apic:ldr-write');
      return { kind: 'reg', offset };
    case APIC_DFR:
      if (x2apic) return invalid(offset, 'DFR does not exist in x2APIC mode');
      kvmLapicSetReg(acc, v, APIC_DFR, u | APIC_DFR_CLUSTER, 'apic:dfr-write');
      return { kind: 'reg', offset };
    case APIC_SPIV:
      apicWriteSpiv(acc, v, u);
      return { kind: 'reg', offset };
    case APIC_ICR: {
      if (x2apic) return invalid(offset, 'the x2APIC ICR is one 64-bit MSR');
      // No delay here, so the busy bit is always clear.
      const lo = u & ~APIC_ICR_BUSY;
      const icr = decodeIcr(lo, kvmLapicGetReg(acc, v, APIC_ICR2, 'apic:icr2-read'), false);
      kvmLapicSetReg(acc, v, APIC_ICR, lo, 'apic:icr-write');
      return { kind: 'ipi', icr };
    }
    case APIC_ICR2:
      if (x2apic) return invalid(offset, 'ICR2 does not exist in x2APIC mode');
      kvmLapicSetReg(acc, v, APIC_ICR2, u & 0xff000000, 'apic:icr2-write');
      return { kind: 'reg', offset };
    case APIC_LVTT:
    case APIC_LVTTHMR:
    case APIC_LVTPC:
    case APIC_LVT0:
    case APIC_LVT1:
    case APIC_LVTERR:
    case APIC_LVTCMCI: {
      let w = u;
      if (!kvmApicSwEnabled(acc, v)) w |= APIC_LVT_MASKED;
      kvmLapicSetReg(acc, v, offset, w & lvtWriteMask(offset), 'apic:lvt-write');
      return { kind: 'reg', offset };
    }
    case APIC_TMICT:
      // TSC-deadline mode ignores TMICT.
      if ((kvmLapicGetReg(acc, v, APIC_LVTT, 'apic:lvt-read') & APIC_LVT_TIMER_MASK) !== APIC_LVT_TIMER_TSCDEADLINE) {
        kvmLapicSetReg(acc, v, APIC_TMICT, u, 'apic:tmict-write');
      }
      return { kind: 'reg', offset };
    case APIC_TDCR:
      kvmLapicSetReg(acc, v, APIC_TDCR, u & APIC_TDCR_MASK, 'apic:tdcr-write');
      return { kind: 'reg', offset };
    case APIC_ESR:
      // Errors are latched into ESR as they happen (hvemu and KVM): the write changes nothing.
      if (x2apic && u !== 0) return invalid(offset, 'ESR must be written with 0 in x2APIC mode');
      return { kind: 'reg', offset };
    case APIC_SELF_IPI:
      if (!x2apic) return invalid(offset, 'SELF_IPI exists only in x2APIC mode');
      if ((u & ~APIC_VECTOR_MASK) !== 0) return invalid(offset, 'SELF_IPI bits 31:8 are reserved');
      return { kind: 'ipi', icr: decodeIcr(APIC_DEST_SELF | u, 0, true) };
    default:
      return invalid(offset, 'register is read-only or reserved');
  }
}
