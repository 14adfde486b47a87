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
import { kvmInjectPendingNmi, processNmi } from './nmi.js';

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

/**
 * Bug patch (PI-1): vcpu_enter_guest has no full barrier between `vcpu->mode = IN_GUEST_MODE`
 * and the PID.ON read of sync_pir_to_irr (kvm_vcpu_srcu_read_unlock's smp_mb(), which
 * smp_mb__after_srcu_read_unlock() documents, left out). The mode store can then sit in the
 * store buffer while the vCPU reads ON = 0, and a sender's locked ON update followed by its
 * mode read sees OUTSIDE_GUEST_MODE: neither notifies, the vector waits in the PIR until an
 * unrelated VM-exit. Hypothetical: the barrier after the mode store is older than posted
 * interrupts (it also orders the store before the requests check); comment (2) at this spot
 * documents its pairing with pi_test_and_set_on.
 * @kvm arch/x86/kvm/x86.c vcpu_enter_guest (without smp_mb__after_srcu_read_unlock's barrier)
 */
export const PATCH_ENTER_GUEST_NO_MB = definePatch({
  id: 'kvm-enter-guest-no-mb',
  step: 'vcpu_enter_guest',
  summary: 'no full barrier between vcpu->mode = IN_GUEST_MODE and the PID.ON read of sync_pir_to_irr (store buffering against the sender\'s ON test-and-set / mode read)',
  origin: {
    kind: 'hypothetical',
    ref: 'arch/x86/kvm/x86.c vcpu_enter_guest',
    subject: '"2) For APICv, we should set ->mode before checking PID.ON. This pairs with the memory barrier implicit in pi_test_and_set_on (see vmx_deliver_posted_interrupt)." — no released kernel dropped the barrier',
  },
  kernel: 'none known (every kernel read for this project orders the mode store before the PID.ON read with a full barrier)',
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
  // local_irq_enable() is no barrier: the CPU acknowledges (a locked exchange here) only what is
  // pending.
  const irr = ctx.L.pcpu(ctx.cpu, PCPU.HOST_IRR_SYS);
  if (ctx.acc.readOnce(irr, 'apic:host-irr-read') === 0) return;
  const bits = doorbellTake(ctx.acc, irr, 'apic:host-irq-ack');
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
    // process_nmi (kvm/nmi.ts), then event injection: one pending NMI (vendors without an NMI
    // model count it and drop it), then interrupts.
    if (kvmCheckRequest(acc, v, KVM_REQ_NMI)) processNmi(ctx, v);
    if (kvmCheckRequest(acc, v, KVM_REQ_EVENT)) {
      kvmInjectPendingNmi(ctx, v);
      ops.injectPending(ctx, v);
    }
  }
  // kvm_lapic_enabled() of step 5, read first: only this thread changes it, and under x86-TSO
  // these loads may pass the mode store anyway.
  const lapicEnabled = apicEnabled(acc, v);
  const noMb = ctx.patches.has(PATCH_ENTER_GUEST_NO_MB);
  // 3. + 4.
  setMode(ctx, v, IN_GUEST_MODE);
  if (noMb) {
    // Patched: no barrier; the mode store may still be buffered when ON is read (breaks O2).
  } else {
    // kvm_vcpu_srcu_read_unlock(): __srcu_read_unlock's smp_mb(); smp_mb__after_srcu_read_unlock().
    acc.smpMb('vcpu:enter-mb');
  }
  // 5.
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
