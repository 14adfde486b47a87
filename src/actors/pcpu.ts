/**
 * The pCPU actor: the physical CPU's idle task. When no vCPU is loaded on the pCPU, host
 * interrupts arriving there (a posted-interrupt notification that raced with a VM-exit, a
 * reschedule IPI, later the PI wake-up vector and NMIs) are taken by this thread; while a vCPU
 * holds the pCPU, that vCPU's thread takes them (in guest mode as VM-exits or posted-interrupt
 * processing, in root mode at its IRQ window).
 */
import { PCPU, RunState, VM, type PcpuId } from '../mem/layout.js';
import { runAborted } from '../sync/wait.js';
import { doorbellIdle } from '../sync/doorbell.js';
import { handleHostIrqs } from '../kvm/x86.js';
import type { KvmCtx } from '../kvm/x86-ops.js';
import { pcpuRunTryLock, pcpuRunUnlock, yieldToEventLoop } from './sched.js';

/** A pCPU actor. */
export class PcpuActor {
  constructor(
    readonly ctx: KvmCtx,
    readonly pcpu: PcpuId,
    /** Longest idle sleep before re-checking the run state (ms). */
    readonly idleSliceMs = 20,
  ) {}

  /** Set by the control plane's stop(). */
  stopRequested = false;

  private stopping(): boolean {
    return this.stopRequested || this.ctx.acc.peek(this.ctx.L.vm(VM.RUN_STATE)) === RunState.STOP || runAborted(this.ctx.acc);
  }

  /** Idle loop until the run stops. */
  async run(): Promise<void> {
    const { acc, L } = this.ctx;
    const irr = L.pcpu(this.pcpu, PCPU.HOST_IRR_SYS);
    while (!this.stopping()) {
      if (acc.readOnce(irr, 'pcpu:host-irr-read') !== 0) {
        if (pcpuRunTryLock(acc, this.pcpu)) {
          this.ctx.cpu = this.pcpu;
          handleHostIrqs(this.ctx);
          this.ctx.cpu = -1;
          pcpuRunUnlock(acc, this.pcpu);
        } else {
          // A vCPU holds this pCPU and takes its interrupts; look again after a while.
          acc.wait(L.pcpu(this.pcpu, PCPU.RUN_SERVING), acc.readOnce(L.pcpu(this.pcpu, PCPU.RUN_SERVING), 'pcpu:serving-read'), this.idleSliceMs, 'pcpu:busy');
        }
      } else {
        doorbellIdle(acc, irr, this.idleSliceMs, 'pcpu:idle');
      }
      await yieldToEventLoop();
    }
  }
}
