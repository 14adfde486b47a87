/**
 * Interrupt acknowledge on the software-injection path: the vector moves from IRR to ISR and
 * PPR rises to its class. The vector is then injected through VM-entry event injection.
 */
import type { Access } from '../mem/access.js';
import type { VcpuId } from '../mem/layout.js';
import { apicClearIrr, apicSetIsr } from './irr-isr.js';
import { apicUpdatePprRaw } from './ppr.js';
import { checkVector } from './regs.js';

/**
 * Acknowledge `vector` (the one {@link kvmApicHasInterrupt} returned): clear IRR[vector], set
 * ISR[vector], recompute PPR (which becomes vector & 0xF0). Hyper-V SynIC auto-EOI is not modelled.
 * @kvm arch/x86/kvm/lapic.c kvm_apic_ack_interrupt
 */
export function kvmApicAckInterrupt(acc: Access, v: VcpuId, vector: number): void {
  checkVector(vector);
  apicClearIrr(acc, v, vector);
  apicSetIsr(acc, v, vector);
  apicUpdatePprRaw(acc, v);
}
