/**
 * KVM's side of AMD AVIC (arch/x86/kvm/svm/avic.c, svm.c): the physical APIC ID table entry's
 * IsRunning bit maintained at vcpu load/put and around blocking, the doorbell, and delivery of
 * KVM-originated interrupts.
 *
 *   sender (hardware or KVM)                      target vCPU thread
 *   IRR |= bit (locked: full fence)               avic_vcpu_put / blocking:
 *   IsRunning ? doorbell(host id) : wake            entry &= ~IsRunning
 *                                                 kvm_vcpu_block: set_current_state; has IRR?
 *
 * The IRR store must be globally visible before the IsRunning load (erratum #1235): the locked
 * set_bit provides it. Only the pCPU loading/holding the vCPU writes its entry.
 */
import { AVIC_PHYSID, VCPU, type PcpuId, type VcpuId } from '../../mem/layout.js';
import { APIC_IRR } from '../../mem/apicdef.js';
import { vecPos, vecWord } from '../../mem/layout.js';
import { IN_GUEST_MODE } from '../modes.js';
import { kvmMakeRequest, KVM_REQ_EVENT } from '../requests.js';
import { kvmVcpuKick, kvmVcpuWakeUp } from '../kick.js';
import { EV } from '../../trace/events.js';
import type { KvmCtx } from '../x86-ops.js';
import { avicRingDoorbell } from '../../hw/svm/avic.js';

/**
 * sched-in / unblock: point the entry at this pCPU and set IsRunning, unless the vCPU is
 * blocking (then it stays not running until avic_vcpu_unblocking).
 * @kvm arch/x86/kvm/svm/avic.c avic_vcpu_load
 */
export function avicVcpuLoad(ctx: KvmCtx, v: VcpuId, cpu: PcpuId): void {
  const { acc, L } = ctx;
  if (acc.readOnce(L.vcpu(v, VCPU.APICV_ACTIVE), 'avic:active-read') === 0) return;
  if (acc.readOnce(L.vcpu(v, VCPU.BLOCKING), 'avic:blocking-read') !== 0) return;
  acc.writeOnce(L.avicPhysId(v), AVIC_PHYSID.VALID | AVIC_PHYSID.IS_RUNNING | (cpu & AVIC_PHYSID.HOST_ID_MASK), 'avic:is-running-set');
}

/**
 * sched-out / before blocking: clear IsRunning (senders then take the incomplete-IPI exit and
 * KVM wakes the target).
 * @kvm arch/x86/kvm/svm/avic.c avic_vcpu_put
 */
export function avicVcpuPut(ctx: KvmCtx, v: VcpuId): void {
  const { acc, L } = ctx;
  const e = L.avicPhysId(v);
  const entry = acc.readOnce(e, 'avic:entry-read');
  if ((entry & AVIC_PHYSID.IS_RUNNING) === 0) return;
  acc.writeOnce(e, entry & ~AVIC_PHYSID.IS_RUNNING, 'avic:is-running-clear');
}

/**
 * AVIC_INCOMPLETE_IPI (TARGET_NOT_RUNNING): the hardware already set the IRR bit; KVM makes sure
 * the target notices — wake it (or kick it if it is in guest mode by now).
 * @kvm arch/x86/kvm/svm/avic.c avic_kick_target_vcpus
 */
export function avicKickTargetVcpu(ctx: KvmCtx, target: VcpuId): void {
  ctx.acc.writeOnce(ctx.L.vcpu(target, VCPU.IRR_PENDING), 1, 'avic:irr-pending');
  svmCompleteInterruptDelivery(ctx, target);
}

/**
 * After the IRR bit is set: no AVIC → KVM_REQ_EVENT + kick; in guest mode → doorbell to the pCPU
 * it runs on; otherwise wake it (it evaluates the IRR at VMRUN).
 * @kvm arch/x86/kvm/svm/svm.c svm_complete_interrupt_delivery
 */
export function svmCompleteInterruptDelivery(ctx: KvmCtx, target: VcpuId): void {
  const { acc, L } = ctx;
  const inGuest = acc.loadAcquire(L.vcpu(target, VCPU.MODE), 'avic:mode-read') === IN_GUEST_MODE;
  if (acc.readOnce(L.vcpu(target, VCPU.APICV_ACTIVE), 'apicv:active-read') === 0) {
    kvmMakeRequest(acc, target, KVM_REQ_EVENT);
    kvmVcpuKick(ctx, target);
    return;
  }
  if (inGuest) {
    if (target !== ctx.runningVcpu) avicRingDoorbell(ctx, acc.readOnce(L.vcpu(target, VCPU.CPU), 'avic:cpu-read'));
  } else {
    kvmVcpuWakeUp(ctx, target);
  }
}

/**
 * KVM-originated fixed interrupt: set the IRR bit in the backing page (locked), then complete.
 * @kvm arch/x86/kvm/svm/svm.c svm_deliver_interrupt
 */
export function svmDeliverInterrupt(ctx: KvmCtx, target: VcpuId, vector: number): void {
  const { acc, L } = ctx;
  if (acc.testAndSetBit(L.apicBitmapWord(target, APIC_IRR, vecWord(vector)), vecPos(vector), 'avic:irr-set')) {
    ctx.stats.countCoalesced(target, vector);
    ctx.trace.emit(EV.COALESCED, target, vector, 2);
  } else {
    ctx.trace.emit(EV.IRR_SET, target, vector);
  }
  acc.writeOnce(L.vcpu(target, VCPU.IRR_PENDING), 1, 'apic:irr-pending');
  // smp_mb__after_atomic(): the locked set_bit above is the fence (pairs with the mode store in
  // vcpu_enter_guest).
  svmCompleteInterruptDelivery(ctx, target);
}
