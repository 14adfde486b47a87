/**
 * The main thread's side of a run: build machine memory, start one actor per vCPU and pCPU on
 * the warm pool, open the start gate, run, drain to quiescence, stop, collect, check.
 *
 *   INIT --all actors ready + start()--> RUNNING --seconds elapsed / stop()--> DRAINING
 *   DRAINING --quiescent or drainMs--> STOP --all tasks returned--> result
 *   any --actor failed / deadline--> ABORT --> STOP --> result with failure report
 */
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { wrap, type Remote } from 'comlink';
import { Subject, type Observable } from 'rxjs';
import { ACTOR, ActorStatus, PCPU, RunState, VCPU, VM, describeAddr, type Layout } from '../mem/layout.js';
import { Access, createMachineMemory, type WidenConfig } from '../mem/access.js';
import { RingReader, type RawRecord } from '../mem/ring.js';
import { EV, EVENT_NAMES, sharedClockMs, type HvEvent } from '../trace/events.js';
import { aggregateCounters, type Accounting } from '../invariants/accounting.js';
import { snapshotMachine, type MachineSnapshot } from '../invariants/snapshot.js';
import { apicvStateConsistent, avicIsRunningConsistent, attachEvents, isQuiescent, noLostInterrupt, noSleepingWithPending, uretCacheMatchesMsrs, type Violation } from '../invariants/checks.js';
import { DEFAULT_STORM } from '../guest/programs.js';
import { DEFAULT_VCPU_LOOP, type VcpuLoopParams } from '../actors/vcpu.js';
import { vendorModule } from '../kvm/vendors.js';
import { EmuError, badParam, fromWire, type EmuErrorCode } from '../errors.js';
import { checkInt, checkNumber, checkVector, resolveMachineConfig, type MachineConfig, type ResolvedMachineConfig } from './config.js';
import { portEndpoint } from './endpoint.js';
import { sharedPool, type ActorPool } from './pool.js';
import { READY_STALL_MS, waitUntilReady } from './ready.js';
import { homePcpu, initMachineState } from './vm-init.js';
import type { ActorControl, ActorResult, ActorRole, ActorSnapshot, ActorTask, InjectResult, WorkloadSpec } from './protocol.js';

/** Options of one run. */
export interface RunOptions {
  /** Guest workload (default: the IPI storm). */
  workload?: WorkloadSpec;
  /**
   * Upper bound of the running phase in seconds (default 1; with `sends`, 300: then it only
   * catches a run that stops making progress).
   */
  seconds?: number;
  /**
   * End the running phase once the guests have sent this many interrupts in total (counted
   * from the live per-actor totals, checked about every 20 ms, so a run may overshoot), then
   * drain. A count budget does not depend on how fast or how idle the host is.
   */
  sends?: number;
  /** Seed of every random choice (guests, window widening). Default 1. */
  seed?: number;
  /** Emit events (rings + events$). Default false. */
  trace?: boolean;
  /** Longest any single wait of an actor may last before it is reported stuck (ms, default 10000). */
  deadlineMs?: number;
  /** Longest the drain phase waits for quiescence (ms, default 10000; it ends as soon as the machine is quiescent). */
  drainMs?: number;
  /** Seeded window widening at race points (same for every actor). */
  widen?: WidenConfig;
  /** Record the global order of labelled accesses as 'mem:access' events. */
  record?: boolean;
  /** vCPU loop tunables. */
  loop?: Partial<VcpuLoopParams>;
  /** Events kept for violation reports (default 20000). */
  recentEvents?: number;
}

/** Live progress, about every 20 ms. */
export interface RunProgress {
  phase: 'running' | 'draining';
  elapsedMs: number;
  totalMs: number;
  sent: number;
  delivered: number;
}

/** An actor that did not finish, and what it waited on. */
export interface StuckActor {
  actor: string;
  status: string;
  waitingOn: string;
}

/** Why a run failed. */
export interface RunFailure {
  code: EmuErrorCode;
  message: string;
  actor?: string;
  /** Actors that had to be terminated, and where they waited. */
  stuck: StuckActor[];
}

