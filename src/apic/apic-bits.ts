/**
 * Local APIC bit fields not already in {@link ../mem/apicdef}: ICR fields, ESR bits, LVT fields,
 * DFR models and destination constants. Defines poached from arch/x86/include/asm/apicdef.h and
 * arch/x86/kvm/lapic.{c,h} (Intel SDM vol. 3A, 11.6.1 figure 11-12, 11.5.3 figure 11-9).
 *
 * ICR (low word; the x2APIC MSR 0x830 carries the destination in bits 63:32):
 *
 *     31-20 reserved | 19-18 shorthand | 17-16 reserved | 15 trigger | 14 level (assert)
 *     13 reserved | 12 busy (xAPIC) | 11 dest mode (1 logical) | 10-8 delivery mode | 7-0 vector
 *
 * ICR2 (xAPIC): 31-24 destination.
 */

/** ICR 7:0 and LVT 7:0. @kvm apicdef.h APIC_VECTOR_MASK */
export const APIC_VECTOR_MASK = 0xff;

/** ICR 10:8 delivery mode field. @kvm apicdef.h APIC_MODE_MASK */
export const APIC_MODE_MASK = 0x700;
/** @kvm apicdef.h APIC_DM_FIXED */
export const APIC_DM_FIXED = 0x000;
/** @kvm apicdef.h APIC_DM_LOWEST */
export const APIC_DM_LOWEST = 0x100;
/** @kvm apicdef.h APIC_DM_SMI */
export const APIC_DM_SMI = 0x200;
/** @kvm apicdef.h APIC_DM_REMRD */
export const APIC_DM_REMRD = 0x300;
/** @kvm apicdef.h APIC_DM_NMI */
export const APIC_DM_NMI = 0x400;
/** @kvm apicdef.h APIC_DM_INIT */
export const APIC_DM_INIT = 0x500;
/** @kvm apicdef.h APIC_DM_STARTUP (SIPI) */
export const APIC_DM_STARTUP = 0x600;
/** @kvm apicdef.h APIC_DM_EXTINT */
export const APIC_DM_EXTINT = 0x700;

/** ICR bit 11 clear: physical destination. @kvm apicdef.h APIC_DEST_PHYSICAL */
export const APIC_DEST_PHYSICAL = 0x000;
/** ICR bit 11 set: logical destination. @kvm apicdef.h APIC_DEST_LOGICAL */
export const APIC_DEST_LOGICAL = 0x800;
/** ICR bit 12: delivery status (xAPIC only; KVM always clears it). @kvm apicdef.h APIC_ICR_BUSY */
export const APIC_ICR_BUSY = 0x1000;
/** ICR bit 14: level assert. @kvm apicdef.h APIC_INT_ASSERT */
export const APIC_INT_ASSERT = 0x4000;
/** ICR bit 15: level-triggered. @kvm apicdef.h APIC_INT_LEVELTRIG */
export const APIC_INT_LEVELTRIG = 0x8000;

/** ICR 19:18 shorthand field. @kvm apicdef.h APIC_SHORT_MASK */
export const APIC_SHORT_MASK = 0xc0000;
/** Shorthand 00: use the destination field. @kvm apicdef.h APIC_DEST_NOSHORT */
export const APIC_DEST_NOSHORT = 0x00000;
/** Shorthand 01: self. @kvm apicdef.h APIC_DEST_SELF */
export const APIC_DEST_SELF = 0x40000;
/** Shorthand 10: all including self. @kvm apicdef.h APIC_DEST_ALLINC */
export const APIC_DEST_ALLINC = 0x80000;
/** Shorthand 11: all excluding self. @kvm apicdef.h APIC_DEST_ALLBUT */
export const APIC_DEST_ALLBUT = 0xc0000;

/**
 * Reserved bits of the low half of the x2APIC ICR: 31:20, 17:16, 13 (bits 63:32 are the
 * destination). @kvm arch/x86/kvm/lapic.c X2APIC_ICR_RESERVED_BITS
 */
export const X2APIC_ICR_RESERVED_BITS_LO = 0xfff00000 | 0x30000 | 0x2000;

