/**
 * Interrupt routing inside KVM: IPIs from an ICR write, and device (MSI-style) interrupts,
 * through acceptance at each destination APIC to the vendor's deliver_interrupt.
 */
import type { VcpuId } from '../mem/layout.js';
import {
  apicDestinations,
  apicX2apicMode,
  decodeIcr,
  kvmApicAcceptIrq,
  kvmVectorToIndex,
  kvmX2apicMsrWrite,
  type AcceptResult,
  type LapicIrq,
} from '../apic/index.js';
import { badParam } from '../errors.js';
import { kvmMakeRequest, KVM_REQ_EVENT } from './requests.js';
import { kvmInjectNmi } from './nmi.js';
import { kvmVcpuKick } from './kick.js';
import { EV } from '../trace/events.js';
import type { KvmCtx } from './x86-ops.js';

/**
 * Accept `irq` at vCPU t: count it as sent when the APIC accepts a fixed interrupt, then hand it
 * to the vendor (posted interrupt or IRR + kick).
 * @kvm arch/x86/kvm/lapic.c kvm_apic_set_irq
 */
export function kvmApicSetIrq(ctx: KvmCtx, t: VcpuId, irq: LapicIrq): AcceptResult {
  const r = kvmApicAcceptIrq(ctx.acc, t, irq, {
    deliverInterrupt(vector, trigger) {
      ctx.stats.countSent(t, vector);
      ctx.trace.emit(EV.IPI_SENT, t, vector);
      ctx.ops.deliverInterrupt(ctx, t, vector, trigger === 'level');
    },
    injectNmi() {
      kvmInjectNmi(ctx, t);
    },
    pendingInit() {
      kvmMakeRequest(ctx.acc, t, KVM_REQ_EVENT);
      kvmVcpuKick(ctx, t);
    },
    pendingSipi() {
      kvmMakeRequest(ctx.acc, t, KVM_REQ_EVENT);
      kvmVcpuKick(ctx, t);
    },
  });
  if (r !== 'delivered') ctx.stats.count(r);
  return r;
}

/**
 * Send the IPI an ICR write describes from vCPU `src` to every matching destination
 * (lowest-priority: one, chosen by vector hashing as KVM does).
 * @kvm arch/x86/kvm/lapic.c kvm_apic_send_ipi
 */
export function kvmApicSendIpi(ctx: KvmCtx, src: VcpuId, irq: LapicIrq): void {
  const dests = apicDestinations(ctx.acc, src, irq, ctx.nrVcpus, apicX2apicMode(ctx.acc, src));
  if (irq.deliveryMode === 'lowest' && dests.length > 1) {
    const i = kvmVectorToIndex(irq.vector, dests);
    if (i >= 0) kvmApicSetIrq(ctx, dests[i]!, irq);
    return;
  }
  for (const t of dests) kvmApicSetIrq(ctx, t, irq);
}

/**
 * A guest WRMSR to an x2APIC register that VM-exited (ICR without IPI virtualization):
 * emulate it, sending the IPI for ICR/SELF_IPI writes. A #GP comes back as EMU_ERR_GP.
 * @kvm arch/x86/kvm/lapic.c kvm_x2apic_msr_write (via handle_fastpath_set_msr_irqoff)
 */
export function kvmX2apicMsrWriteExit(ctx: KvmCtx, v: VcpuId, msr: number, lo: number, hi: number): void {
  const r = kvmX2apicMsrWrite(ctx.acc, v, msr, lo, hi);
  if (r.kind === 'ipi') kvmApicSendIpi(ctx, v, r.icr);
  else if (r.kind === 'eoi' || (r.kind === 'tpr' && r.needEvent)) kvmMakeRequest(ctx.acc, v, KVM_REQ_EVENT);
}

/**
 * Raise a fixed, edge-triggered interrupt at one vCPU from a device (an MSI with physical
 * destination), from whichever thread calls it. Validates the arguments.
 * @kvm arch/x86/kvm/irq_comm.c kvm_set_msi -> kvm_irq_delivery_to_apic
 */
export function kvmIrqDeliveryToApic(ctx: KvmCtx, target: number, vector: number): AcceptResult {
  if (!Number.isInteger(target) || target < 0 || target >= ctx.nrVcpus) throw badParam('target', `${target} (must be a vCPU index in 0..${ctx.nrVcpus - 1})`);
  if (!Number.isInteger(vector) || vector < 16 || vector > 255) throw badParam('vector', `${vector} (must be an integer in 16..255)`);
  return kvmApicSetIrq(ctx, target, decodeIcr(vector, target, true));
}
