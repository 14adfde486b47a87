/**
 * hvemu — x86 interrupt virtualization (KVM's local APIC, VMX posted interrupts, ...) as actors
 * on Node worker threads over SharedArrayBuffers.
 *
 * Start with {@link Machine}: `Machine.create({ vendor: 'vmx', vcpus: 4, pcpus: 2 }).run({ seconds: 1 })`.
 */
export { Machine, actorNames } from './runtime/machine.js';
export type { RunOptions, RunHandle, RunResult, RunProgress, RunFailure, StuckActor } from './runtime/machine.js';
export { ActorPool, sharedPool, closeSharedPool } from './runtime/pool.js';
export { DEFAULT_MACHINE, resolveMachineConfig } from './runtime/config.js';
export type { MachineConfig, ResolvedMachineConfig } from './runtime/config.js';
export type { WorkloadSpec, ActorControl, ActorSnapshot, InjectResult } from './runtime/protocol.js';
export { DEFAULT_STORM, IpiStormGuest, PingPongGuest } from './guest/programs.js';
export type { IpiStormParams } from './guest/programs.js';
export { VENDORS, parseVendor } from './kvm/vendors.js';
export type { Vendor } from './kvm/vendors.js';
export type { KvmX86Ops, KvmCtx, GuestProgram, GuestAction } from './kvm/x86-ops.js';

export { EV, EVENT_NAMES, EVENT_FIELDS } from './trace/events.js';
export type { HvEvent } from './trace/events.js';
export { MsgpackEventWriter, readEventsMsgpack } from './trace/msgpack.js';

export { aggregateCounters } from './invariants/accounting.js';
export type { Accounting, Tally } from './invariants/accounting.js';
export { snapshotMachine, bitmapVectors } from './invariants/snapshot.js';
export type { MachineSnapshot, VcpuSnapshot, PcpuSnapshot } from './invariants/snapshot.js';
export { noLostInterrupt, noSleepingWithPending, isQuiescent, hasPendingInterrupt, attachEvents } from './invariants/checks.js';
export type { Violation } from './invariants/checks.js';

export { createLayout, assertLayout, describeAddr, VM, VCPU, PCPU, PID, ACTOR, RunState } from './mem/layout.js';
export type { Layout, LayoutConfig, Addr, VcpuId, PcpuId, ActorId } from './mem/layout.js';
export { Access, createMachineMemory, attachMachineMemory } from './mem/access.js';
export type { MachineMemory, AccessOptions, WidenConfig, RacePoint } from './mem/access.js';
/** Label id of a race point in 'mem:access' events (field `a`): FNV-1a of the label. */
export { fnv1a as racePointId } from './util/prng.js';

/** The race catalogue and running a race from a script (free mode: real threads). */
export { SCENARIOS, findScenario, registerScenario } from './scenarios/index.js';
/** Bugs as patches: a catalogue variant's patches for any run (`Machine.create({ patches: bugPatches('pi-wakeup-block:buggy') })`). */
export { bugPatches, variantInfo } from './scenarios/bugs.js';
export type { VariantInfo } from './scenarios/bugs.js';
export { definePatch, findPatch, allPatches, PatchSet, NO_PATCHES } from './kvm/patches.js';
export type { KernelPatch, PatchOrigin } from './kvm/patches.js';
export { runRace, resolveRace } from './scenarios/runner.js';
export type { RaceOptions, RaceResult, FirstViolation } from './scenarios/runner.js';
export type { ScenarioDef, ScenarioVariant, ScenarioParams, ScenarioCtx } from './scenarios/define.js';
/** Controlled mode: one access at a time, x86-TSO store buffers, strategies, exact replay. */
export { runControlledRace, replayRace, encodeReplay, decodeReplay } from './scenarios/controlled.js';
export type { ControlledRaceOptions, ControlledRaceResult, ReplaySpec, StrategyName } from './scenarios/controlled.js';
export { ControlledAccess, createControlBlock, readControlSummary } from './mem/controlled.js';
export type { ControlConfig, ControlSummary } from './mem/controlled.js';

export * as apic from './apic/index.js';
export * as sync from './sync/index.js';
/** Generic KVM: vcpu_enter_guest, requests, kick/wake, IRQ delivery, APICv inhibits, memslots, patches. */
export * as kvm from './kvm/index.js';
/** The pure invariant checkers and the accounting. */
export * as invariants from './invariants/index.js';
export { EmuError } from './errors.js';
export type { EmuErrorCode, WireError } from './errors.js';