/** Everything a run measured and checked. */
export interface RunResult {
  machine: ResolvedMachineConfig;
  seed: number;
  workload: WorkloadSpec['kind'];
  /** Length of the running phase. */
  elapsedMs: number;
  accounting: Accounting;
  rate: { sentPerSec: number; deliveredPerSec: number };
  /** All vCPUs idle with nothing pending at the end of the drain phase. */
  quiescent: boolean;
  violations: Violation[];
  /** Stopped early by stop() (Ctrl-C). */
  interrupted: boolean;
  failure?: RunFailure;
  /** Summed workload figures (e.g. roundTrips of the ping-pong guest). */
  figures: Record<string, number>;
  events: { emitted: number; dropped: number };
  /** No failure and no violation. */
  ok: boolean;
}

/** A run in progress. */
export interface RunHandle {
  /** Machine events (only with `trace: true`); completes when the run ends. */
  readonly events$: Observable<HvEvent>;
  /** Progress samples; completes when the run ends. */
  readonly progress$: Observable<RunProgress>;
  /** Resolves with the result (never rejects for actor failures: see `failure`). */
  readonly result: Promise<RunResult>;
  /** Stop early: drain and report partial accounting. */
  stop(): void;
  /** Raise a device interrupt (fixed vector) at vCPU `target`, from pCPU `viaPcpu`'s thread. */
  inject(target: number, vector: number, viaPcpu?: number): Promise<InjectResult>;
  /**
   * Take pCPU `pcpu` offline (its vCPUs migrate to other pCPUs at their next scheduling point)
   * or bring it back online, from pCPU `viaPcpu`'s thread (default: the lowest other online
   * pCPU). Resolves with whether the state changed; rejects with `EMU_ERR_EBUSY` for the last
   * active pCPU. @kvm kernel/cpu.c cpu_down / cpu_up
   */
  setPcpuOnline(pcpu: number, online: boolean, viaPcpu?: number): Promise<boolean>;
  /** The machine's state right now. */
  snapshot(): MachineSnapshot;
  /** Set or clear an APICv inhibit reason (0..11, kernel bit order) from pCPU `viaPcpu`'s thread. */
  setApicvInhibit(reason: number, set: boolean, viaPcpu?: number): Promise<void>;
  /** Every actor's own view (status, counters so far), asked over comlink. */
  actorSnapshots(): Promise<ActorSnapshot[]>;
}

const STATUS_NAMES = Object.fromEntries(Object.entries(ActorStatus).map(([k, v]) => [v, k]));

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

interface ActorEntry {
  name: string;
  actor: number;
  remote: Remote<ActorControl>;
  port: MessagePort;
  promise: Promise<ActorResult>;
  result?: ActorResult;
}

/**
 * A machine: a vendor, vCPUs and pCPUs. Runs one workload at a time on a warm actor pool.
 */
export class Machine {
  readonly config: ResolvedMachineConfig;
  private readonly pool: ActorPool | undefined;
  private active = false;
  /** Set once a run ended with the VM bugged (KVM_BUG_ON): it never runs again. */
  private bugged = false;

  private constructor(config: ResolvedMachineConfig, pool: ActorPool | undefined) {
    this.config = config;
    this.pool = pool;
  }

  /** Validate the configuration (errors name the parameter) and create the machine. */
  static create(cfg: MachineConfig = {}, opts: { pool?: ActorPool } = {}): Machine {
    return new Machine(resolveMachineConfig(cfg), opts.pool);
  }

  /** Actor threads a run of this machine needs. */
  get actorCount(): number {
    return this.config.vcpus + this.config.pcpus;
  }

