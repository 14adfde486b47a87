/**
 * The vCPU thread: KVM_RUN's loop (arch/x86/kvm/x86.c vcpu_run) on its own worker.
 *
 *   Running --time slice over, others queued--> Preempted --pCPU free--> Running
 *   Running --HLT exit--> Blocked --wake-up / interrupt--> Running
 *   any     --RUN_STATE = STOP or ABORT--> Done
 *
 * The loop is synchronous between yields; it yields to the worker's event loop once per time
 * slice and once per blocked slice, which is where comlink RPCs are answered.
 */
import { PCPU, RunState, VCPU, VM, type PcpuId, type VcpuId } from '../mem/layout.js';
import { runAborted } from '../sync/wait.js';
import { handleHostIrqs, vcpuEnterGuest } from '../kvm/x86.js';
import { kvmVcpuBlockBegin, kvmVcpuBlockEnd, kvmVcpuBlockIter } from '../kvm/block.js';
import { TASK_INTERRUPTIBLE } from '../kvm/kick.js';
import { timerRemainingUs } from '../kvm/lapic-timer.js';
import type { GuestProgram, KvmCtx } from '../kvm/x86-ops.js';
import { pcpuRunLock, pcpuRunUnlock, pcpuRunWaiters, yieldToEventLoop } from './sched.js';
import { cpuActive, selectFallbackRq } from './hotplug.js';

/** Tunables of the vCPU loop. */
export interface VcpuLoopParams {
  /** Guest steps per VM-entry before a preemption-timer exit. */
  guestSteps: number;
  /** Time slice in ms before yielding (and handing the pCPU on if others wait). */
  sliceMs: number;
  /** Longest single sleep of a blocked vCPU before it re-checks the run state (ms). */
  blockSliceMs: number;
}

/** Defaults sized for a 2-core host. */
export const DEFAULT_VCPU_LOOP: VcpuLoopParams = { guestSteps: 512, sliceMs: 2, blockSliceMs: 20 };

/** A vCPU actor: one vCPU, its home pCPU, its guest program. */
export class VcpuActor {
  private loaded = false;
  constructor(
    readonly ctx: KvmCtx,
    readonly vcpu: VcpuId,
    readonly home: PcpuId,
    readonly guest: GuestProgram,
    readonly params: VcpuLoopParams = DEFAULT_VCPU_LOOP,
  ) {
    ctx.needResched = () => performance.now() - this.sliceStart >= this.params.sliceMs;
  }

  /** Start of the current time slice (performance.now()). */
  private sliceStart = 0;

  private runState(): number {
    return this.ctx.acc.peek(this.ctx.L.vm(VM.RUN_STATE));
  }
  /** Set by the control plane's stop(). */
  stopRequested = false;

  private stopping(): boolean {
    return this.stopRequested || this.runState() === RunState.STOP || runAborted(this.ctx.acc);
  }

  /** The pCPU the vCPU is loaded on (valid while loaded). */
  private cpu = -1;

  /**
   * vcpu_load(): take a pCPU — the home pCPU while it is active, else a fallback (it went
   * offline) — and load the vCPU there.
   * @kvm virt/kvm/kvm_main.c vcpu_load
   */
  load(): void {
    const { acc, L } = this.ctx;
    let p: number;
    for (;;) {
      p = selectFallbackRq(acc, this.home);
      pcpuRunLock(acc, p);
      // Re-check under the run queue (pairs with cpu_down's ACTIVE = 0; smp_mb; drain check).
      if (cpuActive(acc, p)) break;
      pcpuRunUnlock(acc, p);
    }
    if (this.cpu >= 0 && this.cpu !== p) this.ctx.stats.count('migrations');
    this.cpu = p;
    this.ctx.cpu = p;
    acc.writeOnce(L.pcpu(p, PCPU.CURRENT_VCPU), this.vcpu, 'sched:current-vcpu');
    // kvm_arch_vcpu_load(): the vendor's vcpu_load sees vcpu->cpu still naming the previous
    // pCPU (vmx_vcpu_pi_load leaves that pCPU's wakeup list), then vcpu->cpu = cpu.
    this.ctx.ops.vcpuLoad(this.ctx, this.vcpu, p);
    acc.writeOnce(L.vcpu(this.vcpu, VCPU.CPU), p, 'vcpu:cpu-write');
    this.loaded = true;
  }

