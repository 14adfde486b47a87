/**
 * Virtual NMIs for a vCPU (arch/x86/kvm/x86.c kvm_inject_nmi, process_nmi, and the NMI part of
 * kvm_check_and_inject_events).
 *
 *   sender (any thread)                         vCPU thread, next vcpu_enter_guest
 *   kvm_inject_nmi: nmi_queued++ (atomic)       KVM_REQ_NMI -> process_nmi:
 *                   KVM_REQ_NMI, kick             limit = 1 if NMIs masked or an injection is
 *                                                 in flight, else 2 (two NMIs may arrive while
 *                                                 the vCPU is scheduled out); nmi_pending +=
 *                                                 xchg(nmi_queued, 0), capped at the limit;
 *                                                 pending -> KVM_REQ_EVENT
 *                                               KVM_REQ_EVENT -> one NMI injected per entry
 *                                                 (nmi_allowed): --nmi_pending, nmi_injected
 *
 * x86 keeps at most one NMI pending; KVM tolerates two so that two NMIs queued while the vCPU
 * could not react are not collapsed by KVM itself. Further NMIs beyond the limit are dropped,
 * as on bare metal.
 */
import { VCPU, type VcpuId } from '../mem/layout.js';
import { kvmMakeRequest, KVM_REQ_EVENT, KVM_REQ_NMI } from './requests.js';
import { kvmVcpuKick } from './kick.js';
import type { KvmCtx } from './x86-ops.js';

/**
 * Queue an NMI for vCPU v (an NMI IPI accepted by its APIC, or KVM_NMI) and make it look.
 * @kvm arch/x86/kvm/x86.c kvm_inject_nmi (atomic_inc(&vcpu->arch.nmi_queued); kvm_make_request(KVM_REQ_NMI, vcpu)) and lapic.c __apic_accept_irq (APIC_DM_NMI: kvm_vcpu_kick)
 */
export function kvmInjectNmi(ctx: KvmCtx, v: VcpuId): void {
  ctx.acc.atomicAdd(ctx.L.vcpu(v, VCPU.NMI_QUEUED), 1, 'kvm:nmi-queued-inc');
  kvmMakeRequest(ctx.acc, v, KVM_REQ_NMI);
  kvmVcpuKick(ctx, v);
}

/**
 * Move queued NMIs to pending, keeping at most one (NMIs masked, or an injection in flight) or
 * two; request event injection if any is pending. Runs on the vCPU's own thread.
 * @kvm arch/x86/kvm/x86.c process_nmi
 */
export function processNmi(ctx: KvmCtx, v: VcpuId): void {
  const { acc, L, ops } = ctx;
  const injected = acc.readOnce(L.vcpu(v, VCPU.NMI_INJECTED), 'kvm:nmi-injected-read') !== 0;
  let limit = (ops.getNmiMask?.(ctx, v) ?? false) || injected ? 1 : 2;
  // Virtual NMIs pending in hardware (vNMI) count against the limit.
  if (ops.isVnmiPending?.(ctx, v)) limit--;
  const pendingAddr = L.vcpu(v, VCPU.NMI_PENDING);
  const queued = acc.xchg(L.vcpu(v, VCPU.NMI_QUEUED), 0, 'kvm:nmi-queued-take');
  const pending = Math.min(acc.readOnce(pendingAddr, 'kvm:nmi-pending-read') + queued, Math.max(limit, 0));
  if (queued > pending) ctx.stats.count('nmisDropped', queued - pending);
  acc.writeOnce(pendingAddr, pending, 'kvm:nmi-pending-write');
  if (pending > 0) kvmMakeRequest(acc, v, KVM_REQ_EVENT);
}

/**
 * The NMI part of event injection at entry: with an NMI pending and the vendor allowing it,
 * inject one (--nmi_pending, nmi_injected = true). A vendor with no NMI model drops it (counted
 * as `nmisDropped`).
 * @kvm arch/x86/kvm/x86.c kvm_check_and_inject_events (vcpu->arch.nmi_pending && nmi_allowed -> inject_nmi)
 */
export function kvmInjectPendingNmi(ctx: KvmCtx, v: VcpuId): void {
  const { acc, L, ops } = ctx;
  const pendingAddr = L.vcpu(v, VCPU.NMI_PENDING);
  const pending = acc.readOnce(pendingAddr, 'kvm:nmi-pending-read');
  if (pending === 0) return;
  if (!ops.injectNmi) {
    ctx.stats.count('nmisDropped', pending);
    acc.writeOnce(pendingAddr, 0, 'kvm:nmi-pending-write');
    return;
  }
  if (!(ops.nmiAllowed?.(ctx, v) ?? true)) return;
  acc.writeOnce(pendingAddr, pending - 1, 'kvm:nmi-pending-write');
  acc.writeOnce(L.vcpu(v, VCPU.NMI_INJECTED), 1, 'kvm:nmi-injected-set');
  ops.injectNmi(ctx, v);
}
