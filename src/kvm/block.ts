/**
 * Blocking a halted vCPU (virt/kvm/kvm_main.c kvm_vcpu_block / kvm_vcpu_halt, x86.c vcpu_block).
 *
 * Split into prepare / one loop iteration / finish so the actor can return to its event loop
 * between iterations (a schedule() that returns without a wake-up is an ordinary spurious
 * wake-up for the kernel's loop, which re-checks and sleeps again).
 */
import { VCPU, type VcpuId } from '../mem/layout.js';
import { kvmCheckRequest, kvmTestRequest, KVM_REQ_NMI, KVM_REQ_UNBLOCK } from './requests.js';
import { kvmInjectPendingTimerIrqs } from './lapic-timer.js';
import { TASK_INTERRUPTIBLE, TASK_RUNNING } from './kick.js';
import { EV } from '../trace/events.js';
import type { KvmCtx } from './x86-ops.js';

/**
 * kvm_arch_vcpu_runnable() for a halted vCPU: a pending NMI request (kvm_vcpu_has_events), an
 * interrupt the guest can take, or an unblock request.
 * @kvm virt/kvm/kvm_main.c kvm_vcpu_check_block
 */
export function kvmVcpuCheckBlock(ctx: KvmCtx, v: VcpuId): boolean {
  // kvm_cpu_has_pending_timer(): an expired LAPIC timer makes the vCPU runnable.
  kvmInjectPendingTimerIrqs(ctx, v);
  if (kvmTestRequest(ctx.acc, v, KVM_REQ_NMI)) return true;
  if (ctx.ops.apicHasInterrupt(ctx, v)) return true;
  if (kvmCheckRequest(ctx.acc, v, KVM_REQ_UNBLOCK)) return true;
  return false;
}

/**
 * Enter the blocking state: kvm_arch_vcpu_blocking, prepare_to_rcuwait.
 * @kvm virt/kvm/kvm_main.c kvm_vcpu_block
 */
export function kvmVcpuBlockBegin(ctx: KvmCtx, v: VcpuId): void {
  const { acc, L } = ctx;
  acc.writeOnce(L.vcpu(v, VCPU.BLOCKING), 1, 'vcpu:blocking');
  ctx.ops.vcpuBlocking?.(ctx, v);
  // prepare_to_rcuwait(): rcu_assign_pointer(w->task, current).
  acc.storeRelease(L.vcpu(v, VCPU.WAIT_TASK), 1, 'vcpu:wait-task-set');
  ctx.trace.emit(EV.HALT, v, 1);
}

/**
 * One iteration of the rcuwait loop: set_current_state(TASK_INTERRUPTIBLE) (a full barrier),
 * check, and if still not runnable call `schedule()`, which switches the task out (vcpu_put)
 * and sleeps while TASK_STATE stays TASK_INTERRUPTIBLE. A task woken since set_current_state()
 * is TASK_RUNNING again and is not switched out (__schedule does not dequeue it), so then
 * `schedule` is not called. Returns true once the vCPU is runnable.
 * @kvm virt/kvm/kvm_main.c kvm_vcpu_block (kernel/sched/core.c __schedule: prev->__state)
 */
export function kvmVcpuBlockIter(ctx: KvmCtx, v: VcpuId, schedule: () => void): boolean {
  const { acc, L } = ctx;
  const st = L.vcpu(v, VCPU.TASK_STATE);
  // set_current_state() = smp_store_mb(): pairs with the smp_mb() in kvmVcpuWakeUp.
  acc.writeOnce(st, TASK_INTERRUPTIBLE, 'vcpu:task-interruptible');
  acc.smpMb('vcpu:set-current-state-mb');
  if (kvmVcpuCheckBlock(ctx, v)) {
    acc.writeOnce(st, TASK_RUNNING, 'vcpu:task-running');
    return true;
  }
  if (acc.readOnce(st, 'sched:task-state-read') === TASK_INTERRUPTIBLE) schedule();
  return false;
}

/**
 * Leave the blocking state: finish_rcuwait, kvm_arch_vcpu_unblocking.
 * @kvm virt/kvm/kvm_main.c kvm_vcpu_block
 */
export function kvmVcpuBlockEnd(ctx: KvmCtx, v: VcpuId): void {
  const { acc, L } = ctx;
  // finish_rcuwait(): rcu_assign_pointer(w->task, NULL); __set_current_state(TASK_RUNNING).
  acc.storeRelease(L.vcpu(v, VCPU.WAIT_TASK), 0, 'vcpu:wait-task-clear');
  acc.writeOnce(L.vcpu(v, VCPU.TASK_STATE), TASK_RUNNING, 'vcpu:task-running');
  acc.writeOnce(L.vcpu(v, VCPU.BLOCKING), 0, 'vcpu:unblocking');
  ctx.ops.vcpuUnblocking?.(ctx, v);
  ctx.trace.emit(EV.HALT, v, 0);
}
