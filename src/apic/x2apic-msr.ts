/**
 * x2APIC MSR access: MSR = 0x800 + (offset >> 4). ICR (0x830) is one 64-bit MSR; every other
 * register is 32 bits wide with bits 63:32 reserved. Refused accesses raise #GP
 * (EmuError 'EMU_ERR_GP', detail { msr }).
 *
 * ICR storage follows VMX (`x2apic_icr_is_split` false): one 64-bit value at APIC_ICR, i.e.
 * destination in the word at APIC_ICR + 4.
 */
import type { Access } from '../mem/access.js';
import type { VcpuId } from '../mem/layout.js';
import { APIC_BASE_MSR, APIC_ICR } from '../mem/apicdef.js';
import { EmuError } from '../errors.js';
import { APIC_ICR_BUSY, X2APIC_ICR_RESERVED_BITS_LO } from './apic-bits.js';
import { decodeIcr } from './icr.js';
import { kvmLapicRegRead } from './reg-read.js';
import { type ApicWriteResult, kvmLapicRegWrite } from './reg-write.js';
import { apicX2apicMode, kvmApicHwEnabled, kvmLapicGetReg, kvmLapicSetReg } from './regs.js';

/** Last MSR of the x2APIC range. @kvm arch/x86/kvm/x86.c kvm_set_msr_common (APIC_BASE_MSR ... APIC_BASE_MSR + 0xff) */
export const X2APIC_MSR_LAST = APIC_BASE_MSR + 0xff;

/** Outcome of a successful x2APIC MSR write (refusals throw #GP). @kvm arch/x86/kvm/lapic.c kvm_x2apic_msr_write */
export type X2apicWriteResult = Exclude<ApicWriteResult, { kind: 'invalid' }>;

/** APIC register offset of x2APIC MSR `msr` (0x800..0x8FF). @kvm arch/x86/kvm/lapic.c kvm_x2apic_msr_write (reg = (msr - APIC_BASE_MSR) << 4) */
export function x2apicMsrToOffset(msr: number): number {
  if (!Number.isInteger(msr) || msr < APIC_BASE_MSR || msr > X2APIC_MSR_LAST) {
    throw new EmuError('EMU_ERR_BAD_PARAM', `invalid msr: 0x${msr.toString(16)} is outside the x2APIC range 0x800..0x8ff`, { detail: { param: 'msr', msr } });
  }
  return (msr - APIC_BASE_MSR) << 4;
}

/** x2APIC MSR of the register at `offset` (16-byte aligned, 0..0xFF0). @kvm arch/x86/include/asm/apicdef.h APIC_BASE_MSR */
export function offsetToX2apicMsr(offset: number): number {
  if (!Number.isInteger(offset) || offset < 0 || offset > 0xff0 || (offset & 0xf) !== 0) {
    throw new EmuError('EMU_ERR_BAD_PARAM', `invalid offset: 0x${offset.toString(16)} is not a 16-byte aligned APIC register offset`, { detail: { param: 'offset', offset } });
  }
  return APIC_BASE_MSR + (offset >> 4);
}

function gp(acc: Access, op: 'rdmsr' | 'wrmsr', msr: number, reason: string): EmuError {
  return new EmuError('EMU_ERR_GP', `${acc.name}: ${op} 0x${msr.toString(16)}: #GP (${reason})`, { actor: acc.name, detail: { msr, reason } });
}

function checkX2apicMode(acc: Access, v: VcpuId, op: 'rdmsr' | 'wrmsr', msr: number): void {
  if (!kvmApicHwEnabled(acc, v) || !apicX2apicMode(acc, v)) throw gp(acc, op, msr, 'the APIC is not in x2APIC mode');
}

/**
 * WRMSR to an x2APIC register: `lo` = EAX (bits 31:0), `hi` = EDX (bits 63:32).
 * ICR: reserved bits 31:20, 17:16, 13 -> #GP; busy cleared; stored; returns the IPI to send.
 * Others: `hi` != 0 -> #GP, then {@link kvmLapicRegWrite}; a refused write -> #GP.
 * @kvm arch/x86/kvm/lapic.c kvm_x2apic_msr_write / kvm_lapic_msr_write / kvm_x2apic_icr_write
 */
export function kvmX2apicMsrWrite(acc: Access, v: VcpuId, msr: number, lo: number, hi: number): X2apicWriteResult {
  const offset = x2apicMsrToOffset(msr);
  checkX2apicMode(acc, v, 'wrmsr', msr);
  if (offset === APIC_ICR) {
    if ((lo & X2APIC_ICR_RESERVED_BITS_LO) !== 0) throw gp(acc, 'wrmsr', msr, 'ICR reserved bits (31:20, 17:16, 13) set');
    const icrLo = (lo & ~APIC_ICR_BUSY) >>> 0;
    const icr = decodeIcr(icrLo, hi, true);
    kvmLapicSetReg(acc, v, APIC_ICR, icrLo, 'apic:icr-write');
    kvmLapicSetReg(acc, v, APIC_ICR + 4, hi, 'apic:icr-write');
    return { kind: 'ipi', icr };
  }
  if (hi !== 0) throw gp(acc, 'wrmsr', msr, 'bits 63:32 are reserved');
  const r = kvmLapicRegWrite(acc, v, offset, lo);
  if (r.kind === 'invalid') throw gp(acc, 'wrmsr', msr, r.reason);
  return r;
}

/**
 * RDMSR of an x2APIC register: ICR returns all 64 bits; write-only (EOI, SELF_IPI) and absent
 * (APR, DFR, ICR2, reserved) registers -> #GP.
 * @kvm arch/x86/kvm/lapic.c kvm_x2apic_msr_read / kvm_lapic_msr_read
 */
export function kvmX2apicMsrRead(acc: Access, v: VcpuId, msr: number): { lo: number; hi: number } {
  const offset = x2apicMsrToOffset(msr);
  checkX2apicMode(acc, v, 'rdmsr', msr);
  if (offset === APIC_ICR) {
    return { lo: kvmLapicGetReg(acc, v, APIC_ICR, 'apic:icr-read'), hi: kvmLapicGetReg(acc, v, APIC_ICR + 4, 'apic:icr-read') };
  }
  const lo = kvmLapicRegRead(acc, v, offset);
  if (lo === undefined) throw gp(acc, 'rdmsr', msr, 'register is write-only or absent in x2APIC mode');
  return { lo, hi: 0 };
}
