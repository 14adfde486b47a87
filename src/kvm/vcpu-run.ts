/**
 * KVM_RUN from a VMM's vCPU thread (virt/kvm/kvm_main.c kvm_vcpu_ioctl, arch/x86/kvm/x86.c
 * vcpu_run): refused with -EIO on a dead VM; otherwise vcpu_enter_guest again and again, a HLT
 * exit blocks the vCPU (kvm_vcpu_block: sleep until runnable), and a pending signal (the VMM
 * taking the vCPU back) ends KVM_RUN — also while the vCPU is blocked. KVM_REQ_VM_DEAD fails it
 * with -EIO (an EmuError EMU_ERR_VM_BUGGED thrown by vcpu_enter_guest).
 *
 * The machine's own vCPU actor (src/actors/vcpu.ts) runs the same loop with the host scheduler
 * around it (time slices, migration); this one is for a thread that is the vCPU's task and
 * nothing else (scenario actors, library users).
 */
import { VCPU, type VcpuId } from '../mem/layout.js';
import { vcpuEnterGuest } from './x86.js';
import { kvmVcpuBlockBegin, kvmVcpuBlockEnd, kvmVcpuBlockIter } from './block.js';
import { TASK_INTERRUPTIBLE } from './kick.js';
import { kvmVmIsBugged, vmDeadError } from './vm-bug.js';
import type { GuestProgram, KvmCtx } from './x86-ops.js';

/** How a KVM_RUN that did not fail ended. */
export type KvmRunEnd = 'returned' | 'signalled-while-blocked';

/** Tunables of {@link kvmVcpuIoctlRun}. */
export interface KvmRunOptions {
  /** Guest steps per VM-entry before a host-tick exit. */
  maxSteps: number;
  /** signal_pending(current): the VMM wants the vCPU back (checked after every exit and every wake-up). */
  signalPending: () => boolean;
  /** Longest single sleep of the blocked vCPU task before it looks at its signals (ms). */
  sleepMs: number;
  /** Called at every HLT exit (bookkeeping). */
  onHalt?: () => void;
}

/**
 * schedule() of a vCPU task in TASK_INTERRUPTIBLE: sleep until kvm_vcpu_wake_up makes it
 * TASK_RUNNING, at most `ms` (a timeout is a spurious wake-up for kvm_vcpu_block's loop).
 * @kvm kernel/sched/core.c schedule (set_current_state(TASK_INTERRUPTIBLE) ... schedule())
 */
export function kvmVcpuSchedule(ctx: KvmCtx, v: VcpuId, ms: number): void {
  ctx.acc.wait(ctx.L.vcpu(v, VCPU.TASK_STATE), TASK_INTERRUPTIBLE, ms, 'vcpu:schedule');
}

/**
 * KVM_RUN on vCPU v with `guest`: -EIO at once on a dead VM (kvm->vm_dead), else vcpu_run's loop
 * until a signal is pending. Returns how it ended; throws EMU_ERR_VM_BUGGED for -EIO.
 * @kvm virt/kvm/kvm_main.c kvm_vcpu_ioctl (KVM_RUN, kvm->vm_dead -> -EIO); arch/x86/kvm/x86.c vcpu_run, vcpu_block
 */
export function kvmVcpuIoctlRun(ctx: KvmCtx, v: VcpuId, guest: GuestProgram, o: KvmRunOptions): KvmRunEnd {
  if (kvmVmIsBugged(ctx)) throw vmDeadError(ctx, v);
  for (;;) {
    const r = vcpuEnterGuest(ctx, v, guest, o.maxSteps);
    if (o.signalPending()) return 'returned';
    if (r !== 'halt') continue;
    o.onHalt?.();
    kvmVcpuBlockBegin(ctx, v);
    let signalled = false;
    try {
      while (!kvmVcpuBlockIter(ctx, v, () => kvmVcpuSchedule(ctx, v, o.sleepMs))) {
        if (o.signalPending()) {
          signalled = true;
          break;
        }
      }
    } finally {
      kvmVcpuBlockEnd(ctx, v);
    }
    if (signalled) return 'signalled-while-blocked';
  }
}