  /** Start a run. Throws EMU_ERR_BAD_PARAM for bad options, synchronously. */
  run(opts: RunOptions = {}): RunHandle {
    if (this.active) throw new EmuError('EMU_ERR_BAD_PARAM', 'this machine is already running (one run at a time)');
    if (this.bugged) throw new EmuError('EMU_ERR_VM_BUGGED', 'this VM is bugged (KVM_BUG_ON in an earlier run) and refuses to run again');
    const o = resolveRunOptions(opts, this.config);
    const events = new Subject<HvEvent>();
    const progress = new Subject<RunProgress>();
    const ctl = { stopRequested: false, entries: [] as ActorEntry[], main: undefined as Access | undefined, ready: false };
    this.active = true;
    const result = this.execute(o, ctl, events, progress)
      .then((r) => {
        if (r.failure?.code === 'EMU_ERR_VM_BUGGED') this.bugged = true;
        return r;
      })
      .finally(() => {
        this.active = false;
        events.complete();
        progress.complete();
      });
    const cfg = this.config;
    return {
      events$: events.asObservable(),
      progress$: progress.asObservable(),
      result,
      stop: () => {
        ctl.stopRequested = true;
      },
      inject: async (target, vector, viaPcpu = 0) => {
        checkInt('target', target, 0, cfg.vcpus - 1);
        checkVector('vector', vector);
        checkInt('viaPcpu', viaPcpu, 0, cfg.pcpus - 1);
        const e = ctl.entries[cfg.vcpus + viaPcpu];
        if (!e || !ctl.ready) throw new EmuError('EMU_ERR_BAD_PARAM', 'the run has not started yet (await the first progress event)');
        return await e.remote.inject(target, vector);
      },
      setApicvInhibit: async (reason, set, viaPcpu = 0) => {
        checkInt('reason', reason, 0, 11);
        checkInt('viaPcpu', viaPcpu, 0, cfg.pcpus - 1);
        const e = ctl.entries[cfg.vcpus + viaPcpu];
        if (!e || !ctl.ready) throw new EmuError('EMU_ERR_BAD_PARAM', 'the run has not started yet (await the first progress event)');
        await e.remote.setApicvInhibit(reason, set);
      },
      setPcpuOnline: async (pcpu, online, viaPcpu) => {
        checkInt('pcpu', pcpu, 0, cfg.pcpus - 1);
        if (typeof online !== 'boolean') throw badParam('online', `${String(online)} (must be true or false)`);
        if (!ctl.main || !ctl.ready) throw new EmuError('EMU_ERR_BAD_PARAM', 'the run has not started yet (await the first progress event)');
        const main = ctl.main;
        const otherOnline = [...Array(cfg.pcpus).keys()].find((q) => q !== pcpu && main.peek(main.layout.pcpu(q, PCPU.ONLINE)) !== 0);
        // With no other pCPU online, the request runs on pcpu itself and cpu_down refuses it.
        const via = viaPcpu ?? otherOnline ?? pcpu;
        checkInt('viaPcpu', via, 0, cfg.pcpus - 1);
        if (via === pcpu && !online && otherOnline !== undefined) throw badParam('viaPcpu', `${via} (a pCPU cannot take itself offline; use another online pCPU)`);
        const r = await ctl.entries[cfg.vcpus + via]!.remote.setPcpuOnline(pcpu, online);
        if (r.error) throw fromWire(r.error);
        return r.changed;
      },
      snapshot: () => {
        if (!ctl.main) throw new EmuError('EMU_ERR_BAD_PARAM', 'the run has not started yet');
        return this.snapshotWithVendor(ctl.main);
      },
      actorSnapshots: async () => {
        if (!ctl.ready) throw new EmuError('EMU_ERR_BAD_PARAM', 'the run has not started yet (await the first progress event)');
        return await Promise.all(ctl.entries.map((e) => e.remote.snapshot()));
      },
    };
  }

  /** snapshotMachine plus the vendor's per-pCPU state (TDX: host registers, user-return cache). */
  private snapshotWithVendor(main: Access): MachineSnapshot {
    const snap = snapshotMachine(main);
    const vendor = vendorModule(this.config.vendor);
    const hostVirt = vendor.hostSnapshot?.(main);
    if (hostVirt) snap.hostVirt = hostVirt;
    if (vendor.pcpuSnapshot) {
      for (const p of snap.pcpus) {
        const host = vendor.pcpuSnapshot(main, p.pcpu);
        if (host) p.host = host;
      }
    }
    return snap;
  }

