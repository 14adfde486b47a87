/**
 * Posted-interrupt posting by hardware: what the IOMMU does for an interrupt-remapping entry in
 * posted mode (Intel VT-d spec 5.2.3) and what the CPU does for a guest ICR write under IPI
 * virtualization (Intel SDM vol. 3C, "IPI Virtualization"). Both post into the target vCPU's
 * descriptor the same way, and neither looks at vcpu->mode or takes any lock of KVM's:
 *
 *   PIR[vector] = 1                                              (atomic)
 *   one atomic update of the control word:
 *     ON == 0 && SN == 0 -> ON = 1, then send NV (as read in that same update) to NDST
 *     otherwise          -> nothing more (a notification is outstanding, or suppressed)
 *
 * KVM's software sender (kvm/vmx/posted-intr.ts __vmx_deliver_posted_interrupt) differs: it
 * ignores SN, reads vcpu->mode and sends POSTED_INTR_VECTOR to vcpu->cpu, or wakes the vCPU.
 * Hardware uses NV and NDST, which is why a blocked vCPU's descriptor carries the wakeup
 * vector (vmx_vcpu_pi_put) and KVM re-checks ON after switching NV (pi_enable_wakeup_handler).
 */
import { PID, type VcpuId } from '../../mem/layout.js';
import { apicSendIpiHost } from '../../kvm/kick.js';
import { apicDestinations, decodeIcr } from '../../apic/index.js';
import { EV } from '../../trace/events.js';
import type { KvmCtx } from '../../kvm/x86-ops.js';
import { POSTED_INTR_ON, POSTED_INTR_SN, piNv, piTestAndSetPir } from './pi-desc.js';

/**
 * Post `vector` to vCPU v's descriptor as posting hardware does; returns false if the vector
 * coalesced with one already in the PIR (the notification logic runs all the same).
 * @sdm Intel VT-d spec 5.2.3 "Interrupt-Posting Hardware Operation"; SDM vol. 3C "IPI Virtualization"
 */
export function piHwPost(ctx: KvmCtx, v: VcpuId, vector: number): boolean {
  const { acc, L } = ctx;
  const fresh = !piTestAndSetPir(acc, v, vector, 'pi:hw-pir-set');
  const control = L.pid(v, PID.CONTROL);
  let c = acc.readOnce(control, 'pi:hw-control-read');
  for (;;) {
    if ((c & ((1 << POSTED_INTR_ON) | (1 << POSTED_INTR_SN))) !== 0) return fresh;
    const found = acc.cmpxchg(control, c, c | (1 << POSTED_INTR_ON), 'pi:hw-on-set');
    if (found === c) break;
    c = found;
  }
  ctx.trace.emit(EV.ON_SET, v, vector);
  // The notification goes to NDST with the NV of the control word ON was set in.
  apicSendIpiHost(ctx, acc.readOnce(L.pid(v, PID.NDST), 'pi:hw-ndst-read'), piNv(c));
  return fresh;
}

/**
 * An assigned device's MSI through an interrupt-remapping entry in posted mode: the IOMMU posts
 * to the vCPU's descriptor whatever the vCPU's APICv state (KVM does not rewrite IRTEs when
 * APICv is inhibited). Returns false if the vector coalesced.
 * @sdm Intel VT-d spec 5.2.3 "Interrupt-Posting Hardware Operation"
 */
export function vtdPostInterrupt(ctx: KvmCtx, v: VcpuId, vector: number): boolean {
  return piHwPost(ctx, v, vector);
}

/** x2APIC ICR MSR. */
const MSR_X2APIC_ICR = 0x830;

/**
 * A guest WRMSR to the x2APIC ICR with IPI virtualization on: a fixed, physical-destination,
 * no-shorthand IPI with a legal vector to an APIC ID the PID-pointer table covers (APIC ID ==
 * vCPU index here) is posted by the CPU without a VM-exit; returns false for any other write,
 * which exits to KVM (APIC-write VM-exit) as without IPIv. Counts what it sends.
 * @sdm Intel SDM vol. 3C "IPI Virtualization" (virtualizing a write to the ICR)
 */
export function vmxIpivIcrWrite(ctx: KvmCtx, v: VcpuId, msr: number, lo: number, hi: number): boolean {
  if (msr !== MSR_X2APIC_ICR) return false;
  const icr = decodeIcr(lo, hi, true);
  if (icr.deliveryMode !== 'fixed' || icr.destMode !== 'physical' || icr.shorthand !== 'none' || icr.vector < 16) return false;
  // Reserved ICR bits (31:20, 17:16, 13) take the APIC-write exit; so does a destination the
  // PID-pointer table does not cover.
  if ((lo & 0xfff32000) !== 0 || icr.dest >= ctx.nrVcpus) return false;
  for (const t of apicDestinations(ctx.acc, v, icr, ctx.nrVcpus, true)) {
    ctx.stats.countSent(t, icr.vector);
    ctx.trace.emit(EV.IPI_SENT, t, icr.vector);
    if (piHwPost(ctx, t, icr.vector)) {
      ctx.trace.emit(EV.PIR_SET, t, icr.vector);
    } else {
      ctx.stats.countCoalesced(t, icr.vector);
      ctx.trace.emit(EV.COALESCED, t, icr.vector, 1);
    }
  }
  ctx.stats.count('ipivPosts');
  return true;
}