  /** vcpu_put(): unload and hand the pCPU on. @kvm virt/kvm/kvm_main.c vcpu_put */
  put(): void {
    const { acc, L } = this.ctx;
    this.ctx.ops.vcpuPut(this.ctx, this.vcpu);
    // finish_task_switch(): IRQs come back on right after the switch and the pCPU takes what is
    // pending (e.g. the PI wakeup self-IPI of vmx_vcpu_pi_put); here the switching thread runs
    // the handlers, still on this pCPU, before handing it on.
    handleHostIrqs(this.ctx);
    acc.writeOnce(L.pcpu(this.cpu, PCPU.CURRENT_VCPU), -1, 'sched:current-vcpu');
    this.ctx.cpu = -1;
    this.loaded = false;
    pcpuRunUnlock(acc, this.cpu);
  }

  /**
   * The switched-out task asleep in schedule(): until it is woken (kvm_vcpu_wake_up took it out
   * of TASK_INTERRUPTIBLE), the LAPIC timer's deadline passes (its hrtimer wakes the task), or
   * the run stops. A block slice that merely times out is not a wake-up: the task sleeps on (it
   * only yields to the worker's event loop), so a lost wake-up stays lost.
   */
  private async sleep(): Promise<void> {
    const { acc, L } = this.ctx;
    const st = L.vcpu(this.vcpu, VCPU.TASK_STATE);
    for (;;) {
      const ms = Math.min(this.params.blockSliceMs, timerRemainingUs(this.ctx, this.vcpu) / 1000);
      acc.wait(st, TASK_INTERRUPTIBLE, ms, 'vcpu:schedule');
      if (acc.readOnce(st, 'vcpu:task-state-read') !== TASK_INTERRUPTIBLE) return;
      if (timerRemainingUs(this.ctx, this.vcpu) === 0 || this.stopping()) return;
      await yieldToEventLoop();
    }
  }

  /** Halt: block until runnable or the run stops. @kvm arch/x86/kvm/x86.c vcpu_block */
  private async block(): Promise<void> {
    const { ctx, vcpu } = this;
    kvmVcpuBlockBegin(ctx, vcpu);
    try {
      for (;;) {
        // schedule(): sched-out (vcpu_put) unless woken meanwhile; asleep; sched-in (vcpu_load).
        let switchedOut = false;
        const runnable = kvmVcpuBlockIter(ctx, vcpu, () => {
          this.put();
          switchedOut = true;
        });
        if (runnable) return;
        if (switchedOut) {
          await this.sleep();
          this.load();
          // Switched back in: a new time slice (a halt that finds the vCPU runnable at once
          // does not get one, so a vCPU that halts and runs on is still preempted).
          this.sliceStart = performance.now();
        }
        if (this.stopping()) return;
        if (!switchedOut) await yieldToEventLoop();
      }
    } finally {
      kvmVcpuBlockEnd(ctx, vcpu);
    }
  }

  /** The KVM_RUN loop until the run stops. @kvm arch/x86/kvm/x86.c vcpu_run */
  async run(): Promise<void> {
    const { ctx, vcpu, params } = this;
    this.load();
    try {
      this.sliceStart = performance.now();
      while (!this.stopping()) {
        if (vcpuEnterGuest(ctx, vcpu, this.guest, params.guestSteps) === 'halt') await this.block();
        if (performance.now() - this.sliceStart >= params.sliceMs) {
          if (!cpuActive(ctx.acc, this.cpu)) {
            // The pCPU is going offline: migrate (sched-out here, sched-in on another pCPU).
            this.put();
            await yieldToEventLoop();
            this.load();
          } else if (pcpuRunWaiters(ctx.acc, this.cpu) > 0) {
            ctx.stats.count('preemptions');
            ctx.acc.writeOnce(ctx.L.vcpu(vcpu, VCPU.PREEMPTED), 1, 'vcpu:preempted');
            this.put();
            await yieldToEventLoop();
            this.load();
            ctx.acc.writeOnce(ctx.L.vcpu(vcpu, VCPU.PREEMPTED), 0, 'vcpu:preempted');
          } else {
            await yieldToEventLoop();
          }
          this.sliceStart = performance.now();
        }
      }
    } finally {
      if (this.loaded) this.put();
    }
  }
}
