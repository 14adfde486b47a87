/**
 * KVM's generic (lapic.c) merge of a posted-interrupt request bitmap into the vIRR, used by
 * KVM's sync_pir_to_irr and modelled the same way for the CPU's posted-interrupt processing
 * (SDM 29.6 "VIRR |= PIR; PIR = 0", which the CPU does without a lock visible to software).
 */
import { PID, VCPU, type Addr, type VcpuId } from '../mem/layout.js';
import { APIC_IRR } from '../mem/apicdef.js';
import type { Access } from '../mem/access.js';
import { EV } from '../trace/events.js';
import type { KvmCtx } from './x86-ops.js';

/**
 * Harvest the PIR into a vIRR-like bitmap: read every word, xchg(word, 0) only for non-zero ones,
 * then OR into the destination with cmpxchg (the vIRR can be written concurrently).
 * Calls `onBits(wordIndex, pirBits, prevIrrBits)` per non-zero word; returns the highest vIRR
 * vector after the merge (-1 if none) and whether the highest vector came from the PIR.
 * @kvm arch/x86/kvm/lapic.c __kvm_apic_update_irr
 */
export function kvmApicUpdateIrrRaw(
  acc: Access,
  v: VcpuId,
  irrWord: (i: number) => Addr,
  onBits: (i: number, pir: number, prevIrr: number) => void,
): { maxIrr: number; gotNewMax: boolean } {
  let maxIrr = -1;
  let maxUpdated = -1;
  for (let i = 0, vec = 0; i <= 7; i++, vec += 32) {
    const pIrr = irrWord(i);
    let irr = acc.readOnce(pIrr, 'pi:virr-read');
    const pirAddr = acc.layout.pid(v, PID.PIR, i);
    if (acc.readOnce(pirAddr, 'pi:pir-read') !== 0) {
      const pir = acc.xchg(pirAddr, 0, 'pi:pir-xchg');
      let prev = irr;
      for (;;) {
        irr = prev | pir;
        if (prev === irr) break;
        const found = acc.cmpxchg(pIrr, prev, irr, 'pi:virr-or');
        if (found === prev) break;
        prev = found;
      }
      onBits(i, pir, prev);
      if (prev !== irr) maxUpdated = 31 - Math.clz32(irr ^ prev) + vec;
    }
    if (irr !== 0) maxIrr = 31 - Math.clz32(irr) + vec;
  }
  return { maxIrr, gotNewMax: maxUpdated !== -1 && maxUpdated === maxIrr };
}

/**
 * Move the PIR into the vIRR of vCPU v (counting bits that coalesce with vIRR bits already
 * set). Returns { maxIrr, got } where got = something new was picked up.
 * Used by KVM's sync and by the CPU's posted-interrupt processing.
 * @kvm arch/x86/kvm/lapic.c kvm_apic_update_irr
 */
export function kvmApicUpdateIrr(ctx: KvmCtx, v: VcpuId): { maxIrr: number; got: boolean; pirMax: number } {
  let pirMax = -1;
  let updated = false;
  const r = kvmApicUpdateIrrRaw(
    ctx.acc,
    v,
    (i) => ctx.L.apicBitmapWord(v, APIC_IRR, i),
    (i, pir, prevIrr) => {
      pirMax = 31 - Math.clz32(pir) + i * 32;
      if ((pir & ~prevIrr) !== 0) updated = true;
      let dup = pir & prevIrr;
      while (dup !== 0) {
        const bit = 31 - Math.clz32(dup);
        dup &= ~(1 << bit);
        ctx.stats.countCoalesced(v, i * 32 + bit);
        ctx.trace.emit(EV.COALESCED, v, i * 32 + bit, 3);
      }
    },
  );
  // Without APICv, software injection only scans the IRR when irr_pending says so.
  if (updated && ctx.acc.readOnce(ctx.L.vcpu(v, VCPU.APICV_ACTIVE), 'apicv:active-read') === 0) {
    ctx.acc.writeOnce(ctx.L.vcpu(v, VCPU.IRR_PENDING), 1, 'apic:irr-pending');
  }
  return { maxIrr: r.maxIrr, got: r.gotNewMax, pirMax };
}
