/**
 * APIC power-on reset and the guest's software enable.
 */
import type { Access } from '../mem/access.js';
import type { VcpuId } from '../mem/layout.js';
import { VCPU } from '../mem/layout.js';
import {
  APIC_DEFAULT_PHYS_BASE,
  APIC_DFR,
  APIC_ESR,
  APIC_ICR,
  APIC_ICR2,
  APIC_ID,
  APIC_IRR,
  APIC_ISR,
  APIC_LDR,
  APIC_LVR,
  APIC_LVT_MASKED,
  APIC_SPIV,
  APIC_SPIV_APIC_ENABLED,
  APIC_TASKPRI,
  APIC_TDCR,
  APIC_TMCCT,
  APIC_TMICT,
  APIC_TMR,
  APIC_VERSION_KVM,
  MSR_IA32_APICBASE_BSP,
  MSR_IA32_APICBASE_ENABLE,
  X2APIC_ENABLE,
} from '../mem/apicdef.js';
import { APIC_DFR_FLAT, APIC_VECTOR_MASK } from './apic-bits.js';
import { kvmApicUpdateApicv } from './irr-isr.js';
import { apicUpdatePpr } from './ppr.js';
import { kvmLapicRegWrite } from './reg-write.js';
import { APIC_LVTS, kvmApicCalcX2apicLdr, kvmLapicSetReg } from './regs.js';

/** Options of {@link kvmLapicReset}. @kvm arch/x86/kvm/lapic.c kvm_lapic_reset (kvm_vcpu_is_reset_bsp) */
export interface LapicResetOptions {
  /** Come out of reset in x2APIC mode (APIC_BASE.EXTD; host-initiated, as a VMM may set it). */
  x2apic: boolean;
  /** Bootstrap processor (APIC_BASE.BSP). */
  bsp: boolean;
}

/**
 * Power-on reset of vCPU v's APIC: APIC_BASE = 0xFEE00000 | EN (| EXTD) (| BSP); ID = v
 * (x2APIC) or v << 24 (xAPIC); LVR = APIC_VERSION_KVM; every LVT masked (the LINT0 ExtINT
 * quirk for the BSP is not modelled); DFR flat; SPIV 0xFF (software-disabled); TPR, ESR, ICR,
 * TDCR, timer counts 0; IRR/ISR/TMR clear; LDR 0 (xAPIC) or derived (x2APIC); irr_pending set;
 * PPR 0. Run it before the vCPU's actors start.
 * @kvm arch/x86/kvm/lapic.c kvm_lapic_reset
 */
export function kvmLapicReset(acc: Access, v: VcpuId, opts: LapicResetOptions): void {
  const L = 'apic:reset';
  const base = APIC_DEFAULT_PHYS_BASE | MSR_IA32_APICBASE_ENABLE | (opts.x2apic ? X2APIC_ENABLE : 0) | (opts.bsp ? MSR_IA32_APICBASE_BSP : 0);
  acc.writeOnce(acc.layout.vcpu(v, VCPU.APIC_BASE), base | 0, L);
  kvmLapicSetReg(acc, v, APIC_ID, opts.x2apic ? v : v << 24, L);
  kvmLapicSetReg(acc, v, APIC_LVR, APIC_VERSION_KVM, L);
  for (const lvt of APIC_LVTS) kvmLapicSetReg(acc, v, lvt, APIC_LVT_MASKED, L);
  kvmLapicSetReg(acc, v, APIC_DFR, APIC_DFR_FLAT, L);
  kvmLapicSetReg(acc, v, APIC_SPIV, 0xff, L);
  kvmLapicSetReg(acc, v, APIC_TASKPRI, 0, L);
  kvmLapicSetReg(acc, v, APIC_LDR, opts.x2apic ? kvmApicCalcX2apicLdr(v) : 0, L);
  kvmLapicSetReg(acc, v, APIC_ESR, 0, L);
  kvmLapicSetReg(acc, v, APIC_ICR, 0, L);
  // ICR bits 63:32 in x2APIC (VMX layout) / ICR2 in xAPIC.
  kvmLapicSetReg(acc, v, APIC_ICR + 4, 0, L);
  kvmLapicSetReg(acc, v, APIC_ICR2, 0, L);
  kvmLapicSetReg(acc, v, APIC_TDCR, 0, L);
  kvmLapicSetReg(acc, v, APIC_TMICT, 0, L);
  kvmLapicSetReg(acc, v, APIC_TMCCT, 0, L);
  for (let i = 0; i < 8; i++) {
    acc.writeOnce(acc.layout.apicBitmapWord(v, APIC_IRR, i), 0, L);
    acc.writeOnce(acc.layout.apicBitmapWord(v, APIC_ISR, i), 0, L);
    acc.writeOnce(acc.layout.apicBitmapWord(v, APIC_TMR, i), 0, L);
  }
  kvmApicUpdateApicv(acc, v);
  apicUpdatePpr(acc, v);
}

/**
 * Guest side: software-enable the APIC by writing SPIV = APIC_SPIV_APIC_ENABLED | vector.
 * @kvm arch/x86/kvm/lapic.c apic_set_spiv
 */
export function apicSoftwareEnable(acc: Access, v: VcpuId, spuriousVector = 0xff): void {
  kvmLapicRegWrite(acc, v, APIC_SPIV, APIC_SPIV_APIC_ENABLED | (spuriousVector & APIC_VECTOR_MASK));
}
