/**
 * Architectural local APIC register offsets and bit fields.
 * Defines poached from arch/x86/include/asm/apicdef.h (Intel SDM vol. 3A, 11.4.1 table 11-1).
 * These are offsets inside the 4 KiB APIC page; only {@link ../mem/layout} turns them into
 * machine addresses.
 */

/** @kvm apicdef.h APIC_ID */
export const APIC_ID = 0x20;
/** @kvm apicdef.h APIC_LVR (version register) */
export const APIC_LVR = 0x30;
/** @kvm apicdef.h APIC_TASKPRI (TPR) */
export const APIC_TASKPRI = 0x80;
/** @kvm apicdef.h APIC_ARBPRI (APR, xAPIC only) */
export const APIC_ARBPRI = 0x90;
/** @kvm apicdef.h APIC_PROCPRI (PPR, read-only, derived) */
export const APIC_PROCPRI = 0xa0;
/** @kvm apicdef.h APIC_EOI (write-only) */
export const APIC_EOI = 0xb0;
/** @kvm apicdef.h APIC_RRR */
export const APIC_RRR = 0xc0;
/** @kvm apicdef.h APIC_LDR */
export const APIC_LDR = 0xd0;
/** @kvm apicdef.h APIC_DFR (xAPIC only) */
export const APIC_DFR = 0xe0;
/** @kvm apicdef.h APIC_SPIV: 7:0 spurious vector, 8 APIC software enable, 12 suppress EOI broadcast */
export const APIC_SPIV = 0xf0;
/** @kvm apicdef.h APIC_ISR: 8 words at a 16-byte stride */
export const APIC_ISR = 0x100;
/** @kvm apicdef.h APIC_TMR: 8 words at a 16-byte stride */
export const APIC_TMR = 0x180;
/** @kvm apicdef.h APIC_IRR: 8 words at a 16-byte stride */
export const APIC_IRR = 0x200;
/** @kvm apicdef.h APIC_ESR */
export const APIC_ESR = 0x280;
/** @kvm apicdef.h APIC_LVTCMCI */
export const APIC_LVTCMCI = 0x2f0;
/** @kvm apicdef.h APIC_ICR (low half; writing it sends the IPI) */
export const APIC_ICR = 0x300;
/** @kvm apicdef.h APIC_ICR2 (xAPIC destination in 31:24) */
export const APIC_ICR2 = 0x310;
/** @kvm apicdef.h APIC_LVTT (timer) */
export const APIC_LVTT = 0x320;
/** @kvm apicdef.h APIC_LVTTHMR */
export const APIC_LVTTHMR = 0x330;
/** @kvm apicdef.h APIC_LVTPC */
export const APIC_LVTPC = 0x340;
/** @kvm apicdef.h APIC_LVT0 (LINT0) */
export const APIC_LVT0 = 0x350;
/** @kvm apicdef.h APIC_LVT1 (LINT1) */
export const APIC_LVT1 = 0x360;
/** @kvm apicdef.h APIC_LVTERR */
export const APIC_LVTERR = 0x370;
/** @kvm apicdef.h APIC_TMICT (timer initial count) */
export const APIC_TMICT = 0x380;
/** @kvm apicdef.h APIC_TMCCT (timer current count, read-only) */
export const APIC_TMCCT = 0x390;
/** @kvm apicdef.h APIC_TDCR (timer divide configuration) */
export const APIC_TDCR = 0x3e0;
/** @kvm apicdef.h APIC_SELF_IPI (x2APIC only) */
export const APIC_SELF_IPI = 0x3f0;

/** Size of the APIC register page. */
export const APIC_PAGE_BYTES = 4096;
/** Byte stride between consecutive words of a 256-bit APIC bitmap (ISR/TMR/IRR). */
export const APIC_VECTOR_STRIDE_BYTES = 0x10;

/** SPIV bit 8: APIC software enable. @kvm apicdef.h APIC_SPIV_APIC_ENABLED */
export const APIC_SPIV_APIC_ENABLED = 1 << 8;
/** SPIV bit 12. @kvm apicdef.h APIC_SPIV_DIRECTED_EOI */
export const APIC_SPIV_DIRECTED_EOI = 1 << 12;

/** LVT mask bit. @kvm apicdef.h APIC_LVT_MASKED */
export const APIC_LVT_MASKED = 1 << 16;

/** Version register value KVM reports: 0x14 | (nr_lvt - 1) << 16 with 7 LVTs (incl. CMCI). */
export const APIC_VERSION_KVM = 0x14 | ((7 - 1) << 16);

/** IA32_APIC_BASE MSR index. */
export const MSR_IA32_APICBASE = 0x1b;
/** APIC_BASE bit 8: bootstrap processor. */
export const MSR_IA32_APICBASE_BSP = 1 << 8;
/** APIC_BASE bit 10: x2APIC mode (EXTD). */
export const X2APIC_ENABLE = 1 << 10;
/** APIC_BASE bit 11: APIC global enable (EN). */
export const MSR_IA32_APICBASE_ENABLE = 1 << 11;
/** Default APIC base address. */
export const APIC_DEFAULT_PHYS_BASE = 0xfee00000;

/** First x2APIC MSR; MSR = 0x800 + (offset >> 4). @kvm apicdef.h APIC_BASE_MSR */
export const APIC_BASE_MSR = 0x800;
