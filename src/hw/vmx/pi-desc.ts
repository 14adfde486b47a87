/**
 * Posted-interrupt descriptor accessors (arch/x86/include/asm/posted_intr.h).
 *
 *   bytes 0-31   PIR: 256 bits, bit v = vector v (8 x u32 here)
 *   bytes 32-35  control low:  0 ON | 1 SN | 23:16 NV
 *   bytes 36-39  control high: NDST (destination APIC ID)
 *   bytes 40-63  reserved
 *
 * The kernel updates the 64-bit control field with locked ops / cmpxchg64; ON, SN and NV all
 * live in its low 32 bits, so 32-bit locked ops on the low word are equivalent here.
 */
import { PID, vecPos, vecWord, type VcpuId } from '../../mem/layout.js';
import type { Access, RacePoint } from '../../mem/access.js';

/** @kvm arch/x86/include/asm/posted_intr.h POSTED_INTR_ON */
export const POSTED_INTR_ON = 0;
/** @kvm arch/x86/include/asm/posted_intr.h POSTED_INTR_SN */
export const POSTED_INTR_SN = 1;
/** Shift of NV inside the control word. */
export const PI_NV_SHIFT = 16;

/** NV field of a control word value. @kvm arch/x86/include/asm/posted_intr.h struct pi_desc (nv) */
export function piNv(control: number): number {
  return (control >>> PI_NV_SHIFT) & 0xff;
}

/**
 * Set the PIR bit for vector; returns whether it was already set (coalesced).
 * @kvm arch/x86/include/asm/posted_intr.h pi_test_and_set_pir
 */
export function piTestAndSetPir(acc: Access, v: VcpuId, vector: number, label: RacePoint = 'pi:pir-set'): boolean {
  return acc.testAndSetBit(acc.layout.pid(v, PID.PIR, vecWord(vector)), vecPos(vector), label);
}

/**
 * Set ON; returns whether it was already set. A locked op: full fence.
 * @kvm arch/x86/include/asm/posted_intr.h pi_test_and_set_on
 */
export function piTestAndSetOn(acc: Access, v: VcpuId): boolean {
  return acc.testAndSetBit(acc.layout.pid(v, PID.CONTROL), POSTED_INTR_ON, 'pi:on-set');
}

/**
 * Clear ON (locked).
 * @kvm arch/x86/include/asm/posted_intr.h pi_clear_on
 */
export function piClearOn(acc: Access, v: VcpuId): void {
  acc.clearBit(acc.layout.pid(v, PID.CONTROL), POSTED_INTR_ON, 'pi:on-clear');
}

/**
 * Read ON (plain test_bit).
 * @kvm arch/x86/include/asm/posted_intr.h pi_test_on
 */
export function piTestOn(acc: Access, v: VcpuId): boolean {
  return (acc.readOnce(acc.layout.pid(v, PID.CONTROL), 'pi:on-read') & (1 << POSTED_INTR_ON)) !== 0;
}

/**
 * Read SN (plain test_bit).
 * @kvm arch/x86/include/asm/posted_intr.h pi_test_sn
 */
export function piTestSn(acc: Access, v: VcpuId): boolean {
  return (acc.readOnce(acc.layout.pid(v, PID.CONTROL), 'pi:sn-read') & (1 << POSTED_INTR_SN)) !== 0;
}

/**
 * Set SN (locked): posting hardware then sets PIR bits only, no ON, no notification.
 * @kvm arch/x86/include/asm/posted_intr.h pi_set_sn
 */
export function piSetSn(acc: Access, v: VcpuId): void {
  acc.setBit(acc.layout.pid(v, PID.CONTROL), POSTED_INTR_SN, 'pi:sn-set');
}

/**
 * Clear SN (locked); returns whether it was set.
 * @kvm arch/x86/include/asm/posted_intr.h pi_test_and_clear_sn
 */
export function piTestAndClearSn(acc: Access, v: VcpuId): boolean {
  return acc.testAndClearBit(acc.layout.pid(v, PID.CONTROL), POSTED_INTR_SN, 'pi:sn-clear');
}

/**
 * Set ON (locked).
 * @kvm arch/x86/include/asm/posted_intr.h pi_set_on
 */
export function piSetOn(acc: Access, v: VcpuId): void {
  acc.setBit(acc.layout.pid(v, PID.CONTROL), POSTED_INTR_ON, 'pi:on-set');
}

/**
 * Is every PIR word zero?
 * @kvm arch/x86/include/asm/posted_intr.h pi_is_pir_empty
 */
export function piIsPirEmpty(acc: Access, v: VcpuId): boolean {
  for (let i = 0; i < 8; i++) if (acc.readOnce(acc.layout.pid(v, PID.PIR, i), 'pi:pir-read') !== 0) return false;
  return true;
}

/**
 * Initialise a descriptor: PIR empty, ON/SN clear, NV = notification vector, NDST = dest.
 * @kvm arch/x86/kvm/vmx/posted_intr.c vmx_pi_init (and __pi_set_sn/ndst)
 */
export function piInit(acc: Access, v: VcpuId, nv: number, ndst: number): void {
  for (let i = 0; i < 8; i++) acc.writeOnce(acc.layout.pid(v, PID.PIR, i), 0, 'pi:init');
  acc.xchg(acc.layout.pid(v, PID.CONTROL), (nv & 0xff) << PI_NV_SHIFT, 'pi:init');
  acc.xchg(acc.layout.pid(v, PID.NDST), ndst, 'pi:init');
}
