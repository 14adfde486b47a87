/**
 * Waking and kicking vCPUs (virt/kvm/kvm_main.c, kernel/rcu/update.c rcuwait).
 *
 * Wake word protocol (rcuwait + task state):
 *
 *   sleeper (kvm_vcpu_block)                 waker (kvm_vcpu_wake_up)
 *   WAIT_TASK = 1   (prepare_to_rcuwait)
 *   TASK_STATE = 1; smp_mb (set_current_state)  smp_mb          (rcuwait_wake_up)
 *   if runnable: break                        if WAIT_TASK:
 *   futex-wait while TASK_STATE == 1            cmpxchg TASK_STATE 1 -> 0; notify
 *
 * The two smp_mb() form a Dekker pair: either the sleeper sees the interrupt, or the waker sees
 * WAIT_TASK and wakes it.
 */
import { PCPU, VCPU, type PcpuId, type VcpuId } from '../mem/layout.js';
import { doorbellRing } from '../sync/doorbell.js';
import { IN_GUEST_MODE, kvmVcpuExitingGuestMode } from './modes.js';
import { EV } from '../trace/events.js';
import type { KvmCtx } from './x86-ops.js';

/** Task states of a vCPU thread. */
export const TASK_RUNNING = 0;
/** @kvm include/linux/sched.h TASK_INTERRUPTIBLE */
export const TASK_INTERRUPTIBLE = 1;

/** Host system vectors (arch/x86/include/asm/irq_vectors.h). */
export const POSTED_INTR_VECTOR = 0xf2;
/** @kvm arch/x86/include/asm/irq_vectors.h POSTED_INTR_WAKEUP_VECTOR */
export const POSTED_INTR_WAKEUP_VECTOR = 0xf1;
/** @kvm arch/x86/include/asm/irq_vectors.h POSTED_INTR_NESTED_VECTOR */
export const POSTED_INTR_NESTED_VECTOR = 0xf0;
/** @kvm arch/x86/include/asm/irq_vectors.h RESCHEDULE_VECTOR */
export const RESCHEDULE_VECTOR = 0xfd;
/** @kvm arch/x86/include/asm/irq_vectors.h CALL_FUNCTION_VECTOR */
export const CALL_FUNCTION_VECTOR = 0xfc;
/** First vector of the host IRR word {@link PCPU.HOST_IRR_SYS}. */
export const FIRST_SYSTEM_VECTOR_WORD = 0xe0;

/**
 * Send a host IPI with a system vector to a pCPU: set it in the pCPU's host IRR word and ring
 * its doorbell.
 * @kvm arch/x86/kernel/apic/ipi.c __apic_send_IPI_mask
 */
export function apicSendIpiHost(ctx: KvmCtx, cpu: PcpuId, vector: number): void {
  doorbellRing(ctx.acc, ctx.L.pcpu(cpu, PCPU.HOST_IRR_SYS), 1 << (vector - FIRST_SYSTEM_VECTOR_WORD), 'apic:host-ipi');
  ctx.trace.emit(EV.NOTIFY, cpu, vector);
  ctx.stats.count('notifications');
}

/**
 * Wake the vCPU's thread if it sleeps on its rcuwait; returns true if it was woken.
 * @kvm virt/kvm/kvm_main.c kvm_vcpu_wake_up
 */
export function kvmVcpuWakeUp(ctx: KvmCtx, v: VcpuId): boolean {
  const { acc, L } = ctx;
  // rcuwait_wake_up(): smp_mb() pairs with set_current_state()'s barrier in kvmVcpuBlock.
  acc.smpMb('vcpu:wake-mb');
  let woken = false;
  if (acc.readOnce(L.vcpu(v, VCPU.WAIT_TASK), 'vcpu:wait-task-read') !== 0) {
    const st = L.vcpu(v, VCPU.TASK_STATE);
    if (acc.cmpxchg(st, TASK_INTERRUPTIBLE, TASK_RUNNING, 'vcpu:try-to-wake-up') === TASK_INTERRUPTIBLE) {
      acc.notify(st, 1, 'vcpu:wake-notify');
      woken = true;
      ctx.stats.count('wakeups');
      // vcpu->ready is set only when a task was actually woken.
      acc.writeOnce(L.vcpu(v, VCPU.READY), 1, 'vcpu:ready');
    }
  }
  ctx.trace.emit(EV.WAKE, v, woken ? 1 : 0);
  return woken;
}

/**
 * Make sure the vCPU notices pending work: wake it, or force it out of guest mode with a
 * reschedule IPI to the pCPU it runs on.
 * @kvm virt/kvm/kvm_main.c kvm_vcpu_kick
 */
export function kvmVcpuKick(ctx: KvmCtx, v: VcpuId): void {
  if (kvmVcpuWakeUp(ctx, v)) return;
  ctx.stats.count('kicks');
  // kvm_arch_vcpu_should_kick(): IN_GUEST_MODE -> EXITING_GUEST_MODE by cmpxchg.
  let ipi = 0;
  if (kvmVcpuExitingGuestMode(ctx.acc, v) === IN_GUEST_MODE) {
    const cpu = ctx.acc.readOnce(ctx.L.vcpu(v, VCPU.CPU), 'vcpu:cpu-read');
    if (cpu !== ctx.cpu && cpu >= 0) {
      apicSendIpiHost(ctx, cpu, RESCHEDULE_VECTOR);
      ipi = 1;
    }
  }
  ctx.trace.emit(EV.KICK, v, ipi);
}