  private async execute(
    o: ResolvedRunOptions,
    ctl: { stopRequested: boolean; entries: ActorEntry[]; main: Access | undefined; ready: boolean },
    events: Subject<HvEvent>,
    progress: Subject<RunProgress>,
  ): Promise<RunResult> {
    const cfg = this.config;
    const vendor = vendorModule(cfg.vendor);
    const layoutCfg = { vcpus: cfg.vcpus, pcpus: cfg.pcpus, ringRecords: cfg.ringRecords, savic: cfg.vendor === 'savic', packages: cfg.packages, vendorWords: vendor.areaWords?.(cfg.vcpus, cfg.pcpus, cfg.packages) ?? 0 };
    const mem = createMachineMemory(layoutCfg);
    const L = mem.layout;
    const main = new Access(mem, { actor: L.mainActor, name: 'main', deadlineMs: o.deadlineMs });
    ctl.main = main;
    initMachineState(main, vendor);
    const pool = this.pool ?? (await sharedPool(this.actorCount));
    pool.ensureCapacity(this.actorCount);

    const epochMs = sharedClockMs();
    const names = actorNames(L);
    const roles: ActorRole[] = [];
    for (let v = 0; v < cfg.vcpus; v++) roles.push({ kind: 'vcpu', vcpu: v, home: homePcpu(L, v) });
    for (let p = 0; p < cfg.pcpus; p++) roles.push({ kind: 'pcpu', pcpu: p });

    let settledCount = 0;
    let firstFailure: ActorResult | undefined;
    const entries: ActorEntry[] = roles.map((role, actor) => {
      const { port1, port2 } = new MessageChannel();
      const task: ActorTask = {
        sab: mem.sab,
        layout: layoutCfg,
        vendor: cfg.vendor,
        role,
        actor,
        name: names[actor]!,
        seed: o.seed,
        workload: o.workload,
        trace: o.trace,
        epochMs,
        deadlineMs: o.deadlineMs,
        loop: o.loop,
        patches: cfg.patches,
        port: port2,
      };
      if (o.widen) task.widen = o.widen;
      if (o.record) task.record = true;
      const entry: ActorEntry = { name: names[actor]!, actor, remote: wrap<ActorControl>(portEndpoint(port1)), port: port1, promise: Promise.resolve(undefined as never) };
      entry.promise = pool.run(task).then(
        (r) => r,
        (err: unknown) => ({
          name: entry.name,
          ok: false,
          error: { code: 'EMU_ERR_ACTOR_CRASHED' as const, message: `${entry.name}: worker crashed: ${err instanceof Error ? err.message : String(err)}`, actor: entry.name },
          counters: { actor, name: entry.name, sent: new Uint32Array(0), coalesced: new Uint32Array(0), delivered: new Uint32Array(0), misc: {} },
          workload: {},
        }),
      );
      entry.promise.then((r) => {
        entry.result = r;
        settledCount++;
        if (!r.ok && !firstFailure) {
          firstFailure = r;
          main.poke(L.vm(VM.ABORT), 1);
        }
      });
      return entry;
    });
    ctl.entries = entries;

    const reader = new RingReader(mem);
    const recent: HvEvent[] = [];
    let emitted = 0;
    const raw: RawRecord[] = [];
    const drainEvents = () => {
      if (!o.trace && !o.record) return;
      for (let a = 0; a < entries.length; a++) {
        raw.length = 0;
        reader.drain(a, raw);
        for (const r of raw) {
          const e: HvEvent = { type: EVENT_NAMES[r.kind] ?? `kind:${r.kind}`, actor: names[r.actor]!, a: r.a, b: r.b, t: r.c, extra: r.extra };
          emitted++;
          recent.push(e);
          events.next(e);
        }
      }
      if (recent.length > 2 * o.recentEvents) recent.splice(0, recent.length - o.recentEvents);
    };
    const totals = () => {
      let sent = 0;
      let delivered = 0;
      for (let a = 0; a < entries.length; a++) {
        sent += main.peek(L.actor(a, ACTOR.SENT));
        delivered += main.peek(L.actor(a, ACTOR.DELIVERED));
      }
      return { sent, delivered };
    };
    const aborted = () => main.peek(L.vm(VM.ABORT)) !== 0;

    // Ready: every actor attached, exposed its control plane and waits for start().
    const readiness = await waitUntilReady(() => main.peek(L.vm(VM.READY_COUNT)), entries.length, () => settledCount > 0, Math.max(READY_STALL_MS, o.deadlineMs));
    let startError: EmuError | undefined;
    if (!readiness.all && settledCount === 0) {
      startError = new EmuError('EMU_ERR_DEADLINE', `only ${readiness.ready} of ${entries.length} actors became ready (none more for ${Math.max(READY_STALL_MS, o.deadlineMs) / 1000} s)`);
    }
    if (!startError && settledCount === 0) {
      await Promise.all(entries.map((e) => e.remote.start()));
      ctl.ready = true;
      main.poke(L.vm(VM.RUN_STATE), RunState.RUNNING);
      main.poke(L.vm(VM.START_GATE), 1);
      main.notify(L.vm(VM.START_GATE), Infinity, 'runtime:start-gate');
    }

    // Running phase.
    const totalMs = o.seconds * 1000;
    const t0 = performance.now();
    if (!startError) {
      while (performance.now() - t0 < totalMs && !ctl.stopRequested && settledCount === 0 && !aborted()) {
        await sleep(Math.min(20, Math.max(1, totalMs - (performance.now() - t0))));
        drainEvents();
        const now = totals();
        progress.next({ phase: 'running', elapsedMs: performance.now() - t0, totalMs, ...now });
        if (o.sends !== undefined && now.sent >= o.sends) break;
      }
    }
    const elapsedMs = performance.now() - t0;

    // Drain phase: sources stop sending; wait for every vCPU to go idle with nothing pending.
    main.poke(L.vm(VM.RUN_STATE), RunState.DRAINING);
    let quiescent = false;
    const d0 = performance.now();
    if (!startError) {
      while (performance.now() - d0 < o.drainMs && settledCount === 0 && !aborted()) {
        if (isQuiescent(snapshotMachine(main))) {
          await sleep(5);
          if (isQuiescent(snapshotMachine(main))) {
            quiescent = true;
            break;
          }
        }
        await sleep(5);
        drainEvents();
        progress.next({ phase: 'draining', elapsedMs, totalMs, ...totals() });
      }
    }
    const drainSnap = this.snapshotWithVendor(main);

    // Stop: every actor leaves at its next check (≤ one block/idle slice).
    main.poke(L.vm(VM.RUN_STATE), RunState.STOP);
    wakeEveryone(main, L);
    const stopBy = o.deadlineMs + 5_000;
    const all = Promise.all(entries.map((e) => e.promise));
    let stopTimer: NodeJS.Timeout | undefined;
    const finished = await Promise.race([all.then(() => true), new Promise<boolean>((r) => (stopTimer = setTimeout(() => r(false), stopBy)))]);
    clearTimeout(stopTimer);
    let stuck: StuckActor[] = [];
    if (!finished) {
      stuck = describeStuck(main, L, entries);
      main.poke(L.vm(VM.ABORT), 1);
      await pool.destroy();
    }
    drainEvents();
    for (const e of entries) e.port.close();

    // Accounting and checks.
    const results = entries.map((e) => e.result).filter((r): r is ActorResult => r !== undefined);
    const accounting = aggregateCounters(
      results.map((r) => r.counters),
      cfg.vcpus,
    );
    let failure: RunFailure | undefined;
    const failures = results.filter((r) => !r.ok);
    const root = failures.find((r) => r.error?.code !== 'EMU_ERR_ABORTED') ?? failures[0];
    if (startError) failure = { code: startError.code, message: startError.message, stuck };
    else if (root?.error) {
      const err = fromWire(root.error);
      failure = { code: err.code, message: err.message, actor: root.name, stuck };
    } else if (!finished) {
      failure = { code: 'EMU_ERR_DEADLINE', message: `${stuck.length} actor(s) did not stop within ${stopBy} ms`, stuck };
    }
    let violations: Violation[] = [];
    if (!failure) {
      violations = quiescent
        ? [...noLostInterrupt(accounting, drainSnap), ...apicvStateConsistent(drainSnap), ...avicIsRunningConsistent(drainSnap), ...uretCacheMatchesMsrs(drainSnap)]
        : [...noSleepingWithPending(drainSnap), ...noLostInterrupt(accounting, drainSnap)];
      violations = attachEvents(violations, recent);
    }
    const figures: Record<string, number> = {};
    for (const r of results) for (const [k, v] of Object.entries(r.workload)) figures[k] = (figures[k] ?? 0) + v;
    let dropped = 0;
    for (let a = 0; a < entries.length; a++) dropped += reader.dropped(a);
    const secs = Math.max(elapsedMs, 1) / 1000;
    const out: RunResult = {
      machine: cfg,
      seed: o.seed,
      workload: o.workload.kind,
      elapsedMs,
      accounting,
      rate: { sentPerSec: accounting.totals.sent / secs, deliveredPerSec: accounting.totals.delivered / secs },
      quiescent,
      violations,
      interrupted: ctl.stopRequested,
      figures,
      events: { emitted, dropped },
      ok: !failure && violations.length === 0,
    };
    if (failure) out.failure = failure;
    void firstFailure;
    return out;
  }
}

