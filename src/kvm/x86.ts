/**
 * One trip through vcpu_enter_guest() (arch/x86/kvm/x86.c), the backbone of every race here.
 *
 *   1. process requests (KVM_REQ_EVENT -> inject for non-APICv)
 *   2. IRQs off
 *   3. mode = IN_GUEST_MODE               (store-release)
 *   4. srcu_read_unlock; smp_mb__after_srcu_read_unlock()   full barrier (pairs with the
 *      sender's ON test-and-set: O1/O2 in kvm/vmx/posted-intr)
 *   5. sync_pir_to_irr if the local APIC is enabled (whatever the APICv state)
 *   6. exit request? (mode == EXITING || requests) -> mode = OUTSIDE, back out
 *   7. VM-enter ... VM-exit; fastpath exits (x2APIC ICR write) re-enter from here, still
 *      IN_GUEST_MODE, after another PIR sync and exit-request check
 *   8. mode = OUTSIDE_GUEST_MODE; IRQ window: pending host interrupts run on this pCPU
 */
import { PCPU, VCPU, type VcpuId } from '../mem/layout.js';
import { doorbellTake } from '../sync/doorbell.js';
import { apicEnabled } from '../apic/index.js';
import { EXITING_GUEST_MODE, IN_GUEST_MODE, OUTSIDE_GUEST_MODE } from './modes.js';
import { kvmCheckRequest, kvmRequestPending, KVM_REQ_APICV_UPDATE, KVM_REQ_EVENT, KVM_REQ_NMI, KVM_REQ_VM_DEAD } from './requests.js';
import { vmDeadError } from './vm-bug.js';
import { kvmVcpuUpdateApicv } from './apicv.js';
import { FIRST_SYSTEM_VECTOR_WORD } from './kick.js';
import { kvmX2apicMsrWriteExit } from './irq.js';
import { kvmInjectPendingTimerIrqs, kvmSetLapicTscdeadlineMsr, MSR_IA32_TSC_DEADLINE } from './lapic-timer.js';
import { EV } from '../trace/events.js';
import { ExitReason, type GuestProgram, type KvmCtx } from './x86-ops.js';
import { definePatch } from './patches.js';

/**
 * Bug patch (PI-6): vcpu_enter_guest syncs the PIR into the IRR only while APICv is active —
 * the guard `kvm_lapic_enabled(vcpu) && kvm_vcpu_apicv_active(vcpu)` that commit 37c4dbf337c5
 * removed. An assigned device keeps posting through its IRTE after an inhibit deactivates
 * APICv; with the guard, what it posts stays in the PIR with ON set.
 * @kvm arch/x86/kvm/x86.c vcpu_enter_guest (before 37c4dbf337c5)
 */
export const PATCH_SYNC_PIR_ONLY_WITH_APICV = definePatch({
  id: 'kvm-sync-pir-only-with-apicv',
  step: 'vcpu_enter_guest',
  summary: 'sync_pir_to_irr at VM-entry (and the fastpath re-entry) only while APICv is active',
  origin: { kind: 'revert', ref: '37c4dbf337c5c2cdb24365ffae6ed70ac1e74d7a', subject: 'KVM: x86: check PIR even for vCPUs with disabled APICv' },
  kernel: 'before v5.16 (the fix went to stable)',
  vendors: ['vmx'],
});

/** vcpu_enter_guest's PIR sync: `if (kvm_lapic_enabled(vcpu)) static_call_cond(kvm_x86_sync_pir_to_irr)(vcpu)`. */
function syncPirAtEntry(ctx: KvmCtx, v: VcpuId, lapicEnabled: boolean): void {
  if (!lapicEnabled) return;
  if (ctx.patches.has(PATCH_SYNC_PIR_ONLY_WITH_APICV) && ctx.acc.readOnce(ctx.L.vcpu(v, VCPU.APICV_ACTIVE), 'apicv:active-read') === 0) return;
  ctx.ops.syncPirToIrr(ctx, v);
}

/** What the vCPU loop should do next. */
export type EnterResult = 'continue' | 'halt';

/** @kvm arch/x86/kvm/x86.c kvm_vcpu_exit_request */
export function kvmVcpuExitRequest(ctx: KvmCtx, v: VcpuId): boolean {
  return ctx.acc.readOnce(ctx.L.vcpu(v, VCPU.MODE), 'vcpu:mode-read') === EXITING_GUEST_MODE || kvmRequestPending(ctx.acc, v);
}

