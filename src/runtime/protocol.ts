/**
 * What crosses the main-thread / worker boundary: plain data only (structured clone).
 * The SharedArrayBuffer is shared, the MessagePort transferred, everything else copied.
 */
import type { MessagePort } from 'node:worker_threads';
import type { ActorId, LayoutConfig } from '../mem/layout.js';
import type { WidenConfig } from '../mem/access.js';
import type { ActorCounters } from '../kvm/stats.js';
import type { WireError } from '../errors.js';
import type { IpiStormParams, MsrWrite } from '../guest/programs.js';
import type { VcpuLoopParams } from '../actors/vcpu.js';
import type { Vendor } from '../kvm/vendors.js';

/** The guest workload every vCPU runs. */
export type WorkloadSpec =
  | { kind: 'ipi-storm'; storm: IpiStormParams }
  | { kind: 'ping-pong'; pinger: number; ponger: number; pingVector: number; pongVector: number; spin: boolean }
  | { kind: 'idle' }
  /** Each vCPU performs its own list of WRMSRs (index = vCPU), then idles in HLT. */
  | { kind: 'script'; writes: MsrWrite[][] };

/** Which actor a task runs. */
export type ActorRole = { kind: 'vcpu'; vcpu: number; home: number } | { kind: 'pcpu'; pcpu: number };

/** One actor's task, handed to a pool thread. */
export interface ActorTask {
  sab: SharedArrayBuffer;
  layout: LayoutConfig;
  vendor: Vendor;
  role: ActorRole;
  actor: ActorId;
  name: string;
  seed: number;
  workload: WorkloadSpec;
  trace: boolean;
  epochMs: number;
  deadlineMs: number;
  loop: VcpuLoopParams;
  widen?: WidenConfig;
  record?: boolean;
  /** Ids of the bug patches the machine's code runs with (kvm/patches.ts). */
  patches: string[];
  /** comlink control channel (transferred). */
  port: MessagePort;
}

/** What a finished actor reports. */
export interface ActorResult {
  name: string;
  ok: boolean;
  error?: WireError;
  counters: ActorCounters;
  /** Workload-specific figures (e.g. round trips of a ping-pong guest). */
  workload: Record<string, number>;
}

/** A live look at an actor over RPC. */
export interface ActorSnapshot {
  name: string;
  status: number;
  misc: Record<string, number>;
  workload: Record<string, number>;
}

/** Result of injecting an interrupt through an actor. */
export interface InjectResult {
  accepted: boolean;
  /** 'delivered' | 'dropped-disabled' | 'illegal-vector' | ... from the APIC's acceptance. */
  outcome: string;
}

/**
 * The control plane each actor exposes over comlink. Calls are served when the actor yields to
 * its event loop (once per time slice); hot-path state is read from shared memory instead.
 */
export interface ActorControl {
  /** Leave the start gate and run. */
  start(): void;
  /** Ask this actor to stop at its next yield. */
  stop(): void;
  /** Status and counters so far. */
  snapshot(): ActorSnapshot;
  /** Full accounting so far. */
  counters(): ActorCounters;
  /** Raise a fixed interrupt `vector` at vCPU `target` from this actor's thread (device MSI). */
  inject(target: number, vector: number): InjectResult;
  /** Set or clear an APICv inhibit reason from this actor's thread (kvm_set_or_clear_apicv_inhibit). */
  setApicvInhibit(reason: number, set: boolean): void;
  /** Take pCPU `pcpu` offline or bring it online from this actor's thread (cpu_down / cpu_up). */
  setPcpuOnline(pcpu: number, online: boolean): HotplugResult;
}

/** Result of a hotplug request: whether the state changed, or why it was refused. */
export interface HotplugResult {
  changed: boolean;
  error?: WireError;
}
