/**
 * The body of an actor task inside a pool thread: attach to machine memory, build the actor,
 * expose its control plane over comlink, wait for start, run, report.
 */
import { expose } from 'comlink';
import { ACTOR, ActorStatus, RunState, VM } from '../mem/layout.js';
import { Access, attachMachineMemory } from '../mem/access.js';
import { waitWhileEqual } from '../sync/wait.js';
import { ActorStats } from '../kvm/stats.js';
import { kvmIrqDeliveryToApic } from '../kvm/irq.js';
import { kvmSetOrClearApicvInhibit } from '../kvm/apicv.js';
import type { GuestProgram, KvmCtx } from '../kvm/x86-ops.js';
import { Tracer, sharedClockMs } from '../trace/events.js';
import { IpiStormGuest, PingPongGuest, ScriptGuest } from '../guest/programs.js';
import { deriveSeed } from '../util/prng.js';
import { vendorModule } from '../kvm/vendors.js';
import { VcpuActor } from '../actors/vcpu.js';
import { PcpuActor } from '../actors/pcpu.js';
import { cpuDown, cpuUp } from '../actors/hotplug.js';
import { toWire } from '../errors.js';
import { portEndpoint } from './endpoint.js';
import type { ActorControl, ActorResult, ActorTask, WorkloadSpec } from './protocol.js';
import { PatchSet } from '../kvm/patches.js';

function makeGuest(w: WorkloadSpec, self: number, nrVcpus: number, seed: number, sending: () => boolean, clockUs: () => number): GuestProgram & { figures(): Record<string, number> } {
  switch (w.kind) {
    case 'ipi-storm': {
      const g = new IpiStormGuest(self, nrVcpus, w.storm, seed, sending, clockUs);
      return Object.assign(g, { figures: () => ({}) });
    }
    case 'ping-pong': {
      const g = new PingPongGuest(self, w.pinger, w.ponger, w.pingVector, w.pongVector, sending, w.spin);
      return Object.assign(g, { figures: () => ({ roundTrips: g.roundTrips }) });
    }
    case 'script': {
      const g = new ScriptGuest(w.writes[self] ?? []);
      return Object.assign(g, { figures: () => ({ received: g.received.length }) });
    }
    case 'idle':
      return { onInterrupt: () => undefined, step: () => ({ kind: 'hlt' }), figures: () => ({}) };
  }
}

/** Run one actor task to completion. Never throws: failures come back as `ok: false`. */
export async function runActorTask(task: ActorTask): Promise<ActorResult> {
  const mem = attachMachineMemory(task.sab, task.layout);
  const L = mem.layout;
  const opts: ConstructorParameters<typeof Access>[1] = { actor: task.actor, name: task.name, deadlineMs: task.deadlineMs };
  if (task.widen) opts.widen = task.widen;
  if (task.record) opts.record = task.record;
  const acc = new Access(mem, opts);
  const nrVcpus = L.config.vcpus;
  const stats = new ActorStats(acc, nrVcpus);
  const vendor = vendorModule(task.vendor);
  const role = task.role;
  const ctx: KvmCtx = {
    acc,
    L,
    nrVcpus,
    ops: vendor.ops,
    stats,
    trace: new Tracer(acc, task.trace, task.epochMs),
    runningVcpu: role.kind === 'vcpu' ? role.vcpu : -1,
    cpu: -1,
    needResched: () => false,
    clockUs: () => Math.round((sharedClockMs() - task.epochMs) * 1000),
    patches: new PatchSet(task.patches),
  };
  const sending = () => acc.peek(L.vm(VM.RUN_STATE)) === RunState.RUNNING;
  const guest = role.kind === 'vcpu' ? makeGuest(task.workload, role.vcpu, nrVcpus, deriveSeed(task.seed, role.vcpu), sending, ctx.clockUs) : undefined;
  const actor = role.kind === 'vcpu' ? new VcpuActor(ctx, role.vcpu, role.home, guest!, task.loop) : new PcpuActor(ctx, role.pcpu);

  let startGate: () => void = () => undefined;
  const started = new Promise<void>((resolve) => (startGate = resolve));
  const api: ActorControl = {
    start: () => startGate(),
    stop: () => {
      actor.stopRequested = true;
    },
    snapshot: () => ({ name: task.name, status: acc.peek(L.actor(task.actor, ACTOR.STATUS)), misc: { ...stats.misc }, workload: guest?.figures() ?? {} }),
    counters: () => stats.toCounters(),
    setApicvInhibit(reason: number, set: boolean) {
      kvmSetOrClearApicvInhibit(ctx, reason, set);
    },
    setPcpuOnline(pcpu: number, online: boolean) {
      try {
        const cbs = vendor.hotplug?.(acc, ctx.patches) ?? {};
        return { changed: online ? cpuUp(acc, pcpu, cbs) : cpuDown(acc, pcpu, cbs) };
      } catch (e) {
        return { changed: false, error: toWire(e) };
      }
    },
    inject(target: number, vector: number) {
      const outcome = kvmIrqDeliveryToApic(ctx, target, vector);
      return { accepted: outcome === 'delivered', outcome };
    },
  };
  expose(api, portEndpoint(task.port));
  const status = L.actor(task.actor, ACTOR.STATUS);
  try {
    acc.poke(status, ActorStatus.READY);
    acc.atomicAdd(L.vm(VM.READY_COUNT), 1, 'runtime:ready');
    // Wait for start over RPC, giving up if the run is aborted meanwhile.
    while (!(await Promise.race([started.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 20))]))) {
      if (acc.peek(L.vm(VM.ABORT)) !== 0) throw new Error('aborted before start');
    }
    waitWhileEqual(acc, L.vm(VM.START_GATE), 0, 'runtime:start-gate', 'the start gate', Math.max(task.deadlineMs, 30_000));
    acc.poke(status, ActorStatus.RUNNING);
    await actor.run();
    acc.poke(status, ActorStatus.DONE);
    return { name: task.name, ok: true, counters: stats.toCounters(), workload: guest?.figures() ?? {} };
  } catch (e) {
    acc.poke(status, ActorStatus.FAILED);
    acc.poke(L.vm(VM.ABORT), 1);
    const error = toWire(e);
    error.actor ??= task.name;
    return { name: task.name, ok: false, error, counters: stats.toCounters(), workload: guest?.figures() ?? {} };
  } finally {
    task.port.close();
  }
}
