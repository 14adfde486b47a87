/**
 * Destination resolution: which APICs an interrupt request addresses.
 *
 * - shorthand self / all-including-self / all-excluding-self ignore the destination field;
 * - physical: dest == APIC ID; 0xFF (xAPIC) or 0xFFFFFFFF (x2APIC) is broadcast;
 * - logical x2APIC (cluster): LDR = cluster (id >> 4) in 31:16 | bit (id & 0xF) in 15:0;
 *   match when the clusters are equal and the bitmaps intersect;
 * - logical xAPIC: 8-bit logical ID in LDR[31:24], flat (DFR 0xFFFFFFFF: bitmaps intersect) or
 *   cluster (DFR 0x0FFFFFFF: high nibbles equal, low nibbles intersect). Needs the guest-written
 *   LDR/DFR, so it requires an {@link Access}.
 *
 * All APICs of the machine are taken to be in the same mode (`x2apic`). For lowest-priority
 * delivery the caller picks one of the matches ({@link kvmVectorToIndex}).
 */
import type { Access } from '../mem/access.js';
import type { VcpuId } from '../mem/layout.js';
import { APIC_DFR, APIC_ID, APIC_LDR } from '../mem/apicdef.js';
import { EmuError } from '../errors.js';
import { APIC_BROADCAST, APIC_DFR_CLUSTER, APIC_DFR_FLAT, X2APIC_BROADCAST } from './apic-bits.js';
import type { DestMode, LapicIrq, Shorthand } from './icr.js';
import { kvmApicCalcX2apicLdr, kvmApicHwEnabled, kvmLapicGetReg } from './regs.js';

function isBroadcast(mda: number, x2apic: boolean): boolean {
  return mda >>> 0 === (x2apic ? X2APIC_BROADCAST : APIC_BROADCAST);
}

/** The target's APIC ID: the ID register with an Access, else the vCPU index (KVM default). */
function apicId(acc: Access | undefined, target: VcpuId, x2apic: boolean): number {
  if (acc === undefined) return target;
  const id = kvmLapicGetReg(acc, target, APIC_ID, 'apic:id-read');
  return x2apic ? id : id >>> 24;
}

/** Physical destination match. @kvm arch/x86/kvm/lapic.c kvm_apic_match_physical_addr */
export function kvmApicMatchPhysicalAddr(acc: Access | undefined, target: VcpuId, mda: number, x2apic: boolean): boolean {
  if (isBroadcast(mda, x2apic)) return true;
  return mda >>> 0 === apicId(acc, target, x2apic);
}

/**
 * Logical destination match. Without an Access the x2APIC LDR is derived from the vCPU index;
 * xAPIC logical mode then throws EMU_ERR_BAD_PARAM (its LDR/DFR are guest-programmed).
 * @kvm arch/x86/kvm/lapic.c kvm_apic_match_logical_addr
 */
export function kvmApicMatchLogicalAddr(acc: Access | undefined, target: VcpuId, mda: number, x2apic: boolean): boolean {
  if (isBroadcast(mda, x2apic)) return true;
  if (x2apic) {
    const ldr = acc === undefined ? kvmApicCalcX2apicLdr(target) : kvmLapicGetReg(acc, target, APIC_LDR, 'apic:ldr-read');
    return ldr >>> 16 === mda >>> 16 && (ldr & mda & 0xffff) !== 0;
  }
  if (acc === undefined) {
    throw new EmuError('EMU_ERR_BAD_PARAM', 'invalid acc: xAPIC logical destinations need an Access to read LDR/DFR', { detail: { param: 'acc' } });
  }
  const logicalId = kvmLapicGetReg(acc, target, APIC_LDR, 'apic:ldr-read') >>> 24;
  switch (kvmLapicGetReg(acc, target, APIC_DFR, 'apic:dfr-read')) {
    case APIC_DFR_FLAT:
      return (logicalId & mda) !== 0;
    case APIC_DFR_CLUSTER:
      return logicalId >>> 4 === mda >>> 4 && (logicalId & mda & 0xf) !== 0;
    default:
      return false;
  }
}

/**
 * Does the request from `source` (-1: not an IPI) address `target`?
 * @kvm arch/x86/kvm/lapic.c kvm_apic_match_dest
 */
export function kvmApicMatchDest(
  acc: Access | undefined,
  target: VcpuId,
  source: VcpuId,
  shorthand: Shorthand,
  dest: number,
  destMode: DestMode,
  x2apic: boolean,
): boolean {
  switch (shorthand) {
    case 'none':
      return destMode === 'physical' ? kvmApicMatchPhysicalAddr(acc, target, dest, x2apic) : kvmApicMatchLogicalAddr(acc, target, dest, x2apic);
    case 'self':
      return target === source;
    case 'all-including-self':
      return true;
    case 'all-excluding-self':
      return target !== source;
  }
}

/**
 * Target vCPUs (ascending) of a request sent by `sourceVcpu` among vCPUs 0..nrVcpus-1. With an
 * Access, IDs/LDR/DFR are read from the APIC pages and hardware-disabled APICs are skipped
 * (KVM: !kvm_apic_present); without one, APIC ID = vCPU index and x2APIC LDRs are derived.
 * @kvm arch/x86/kvm/lapic.c kvm_irq_delivery_to_apic (slow path over kvm_apic_match_dest)
 */
export function apicDestinations(
  acc: Access | undefined,
  sourceVcpu: VcpuId,
  icr: Pick<LapicIrq, 'shorthand' | 'dest' | 'destMode'>,
  nrVcpus: number,
  x2apic: boolean,
): number[] {
  const out: number[] = [];
  for (let t = 0; t < nrVcpus; t++) {
    if (acc !== undefined && !kvmApicHwEnabled(acc, t)) continue;
    if (kvmApicMatchDest(acc, t, sourceVcpu, icr.shorthand, icr.dest, icr.destMode, x2apic)) out.push(t);
  }
  return out;
}

/**
 * Lowest-priority arbitration by vector hashing: the (vector mod n)-th of the n candidates
 * (ascending vCPU order, as KVM walks its destination bitmap); -1 if there are none.
 * @kvm arch/x86/kvm/lapic.c kvm_vector_to_index
 */
export function kvmVectorToIndex(vector: number, targets: readonly number[]): number {
  if (targets.length === 0) return -1;
  return targets[vector % targets.length]!;
}