/** Actor names by actor id: vcpuN, pcpuN, main. */
export function actorNames(L: Layout): string[] {
  const names: string[] = [];
  for (let v = 0; v < L.config.vcpus; v++) names.push(`vcpu${v}`);
  for (let p = 0; p < L.config.pcpus; p++) names.push(`pcpu${p}`);
  for (let k = 0; k < L.config.extraActors; k++) names.push(`actor${L.extraActor(k)}`);
  names.push('main');
  return names;
}

function wakeEveryone(main: Access, L: Layout): void {
  for (let v = 0; v < L.config.vcpus; v++) main.notify(L.vcpu(v, VCPU.TASK_STATE), Infinity, 'runtime:stop');
  for (let p = 0; p < L.config.pcpus; p++) {
    main.notify(L.pcpu(p, PCPU.HOST_IRR_SYS), Infinity, 'runtime:stop');
    main.notify(L.pcpu(p, PCPU.RUN_SERVING), Infinity, 'runtime:stop');
  }
}

function describeStuck(main: Access, L: Layout, entries: ActorEntry[]): StuckActor[] {
  return entries
    .filter((e) => !e.result)
    .map((e) => {
      const status = main.peek(L.actor(e.actor, ACTOR.STATUS));
      const label = main.peek(L.actor(e.actor, ACTOR.WAIT_LABEL));
      const addr = main.peek(L.actor(e.actor, ACTOR.WAIT_ADDR));
      return {
        actor: e.name,
        status: STATUS_NAMES[status] ?? String(status),
        waitingOn: label !== 0 ? describeAddr(L, addr) : 'running (not in a wait)',
      };
    });
}

