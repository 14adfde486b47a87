/**
 * Register accessors of one vCPU's APIC page and the APIC_BASE mode bits.
 *
 * Registers are 32-bit words at architectural offsets; the access layer stores them as signed
 * 32-bit integers, so every getter returns the unsigned value (`>>> 0`). Addresses come only
 * from the layout ({@link Layout.apicReg}, {@link Layout.apicBitmapWord}).
 */
import type { Access, RacePoint } from '../mem/access.js';
import type { VcpuId } from '../mem/layout.js';
import { VCPU, vecPos, vecWord } from '../mem/layout.js';
import {
  APIC_LVT0,
  APIC_LVT1,
  APIC_LVTCMCI,
  APIC_LVTERR,
  APIC_LVTPC,
  APIC_LVTT,
  APIC_LVTTHMR,
  APIC_SPIV,
  APIC_SPIV_APIC_ENABLED,
  MSR_IA32_APICBASE_ENABLE,
  X2APIC_ENABLE,
} from '../mem/apicdef.js';
import { EmuError } from '../errors.js';
import { MAX_APIC_VECTOR } from './apic-bits.js';

/**
 * The LVT registers in KVM's index order (LVT_TIMER .. LVT_CMCI); KVM exposes all seven.
 * @kvm arch/x86/kvm/lapic.h APIC_LVTx
 */
export const APIC_LVTS: readonly number[] = [APIC_LVTT, APIC_LVTTHMR, APIC_LVTPC, APIC_LVT0, APIC_LVT1, APIC_LVTERR, APIC_LVTCMCI];

/** Read a register (unsigned). @kvm arch/x86/kvm/lapic.h kvm_lapic_get_reg */
export function kvmLapicGetReg(acc: Access, v: VcpuId, offset: number, label: RacePoint): number {
  return acc.readOnce(acc.layout.apicReg(v, offset), label) >>> 0;
}

/** Write a register (WRITE_ONCE). @kvm arch/x86/kvm/lapic.h kvm_lapic_set_reg */
export function kvmLapicSetReg(acc: Access, v: VcpuId, offset: number, val: number, label: RacePoint): void {
  acc.writeOnce(acc.layout.apicReg(v, offset), val | 0, label);
}

/** Throw EMU_ERR_ILLEGAL_VECTOR unless 0 <= vector <= 255. @kvm arch/x86/kvm/lapic.c kvm_apic_ack_interrupt (WARN_ON_ONCE(vector < 0)) */
export function checkVector(vector: number): void {
  if (!Number.isInteger(vector) || vector < 0 || vector >= MAX_APIC_VECTOR) {
    throw new EmuError('EMU_ERR_ILLEGAL_VECTOR', `vector ${vector} is outside 0..255`, { detail: { vector } });
  }
}

/** Is `vector` set in the bitmap at `bitmapOffset` (APIC_IRR/ISR/TMR)? @kvm arch/x86/kvm/lapic.h apic_test_vector */
export function apicTestVector(acc: Access, v: VcpuId, bitmapOffset: number, vector: number, label: RacePoint): boolean {
  const word = acc.readOnce(acc.layout.apicBitmapWord(v, bitmapOffset, vecWord(vector)), label);
  return ((word >>> vecPos(vector)) & 1) !== 0;
}

/** Locked set_bit of `vector` in a bitmap. @kvm arch/x86/kvm/lapic.h apic_set_vector */
export function apicSetVector(acc: Access, v: VcpuId, bitmapOffset: number, vector: number, label: RacePoint): void {
  acc.setBit(acc.layout.apicBitmapWord(v, bitmapOffset, vecWord(vector)), vecPos(vector), label);
}

/** Locked clear_bit of `vector` in a bitmap. @kvm arch/x86/kvm/lapic.c apic_clear_vector */
export function apicClearVector(acc: Access, v: VcpuId, bitmapOffset: number, vector: number, label: RacePoint): void {
  acc.clearBit(acc.layout.apicBitmapWord(v, bitmapOffset, vecWord(vector)), vecPos(vector), label);
}

/** The vCPU's IA32_APIC_BASE (low 32 bits, unsigned). @kvm arch/x86/kvm/lapic.h kvm_lapic_get_base */
export function kvmLapicGetBase(acc: Access, v: VcpuId): number {
  return acc.readOnce(acc.layout.vcpu(v, VCPU.APIC_BASE), 'apic:base-read') >>> 0;
}

/** APIC globally enabled (APIC_BASE.EN). @kvm arch/x86/kvm/lapic.h kvm_apic_hw_enabled */
export function kvmApicHwEnabled(acc: Access, v: VcpuId): boolean {
  return (kvmLapicGetBase(acc, v) & MSR_IA32_APICBASE_ENABLE) !== 0;
}

/** APIC software enabled (SPIV bit 8). @kvm arch/x86/kvm/lapic.h kvm_apic_sw_enabled */
export function kvmApicSwEnabled(acc: Access, v: VcpuId): boolean {
  return (kvmLapicGetReg(acc, v, APIC_SPIV, 'apic:spiv-read') & APIC_SPIV_APIC_ENABLED) !== 0;
}

/** Hardware and software enabled: the APIC accepts fixed interrupts. @kvm arch/x86/kvm/lapic.h apic_enabled */
export function apicEnabled(acc: Access, v: VcpuId): boolean {
  return kvmApicHwEnabled(acc, v) && kvmApicSwEnabled(acc, v);
}

/** The vCPU's APIC is in x2APIC mode (APIC_BASE.EXTD). @kvm arch/x86/kvm/lapic.h apic_x2apic_mode */
export function apicX2apicMode(acc: Access, v: VcpuId): boolean {
  return (kvmLapicGetBase(acc, v) & X2APIC_ENABLE) !== 0;
}

/**
 * The x2APIC logical ID derived from the x2APIC ID: cluster (id >> 4) in 31:16, one bit
 * (1 << (id & 0xF)) in 15:0. @kvm arch/x86/kvm/lapic.h kvm_apic_calc_x2apic_ldr
 */
export function kvmApicCalcX2apicLdr(id: number): number {
  return (((id >>> 4) << 16) | (1 << (id & 0xf))) >>> 0;
}
