/**
 * Processor priority (PPR), the TPR and "is an interrupt deliverable".
 *
 *     PPR = TPR            if TPR[7:4] >= ISRV[7:4]
 *           ISRV & 0xF0    otherwise            (ISRV = highest in-service vector, 0 if none)
 *
 * A vector v is deliverable when (v & 0xF0) > PPR, i.e. its priority class is above PPR's.
 */
import type { Access } from '../mem/access.js';
import type { VcpuId } from '../mem/layout.js';
import { APIC_PROCPRI, APIC_TASKPRI } from '../mem/apicdef.js';
import { apicFindHighestIrr, apicFindHighestIsr } from './irr-isr.js';
import { kvmApicHwEnabled, kvmApicSwEnabled, kvmLapicGetReg, kvmLapicSetReg } from './regs.js';

/**
 * PPR from TPR and the highest in-service vector (`isrv` < 0 means none). Pure.
 * @kvm arch/x86/kvm/lapic.c __apic_update_ppr
 */
export function computePpr(tpr: number, isrv: number): number {
  const isr = isrv < 0 ? 0 : isrv;
  return (tpr & 0xf0) >= (isr & 0xf0) ? tpr & 0xff : isr & 0xf0;
}

/** Result of a PPR recomputation. @kvm arch/x86/kvm/lapic.c __apic_update_ppr (new_ppr, return value) */
export interface PprUpdate {
  /** The new PPR. */
  ppr: number;
  /** PPR went down: a pending IRR vector may have become deliverable. */
  lowered: boolean;
}

/**
 * Recompute PPR from TPR and ISR; write APIC_PROCPRI only if it changed.
 * @kvm arch/x86/kvm/lapic.c __apic_update_ppr
 */
export function apicUpdatePprRaw(acc: Access, v: VcpuId): PprUpdate {
  const oldPpr = kvmLapicGetReg(acc, v, APIC_PROCPRI, 'apic:ppr-read');
  const tpr = kvmLapicGetReg(acc, v, APIC_TASKPRI, 'apic:tpr-read');
  const ppr = computePpr(tpr, apicFindHighestIsr(acc, v));
  if (ppr !== oldPpr) kvmLapicSetReg(acc, v, APIC_PROCPRI, ppr, 'apic:ppr-write');
  return { ppr, lowered: ppr < oldPpr };
}

/**
 * Recompute and store PPR; returns it. KVM additionally raises KVM_REQ_EVENT when PPR dropped
 * and an IRR vector became deliverable: see {@link apicSetTpr} for that signal.
 * @kvm arch/x86/kvm/lapic.c apic_update_ppr
 */
export function apicUpdatePpr(acc: Access, v: VcpuId): number {
  return apicUpdatePprRaw(acc, v).ppr;
}

/**
 * Highest IRR vector whose class is above `ppr` ((vec & 0xF0) > ppr, which equals comparing
 * classes), else -1. With APICv the vendor's sync_pir_to_irr must have run first (caller).
 * @kvm arch/x86/kvm/lapic.c apic_has_interrupt_for_ppr
 */
export function apicHasInterruptForPpr(acc: Access, v: VcpuId, ppr: number): number {
  const highestIrr = apicFindHighestIrr(acc, v);
  if (highestIrr === -1 || (highestIrr & 0xf0) <= (ppr & 0xff)) return -1;
  return highestIrr;
}

/**
 * The vector the APIC would deliver now, or -1. Recomputes PPR first, as KVM does. Returns -1
 * when the APIC is hardware-disabled (KVM: !kvm_apic_present) or software-disabled (SPIV bit 8
 * clear; KVM relies on acceptance having dropped such interrupts, hvemu also refuses to deliver
 * vectors left in IRR across a software disable).
 * @kvm arch/x86/kvm/lapic.c kvm_apic_has_interrupt
 */
export function kvmApicHasInterrupt(acc: Access, v: VcpuId): number {
  if (!kvmApicHwEnabled(acc, v) || !kvmApicSwEnabled(acc, v)) return -1;
  const { ppr } = apicUpdatePprRaw(acc, v);
  return apicHasInterruptForPpr(acc, v, ppr);
}

/** Result of a TPR write. @kvm arch/x86/kvm/lapic.c apic_update_ppr (KVM_REQ_EVENT) */
export interface TprUpdate extends PprUpdate {
  /** KVM would make KVM_REQ_EVENT: PPR dropped and an IRR vector is now deliverable. */
  needEvent: boolean;
}

/**
 * Write TPR (bits 7:0) and recompute PPR.
 * @kvm arch/x86/kvm/lapic.c apic_set_tpr
 */
export function apicSetTpr(acc: Access, v: VcpuId, tpr: number): TprUpdate {
  kvmLapicSetReg(acc, v, APIC_TASKPRI, tpr & 0xff, 'apic:tpr-write');
  const upd = apicUpdatePprRaw(acc, v);
  const needEvent = upd.lowered && apicHasInterruptForPpr(acc, v, upd.ppr) !== -1;
  return { ...upd, needEvent };
}
