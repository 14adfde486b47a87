/**
 * Pieces scenarios share when their actors run real KVM code (vcpu_enter_guest, the vendor ops)
 * on a slice of a machine: a KvmCtx per scenario actor, and a guest that records what it takes.
 */
import { PCPU, VCPU, VM, vecPos, vecWord, type Addr } from '../mem/layout.js';
import { OUTSIDE_GUEST_MODE } from '../kvm/modes.js';
import { initMachineState } from '../runtime/vm-init.js';
import { vendorModule, type Vendor } from '../kvm/vendors.js';
import type { Access } from '../mem/access.js';
import { ActorStats } from '../kvm/stats.js';
import type { GuestAction, GuestProgram, KvmCtx, KvmX86Ops } from '../kvm/x86-ops.js';
import { Tracer, sharedClockMs } from '../trace/events.js';
import type { ScenarioCtx } from './define.js';

/**
 * A guest that only runs; its handler records every vector it takes in its own 256-bit
 * `received` bitmap (8 words, guest memory written by the guest's own CPU).
 * @emulator
 */
export class RecordingGuest implements GuestProgram {
  private static readonly RUN: GuestAction = { kind: 'run' };
  constructor(
    private readonly acc: Access,
    private readonly received: Addr,
  ) {}
  onInterrupt(vector: number): void {
    const a = (this.received + vecWord(vector)) as Addr;
    this.acc.poke(a, this.acc.peek(a) | (1 << vecPos(vector)));
  }
  step(): GuestAction {
    return RecordingGuest.RUN;
  }
}

const kvmCtxs = new WeakMap<ScenarioCtx, KvmCtx>();

/**
 * This scenario actor's KvmCtx (made once per actor): the first `params.vcpus` roles are vCPU v
 * running on pCPU v; every other role (device, VMM) runs on no pCPU of the VM.
 * @emulator
 */
export function scenarioKvmCtx(ctx: ScenarioCtx, ops: (ctx: ScenarioCtx) => KvmX86Ops): KvmCtx {
  let k = kvmCtxs.get(ctx);
  if (!k) {
    const { acc, L, params } = ctx;
    const self = ctx.index < params.vcpus ? ctx.index : -1;
    k = {
      acc,
      L,
      nrVcpus: params.vcpus,
      ops: ops(ctx),
      stats: new ActorStats(acc, params.vcpus),
      trace: new Tracer(acc, false, sharedClockMs()),
      runningVcpu: self,
      cpu: self,
      needResched: () => false,
      clockUs: () => 0,
      patches: ctx.patches,
    };
    kvmCtxs.set(ctx, k);
  }
  return k;
}

/**
 * A fresh VM of `vendor` for a round (KVM_CREATE_VM + KVM_CREATE_VCPU, as the machine does): no
 * inhibit, not bugged, vCPU v loaded on pCPU v and outside guest mode, every scenario scratch
 * word (the first `scratchWords`) cleared.
 * @emulator
 */
export function resetVmSlice(acc: Access, vendor: Vendor, vcpus: number, scratchWords: number): void {
  const L = acc.layout;
  initMachineState(acc, vendorModule(vendor));
  acc.poke(L.vm(VM.APICV_INHIBIT_REASONS), 0);
  acc.poke(L.vm(VM.VM_BUGGED), 0);
  for (let v = 0; v < vcpus; v++) {
    acc.poke(L.vcpu(v, VCPU.MODE), OUTSIDE_GUEST_MODE);
    acc.poke(L.vcpu(v, VCPU.REQUESTS), 0);
    acc.poke(L.vcpu(v, VCPU.CPU), v);
    acc.poke(L.vcpu(v, VCPU.GUEST_INTR_STATUS), 0);
    acc.poke(L.vcpu(v, VCPU.TIMER_DEADLINE), 0);
    acc.poke(L.pcpu(v, PCPU.CURRENT_VCPU), v);
    acc.poke(L.pcpu(v, PCPU.HOST_IRR_SYS), 0);
  }
  for (let i = 0; i < scratchWords; i++) acc.poke(L.scratch(i), 0);
}