interface ResolvedRunOptions {
  workload: WorkloadSpec;
  seconds: number;
  sends?: number;
  seed: number;
  trace: boolean;
  deadlineMs: number;
  drainMs: number;
  widen?: WidenConfig;
  record: boolean;
  loop: VcpuLoopParams;
  recentEvents: number;
}

function resolveRunOptions(o: RunOptions, cfg: ResolvedMachineConfig): ResolvedRunOptions {
  const workload = o.workload ?? { kind: 'ipi-storm', storm: DEFAULT_STORM };
  if (workload.kind === 'ipi-storm') {
    checkInt('burst', workload.storm.burst, 0, 1 << 20);
    checkVector('vectorLo', workload.storm.vectorLo);
    checkVector('vectorHi', workload.storm.vectorHi);
    if (workload.storm.vectorHi < workload.storm.vectorLo) throw new EmuError('EMU_ERR_BAD_PARAM', 'invalid vectorHi: below vectorLo', { detail: { param: 'vectorHi' } });
  } else if (workload.kind === 'ping-pong') {
    checkInt('pinger', workload.pinger, 0, cfg.vcpus - 1);
    checkInt('ponger', workload.ponger, 0, cfg.vcpus - 1);
    if (workload.pinger === workload.ponger) throw new EmuError('EMU_ERR_BAD_PARAM', 'invalid ponger: must differ from pinger', { detail: { param: 'ponger' } });
    checkVector('pingVector', workload.pingVector);
    checkVector('pongVector', workload.pongVector);
  } else if (workload.kind === 'script') {
    if (!Array.isArray(workload.writes) || workload.writes.length > cfg.vcpus) throw new EmuError('EMU_ERR_BAD_PARAM', `invalid writes: one list per vCPU (at most ${cfg.vcpus})`, { detail: { param: 'writes' } });
    for (const list of workload.writes) for (const w of list) checkInt('msr', w.msr, 0, 0xffffffff);
  }
  const loop = { ...DEFAULT_VCPU_LOOP, ...o.loop };
  checkInt('loop.guestSteps', loop.guestSteps, 1, 1 << 24);
  checkNumber('loop.sliceMs', loop.sliceMs, 0.01, 10_000);
  checkNumber('loop.blockSliceMs', loop.blockSliceMs, 0.1, 10_000);
  const r: ResolvedRunOptions = {
    workload,
    seconds: checkNumber('seconds', o.seconds ?? (o.sends === undefined ? 1 : 300), 0.01, 86_400),
    seed: checkInt('seed', o.seed ?? 1, 0, 0xffffffff),
    trace: o.trace ?? false,
    deadlineMs: checkInt('deadlineMs', o.deadlineMs ?? 10_000, 1, 3_600_000),
    drainMs: checkInt('drainMs', o.drainMs ?? 10_000, 0, 3_600_000),
    record: o.record ?? false,
    loop,
    recentEvents: checkInt('recentEvents', o.recentEvents ?? 20_000, 0, 10_000_000),
  };
  if (o.sends !== undefined) r.sends = checkInt('sends', o.sends, 1, Number.MAX_SAFE_INTEGER);
  if (o.widen) {
    checkNumber('widen.probability', o.widen.probability, 0, 1);
    checkInt('widen.maxSpins', o.widen.maxSpins, 0, 1 << 24);
    r.widen = { ...o.widen, seed: r.seed };
  }
  return r;
}

/** Event kinds, re-exported for subscribers. */
export { EV };