/** xAPIC broadcast destination. @kvm arch/x86/kvm/lapic.h APIC_BROADCAST */
export const APIC_BROADCAST = 0xff;
/** x2APIC broadcast destination. @kvm arch/x86/kvm/lapic.h X2APIC_BROADCAST */
export const X2APIC_BROADCAST = 0xffffffff;

/** DFR flat model. @kvm apicdef.h APIC_DFR_FLAT */
export const APIC_DFR_FLAT = 0xffffffff;
/** DFR cluster model. @kvm apicdef.h APIC_DFR_CLUSTER */
export const APIC_DFR_CLUSTER = 0x0fffffff;
/** xAPIC LDR: logical ID in 31:24. @kvm apicdef.h APIC_LDR_MASK */
export const APIC_LDR_MASK = 0xff000000;

/** ESR bit 5: send illegal vector. @kvm apicdef.h APIC_ESR_SENDILL */
export const APIC_ESR_SENDILL = 0x20;
/** ESR bit 6: receive illegal vector. @kvm apicdef.h APIC_ESR_RECVILL */
export const APIC_ESR_RECVILL = 0x40;
/** ESR bit 7: illegal register address. @kvm apicdef.h APIC_ESR_ILLREGA */
export const APIC_ESR_ILLREGA = 0x80;

/** LVT bit 12: delivery status. @kvm apicdef.h APIC_SEND_PENDING */
export const APIC_SEND_PENDING = 0x1000;
/** LVT bit 13: input pin polarity. @kvm apicdef.h APIC_INPUT_POLARITY */
export const APIC_INPUT_POLARITY = 0x2000;
/** LVT bit 14: remote IRR. @kvm apicdef.h APIC_LVT_REMOTE_IRR */
export const APIC_LVT_REMOTE_IRR = 0x4000;
/** LVT bit 15: level-triggered. @kvm apicdef.h APIC_LVT_LEVEL_TRIGGER */
export const APIC_LVT_LEVEL_TRIGGER = 0x8000;
/** LVT timer 18:17 mode field. @kvm apicdef.h APIC_LVT_TIMER_MASK */
export const APIC_LVT_TIMER_MASK = 0x60000;
/** LVT timer mode 01: periodic. @kvm apicdef.h APIC_LVT_TIMER_PERIODIC */
export const APIC_LVT_TIMER_PERIODIC = 0x20000;
/** LVT timer mode 10: TSC-deadline. @kvm apicdef.h APIC_LVT_TIMER_TSCDEADLINE */
export const APIC_LVT_TIMER_TSCDEADLINE = 0x40000;

/** Writable bits common to all LVTs. @kvm arch/x86/kvm/lapic.c LVT_MASK */
export const LVT_MASK = (1 << 16) | APIC_SEND_PENDING | APIC_VECTOR_MASK;
/** Writable bits of LINT0/LINT1. @kvm arch/x86/kvm/lapic.c LINT_MASK */
export const LINT_MASK = LVT_MASK | APIC_MODE_MASK | APIC_INPUT_POLARITY | APIC_LVT_REMOTE_IRR | APIC_LVT_LEVEL_TRIGGER;

/** LVR bit 24: directed EOI supported. @kvm apicdef.h APIC_LVR_DIRECTED_EOI */
export const APIC_LVR_DIRECTED_EOI = 1 << 24;

/** Writable bits of TDCR. @kvm arch/x86/kvm/lapic.c kvm_lapic_reg_write (APIC_TDCR: val & 0xb) */
export const APIC_TDCR_MASK = 0xb;

/** Number of vectors; bitmaps are 8 words of 32 bits. @kvm arch/x86/kvm/lapic.h MAX_APIC_VECTOR */
export const MAX_APIC_VECTOR = 256;
/** Vectors per bitmap word. @kvm arch/x86/kvm/lapic.h APIC_VECTORS_PER_REG */
export const APIC_VECTORS_PER_REG = 32;
/** Vectors 0-15 are illegal for fixed and lowest-priority delivery (SDM 11.5.2). @kvm arch/x86/kvm/lapic.c apic_find_highest_irr (ASSERT result >= 16) */
export const APIC_FIRST_LEGAL_VECTOR = 16;
