/**
 * Acceptance of one interrupt request by one target APIC, before the vendor makes it pending.
 *
 * Fixed / lowest-priority, in order:
 *   level-triggered deassert -> ignored
 *   APIC hardware- or software-disabled -> dropped
 *   vector 0-15 -> ESR "receive illegal vector", not delivered (SDM 11.5.3; KVM delivers these)
 *   TMR[vector] := trigger mode, then the vendor hook `deliverInterrupt` (IRR or PIR + kick)
 * NMI / INIT / SIPI go to their callbacks whatever SPIV says (SDM 11.4.7.2).
 */
import type { Access } from '../mem/access.js';
import type { VcpuId } from '../mem/layout.js';
import { APIC_ESR, APIC_TMR } from '../mem/apicdef.js';
import { APIC_ESR_RECVILL, APIC_FIRST_LEGAL_VECTOR } from './apic-bits.js';
import type { DeliveryMode, LapicIrq, TriggerMode } from './icr.js';
import { apicClearVector, apicEnabled, apicSetVector, apicTestVector, checkVector } from './regs.js';

/** Side effects acceptance hands to the KVM / vendor layers. @kvm arch/x86/kvm/lapic.c __apic_accept_irq (deliver_interrupt, kvm_inject_nmi, pending_events) */
export interface AcceptOps {
  /**
   * Make a fixed / lowest-priority vector pending and kick the target.
   * @kvm arch/x86/include/asm/kvm-x86-ops.h deliver_interrupt
   */
  deliverInterrupt(vector: number, trigger: TriggerMode, deliveryMode: DeliveryMode): void;
  /** kvm_inject_nmi + kvm_vcpu_kick. */
  injectNmi(): void;
  /** pending_events = INIT, KVM_REQ_EVENT, kick. */
  pendingInit(): void;
  /** sipi_vector = vector, smp_wmb, set KVM_APIC_SIPI, KVM_REQ_EVENT, kick. */
  pendingSipi(vector: number): void;
}

/**
 * Outcome of {@link kvmApicAcceptIrq}:
 * - 'delivered': accepted (fixed/lowest: handed to `deliverInterrupt`; NMI/INIT/SIPI: callback ran);
 * - 'dropped-disabled': fixed/lowest to a hardware- or software-disabled APIC;
 * - 'illegal-vector': fixed/lowest vector 0-15, ESR.RECVILL set;
 * - 'ignored-deassert': level-triggered deassert (fixed/lowest/INIT);
 * - 'ignored-mode': SMI, remote read and ExtINT, which hvemu does not model.
 * @kvm arch/x86/kvm/lapic.c __apic_accept_irq (result)
 */
export type AcceptResult = 'delivered' | 'dropped-disabled' | 'illegal-vector' | 'ignored-deassert' | 'ignored-mode';

/**
 * Accept `irq` at vCPU v's APIC. Destination matching is done by the caller
 * ({@link apicDestinations}); only delivery mode, vector, level and trigger mode are used here.
 * @kvm arch/x86/kvm/lapic.c __apic_accept_irq
 */
export function kvmApicAcceptIrq(acc: Access, v: VcpuId, irq: LapicIrq, ops: AcceptOps): AcceptResult {
  checkVector(irq.vector);
  const levelTrig = irq.triggerMode === 'level';
  switch (irq.deliveryMode) {
    case 'fixed':
    case 'lowest': {
      if (levelTrig && !irq.level) return 'ignored-deassert';
      if (!apicEnabled(acc, v)) return 'dropped-disabled';
      if (irq.vector < APIC_FIRST_LEGAL_VECTOR) {
        acc.atomicOr(acc.layout.apicReg(v, APIC_ESR), APIC_ESR_RECVILL, 'apic:esr-set');
        return 'illegal-vector';
      }
      if (apicTestVector(acc, v, APIC_TMR, irq.vector, 'apic:tmr-read') !== levelTrig) {
        if (levelTrig) apicSetVector(acc, v, APIC_TMR, irq.vector, 'apic:tmr-set');
        else apicClearVector(acc, v, APIC_TMR, irq.vector, 'apic:tmr-clear');
      }
      ops.deliverInterrupt(irq.vector, irq.triggerMode, irq.deliveryMode);
      return 'delivered';
    }
    case 'nmi':
      ops.injectNmi();
      return 'delivered';
    case 'init':
      if (levelTrig && !irq.level) return 'ignored-deassert';
      ops.pendingInit();
      return 'delivered';
    case 'startup':
      ops.pendingSipi(irq.vector);
      return 'delivered';
    case 'smi':
    case 'remrd':
    case 'extint':
      return 'ignored-mode';
  }
}
