/**
 * KVM's side of VMX posted interrupts: the sender (vmx_deliver_interrupt and friends) and the
 * receiver's pre-entry sync (vmx_sync_pir_to_irr).
 *
 * Ordering (domain notes 2.5):
 *   O1 sender:   PIR bit (locked) -> ON test-and-set (locked, full fence) -> read target mode
 *   O2 receiver: mode = IN_GUEST_MODE -> full fence -> read ON          (SB pair with O1)
 *   O3 receiver: clear ON before harvesting the PIR, never the reverse
 */
import { VCPU, vecPos, vecWord, type VcpuId } from '../../mem/layout.js';
import { APIC_IRR } from '../../mem/apicdef.js';
import { IN_GUEST_MODE } from '../modes.js';
import { kvmMakeRequest, KVM_REQ_EVENT } from '../requests.js';
import { apicSendIpiHost, kvmVcpuKick, kvmVcpuWakeUp, POSTED_INTR_VECTOR } from '../kick.js';
import { apicFindHighestIrr } from '../../apic/index.js';
import { EV } from '../../trace/events.js';
import type { KvmCtx } from '../x86-ops.js';
import { kvmApicUpdateIrr } from '../lapic-pir.js';
import { piClearOn, piTestAndSetOn, piTestAndSetPir, piTestOn } from '../../hw/vmx/pi-desc.js';

/**
 * Notify a vCPU that its PIR has work: a notification IPI if it is in guest mode on another
 * pCPU, otherwise a wake-up (KVM syncs the PIR at the next entry).
 * @kvm arch/x86/kvm/vmx/common.h kvm_vcpu_trigger_posted_interrupt
 */
export function kvmVcpuTriggerPostedInterrupt(ctx: KvmCtx, target: VcpuId, piVec: number): void {
  const { acc, L } = ctx;
  if (acc.readOnce(L.vcpu(target, VCPU.MODE), 'pi:mode-read') === IN_GUEST_MODE) {
    // The vector is already in the PIR. Notify unless the target is the vCPU running on this
    // very thread (fastpath VM-exit): it syncs the PIR before re-entering.
    if (target !== ctx.runningVcpu) {
      apicSendIpiHost(ctx, acc.readOnce(L.vcpu(target, VCPU.CPU), 'pi:cpu-read'), piVec);
    }
    return;
  }
  // Not in the guest: wake it in case it blocks; otherwise vcpu_enter_guest syncs the PIR.
  kvmVcpuWakeUp(ctx, target);
}

/**
 * Post `vector` to `target`'s descriptor.
 * @kvm arch/x86/kvm/vmx/common.h __vmx_deliver_posted_interrupt
 */
export function vmxDeliverPostedInterruptRaw(ctx: KvmCtx, target: VcpuId, vector: number): void {
  if (piTestAndSetPir(ctx.acc, target, vector)) {
    ctx.stats.countCoalesced(target, vector);
    ctx.trace.emit(EV.COALESCED, target, vector, 1);
    return;
  }
  ctx.trace.emit(EV.PIR_SET, target, vector);
  // If a previous notification has sent the IPI, nothing to do. Pairs with the mode store +
  // smp_mb in vcpuEnterGuest (O1/O2).
  if (piTestAndSetOn(ctx.acc, target)) return;
  ctx.trace.emit(EV.ON_SET, target, vector);
  kvmVcpuTriggerPostedInterrupt(ctx, target, POSTED_INTR_VECTOR);
}

/**
 * Posted delivery if APICv is active on the target; -1 otherwise.
 * @kvm arch/x86/kvm/vmx/vmx.c vmx_deliver_posted_interrupt
 */
export function vmxDeliverPostedInterrupt(ctx: KvmCtx, target: VcpuId, vector: number): number {
  if (ctx.acc.readOnce(ctx.L.vcpu(target, VCPU.APICV_ACTIVE), 'apicv:active-read') === 0) return -1;
  vmxDeliverPostedInterruptRaw(ctx, target, vector);
  return 0;
}

/**
 * The vendor deliver_interrupt hook: posted if possible, else IRR + KVM_REQ_EVENT + kick.
 * @kvm arch/x86/kvm/vmx/vmx.c vmx_deliver_interrupt
 */
export function vmxDeliverInterrupt(ctx: KvmCtx, target: VcpuId, vector: number): void {
  if (vmxDeliverPostedInterrupt(ctx, target, vector) !== 0) {
    // kvm_lapic_set_irr(): set the IRR bit (locked), then the irr_pending hint.
    const { acc, L } = ctx;
    const already = acc.testAndSetBit(L.apicBitmapWord(target, APIC_IRR, vecWord(vector)), vecPos(vector), 'apic:irr-set');
    acc.writeOnce(L.vcpu(target, VCPU.IRR_PENDING), 1, 'apic:irr-pending');
    if (already) {
      ctx.stats.countCoalesced(target, vector);
      ctx.trace.emit(EV.COALESCED, target, vector, 2);
    } else {
      ctx.trace.emit(EV.IRR_SET, target, vector);
    }
    kvmMakeRequest(ctx.acc, target, KVM_REQ_EVENT);
    kvmVcpuKick(ctx, target);
  }
}

/**
 * Write RVI (GUEST_INTR_STATUS 7:0), keeping SVI.
 * @kvm arch/x86/kvm/vmx/vmx.c vmx_set_rvi
 */
export function vmxSetRvi(ctx: KvmCtx, v: VcpuId, vector: number): void {
  const a = ctx.L.vcpu(v, VCPU.GUEST_INTR_STATUS);
  const st = ctx.acc.readOnce(a, 'vmcs:intr-status-read');
  const rvi = vector < 0 ? 0 : vector & 0xff;
  if ((st & 0xff) !== rvi) ctx.acc.writeOnce(a, (st & ~0xff) | rvi, 'vmcs:rvi-write');
}

/**
 * Pre-entry sync: if ON, clear it (O3: before harvesting), move the PIR into the vIRR, and
 * point RVI at the highest vIRR vector (APICv) or raise KVM_REQ_EVENT (no APICv).
 * @kvm arch/x86/kvm/vmx/vmx.c vmx_sync_pir_to_irr
 */
export function vmxSyncPirToIrr(ctx: KvmCtx, v: VcpuId): number {
  const { acc } = ctx;
  let maxIrr: number;
  let got = false;
  if (piTestOn(acc, v)) {
    piClearOn(acc, v);
    // smp_mb__after_atomic(): the clear_bit above is locked, a full fence on x86.
    const r = kvmApicUpdateIrr(ctx, v);
    maxIrr = r.maxIrr;
    got = r.got;
    ctx.stats.count('pirSyncs');
    ctx.trace.emit(EV.PIR_SYNC, v, maxIrr);
  } else {
    maxIrr = apicFindHighestIrr(acc, v);
  }
  if (acc.readOnce(ctx.L.vcpu(v, VCPU.APICV_ACTIVE), 'apicv:active-read') !== 0) vmxSetRvi(ctx, v, maxIrr);
  else if (got) kvmMakeRequest(acc, v, KVM_REQ_EVENT);
  return maxIrr;
}