/**
 * Host interrupts pending on this pCPU run now (local_irq_enable() after a VM-exit).
 * @kvm arch/x86/kvm/x86.c vcpu_enter_guest (local_irq_enable window)
 */
export function handleHostIrqs(ctx: KvmCtx): void {
  if (ctx.cpu < 0) return;
  const bits = doorbellTake(ctx.acc, ctx.L.pcpu(ctx.cpu, PCPU.HOST_IRR_SYS), 'apic:host-irq-ack');
  for (let b = bits; b !== 0; ) {
    const bit = 31 - Math.clz32(b);
    b &= ~(1 << bit);
    ctx.ops.handleHostIrq(ctx, FIRST_SYSTEM_VECTOR_WORD + bit);
  }
}

function setMode(ctx: KvmCtx, v: VcpuId, mode: number): void {
  ctx.acc.storeRelease(ctx.L.vcpu(v, VCPU.MODE), mode, mode === IN_GUEST_MODE ? 'vcpu:mode-in' : 'vcpu:mode-outside');
  ctx.trace.emit(EV.MODE, v, mode);
}

/**
 * One entry/exit cycle of vCPU v running `guest` for at most `maxSteps` guest steps.
 * @kvm arch/x86/kvm/x86.c vcpu_enter_guest
 */
export function vcpuEnterGuest(ctx: KvmCtx, v: VcpuId, guest: GuestProgram, maxSteps: number): EnterResult {
  const { acc, ops } = ctx;
  kvmInjectPendingTimerIrqs(ctx, v);
  // 1. requests
  if (kvmRequestPending(acc, v)) {
    if (kvmCheckRequest(acc, v, KVM_REQ_VM_DEAD)) throw vmDeadError(ctx, v);
    if (kvmCheckRequest(acc, v, KVM_REQ_APICV_UPDATE)) kvmVcpuUpdateApicv(ctx, v);
    // process_nmi + inject: vendors without an NMI model count the NMI and drop it.
    if (kvmCheckRequest(acc, v, KVM_REQ_NMI)) {
      if (ops.injectNmi) ops.injectNmi(ctx, v);
      else ctx.stats.count('nmisDropped');
    }
    if (kvmCheckRequest(acc, v, KVM_REQ_EVENT)) ops.injectPending(ctx, v);
  }
  // 3. + 4.
  setMode(ctx, v, IN_GUEST_MODE);
  acc.smpMb('vcpu:enter-mb');
  // 5.
  const lapicEnabled = apicEnabled(acc, v);
  syncPirAtEntry(ctx, v, lapicEnabled);
  // 6.
  if (kvmVcpuExitRequest(ctx, v)) {
    setMode(ctx, v, OUTSIDE_GUEST_MODE);
    handleHostIrqs(ctx);
    return 'continue';
  }
  // 7.
  let exit = ops.vcpuRun(ctx, v, guest, maxSteps);
  while (exit.reason === ExitReason.MSR_WRITE && exit.msr === 0x830) {
    // handle_fastpath_set_msr_irqoff -> kvm_x2apic_icr_write, still IN_GUEST_MODE.
    ctx.stats.count('vmexits');
    kvmX2apicMsrWriteExit(ctx, v, exit.msr, exit.lo ?? 0, exit.hi ?? 0);
    syncPirAtEntry(ctx, v, lapicEnabled);
    // kvm_vcpu_exit_request() also covers xfer_to_guest_mode_work_pending(): need_resched().
    if (kvmVcpuExitRequest(ctx, v) || ctx.needResched()) {
      exit = { reason: ExitReason.PREEMPTION_TIMER };
      break;
    }
    exit = ops.vcpuRun(ctx, v, guest, maxSteps);
  }
  ctx.stats.count('vmexits');
  // 8.
  setMode(ctx, v, OUTSIDE_GUEST_MODE);
  handleHostIrqs(ctx);
  ctx.trace.emit(EV.VMEXIT, v, exit.reason);
  switch (exit.reason) {
    case ExitReason.HLT:
      ctx.stats.count('halts');
      return 'halt';
    case ExitReason.MSR_WRITE:
      if (exit.msr === MSR_IA32_TSC_DEADLINE) kvmSetLapicTscdeadlineMsr(ctx, v, exit.lo ?? 0);
      else kvmX2apicMsrWriteExit(ctx, v, exit.msr ?? 0, exit.lo ?? 0, exit.hi ?? 0);
      return 'continue';
    default:
      ops.handleExit?.(ctx, v, exit);
      return 'continue';
  }
}
