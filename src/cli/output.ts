/**
 * Rendering of run results: a JSON document (stable shape, for scripts) or text tables.
 */
import Table from 'cli-table3';
import type { RunResult } from '../runtime/machine.js';
import type { RaceResult } from '../scenarios/runner.js';
import type { ControlledRaceResult } from '../scenarios/controlled.js';
import { MODE_NAMES } from '../kvm/modes.js';

/** What became of `run --trace-out FILE`: events written, or why the file could not be. */
export interface TraceOutcome {
  file: string;
  /** Events in the file (null when it could not be written). */
  written: number | null;
  error: string | null;
}

/** How a run's events were recorded (what `run` knows beyond its result). */
export interface EventsReport {
  /** Events were recorded at all (false with --no-trace). Default true. */
  traced?: boolean;
  traceOut?: TraceOutcome;
}

/**
 * The `events` object of `run --json`: `emitted` events read from the rings (all of them are in
 * the file when `written` equals it), `dropped` events never recorded because an actor's ring
 * (`ringRecords` records) was full, and the --trace-out file, if any.
 */
function eventsJson(r: RunResult, e: EventsReport): Record<string, unknown> {
  return {
    traced: e.traced ?? true,
    emitted: r.events.emitted,
    dropped: r.events.dropped,
    ringRecords: r.machine.ringRecords,
    file: e.traceOut?.file ?? null,
    written: e.traceOut?.written ?? null,
    error: e.traceOut?.error ?? null,
  };
}

/** Why events are dropped, for the reports. */
export function droppedWhy(ringRecords: number): string {
  return `an actor's event ring (${fmt(ringRecords)} records) was full: it filled faster than the main thread drains it, about every 20 ms`;
}

/** The line `run --trace-out FILE` prints once the file is written: what was kept and what was dropped. */
export function traceOutText(r: RunResult, t: TraceOutcome): string {
  if (t.written === null) return `hvemu: could not write --trace-out ${t.file}: ${t.error ?? 'unknown error'} (the run's result is above; no partial file was left at that path)`;
  const dropped = r.events.dropped > 0 ? `${fmt(r.events.dropped)} more dropped, the file has gaps: ${droppedWhy(r.machine.ringRecords)}` : 'none dropped';
  return `wrote ${fmt(t.written)} events to ${t.file} (${dropped})`;
}

/** The JSON document `hvemu run --json` prints. */
export function resultToJson(r: RunResult, e: EventsReport = {}): Record<string, unknown> {
  return {
    machine: r.machine,
    seed: r.seed,
    workload: r.workload,
    seconds: +(r.elapsedMs / 1000).toFixed(3),
    ok: r.ok,
    quiescent: r.quiescent,
    interrupted: r.interrupted,
    totals: r.accounting.totals,
    rate: { sentPerSec: Math.round(r.rate.sentPerSec), deliveredPerSec: Math.round(r.rate.deliveredPerSec) },
    perVcpu: r.accounting.perVcpu,
    perVector: r.accounting.perVector,
    counters: r.accounting.misc,
    figures: r.figures,
    violations: r.violations,
    failure: r.failure ?? null,
    events: eventsJson(r, e),
  };
}

function table(head: string[], tty: boolean): Table.Table {
  return new Table(tty ? { head } : { head, style: { head: [], border: [] } });
}

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');

/** Human-readable report. */
export function resultToText(r: RunResult, tty: boolean, e: EventsReport = {}): string {
  const lines: string[] = [];
  const m = r.machine;
  lines.push(`hvemu ${r.workload} on ${m.vendor}: ${m.vcpus} vCPUs on ${m.pcpus} pCPUs, seed ${r.seed}, ${(r.elapsedMs / 1000).toFixed(2)} s${r.interrupted ? ' (interrupted: partial accounting)' : ''}`);
  const t = table(['vCPU', 'sent', 'coalesced', 'delivered', 'lost'], tty);
  for (const v of r.accounting.perVcpu) t.push([`vcpu${v.vcpu}`, fmt(v.sent), fmt(v.coalesced), fmt(v.delivered), fmt(v.lost)]);
  const tot = r.accounting.totals;
  t.push(['total', fmt(tot.sent), fmt(tot.coalesced), fmt(tot.delivered), fmt(tot.lost)]);
  lines.push(t.toString());
  lines.push(`rate: ${fmt(r.rate.sentPerSec)} interrupts sent/s, ${fmt(r.rate.deliveredPerSec)} delivered/s`);
  const c = r.accounting.misc;
  lines.push(
    `path: ${fmt(c.vmexits ?? 0)} VM-exits, ${fmt(c.notifications ?? 0)} notification IPIs, ${fmt(c.hwPiProcessed ?? 0)} posted-interrupt processings in guest, ${fmt(c.pirSyncs ?? 0)} PIR syncs at entry, ${fmt(c.halts ?? 0)} HLTs, ${fmt(c.wakeups ?? 0)} wake-ups`,
  );
  if (r.figures.roundTrips !== undefined) lines.push(`round trips: ${fmt(r.figures.roundTrips)} (${((r.elapsedMs * 1000) / Math.max(1, r.figures.roundTrips)).toFixed(2)} µs each)`);
  const events =
    e.traced === false
      ? 'not recorded (--no-trace)'
      : `${fmt(r.events.emitted)} recorded, ${fmt(r.events.dropped)} dropped${r.events.dropped > 0 ? ` (${droppedWhy(r.machine.ringRecords)})` : ''}`;
  lines.push(`quiescent at the end: ${r.quiescent ? 'yes' : 'no'}; events: ${events}`);
  if (r.failure) {
    lines.push(`FAILED (${r.failure.code}) ${r.failure.actor ? r.failure.actor + ': ' : ''}${r.failure.message}`);
    for (const s of r.failure.stuck) lines.push(`  stuck: ${s.actor} (${s.status}) waiting on ${s.waitingOn}`);
  }
  for (const v of r.violations) {
    lines.push(`VIOLATION ${v.invariant}: ${v.message}`);
    for (const e of v.events ?? []) lines.push(`    t=${e.t}µs ${e.actor} ${e.type} a=${e.a} b=${e.b}${e.type === 'vcpu:mode' ? ' (' + (MODE_NAMES[e.b] ?? e.b) + ')' : ''}`);
  }
  lines.push(r.ok ? 'result: OK — every interrupt sent was delivered or coalesced (lost = 0)' : 'result: FAILED');
  return lines.join('\n');
}

/** The JSON document `hvemu race --json` prints. */
export function raceToJson(r: RaceResult): Record<string, unknown> {
  return {
    scenario: r.scenario,
    variant: r.variant,
    seed: r.seed,
    vcpus: r.vcpus,
    iterations: r.iterations,
    elapsedMs: Math.round(r.elapsedMs),
    violations: r.violations,
    first: r.first ? { iteration: r.first.iteration, elapsedMs: +r.first.elapsedMs.toFixed(3), invariant: r.first.invariant, detail: r.first.detail } : null,
    widen: r.widen,
    interrupted: r.interrupted,
    failure: r.failure,
    trace: r.trace,
  };
}

/** Human-readable race report. */
export function raceToText(r: RaceResult): string {
  const lines = [`hvemu race ${r.scenario} --variant ${r.variant} --seed ${r.seed} (${r.vcpus} vCPUs${r.widen ? `, widening p=${r.widen.probability} up to ${r.widen.maxSpins} spins` : ', no widening'})`];
  lines.push(`${fmt(r.iterations)} rounds in ${(r.elapsedMs / 1000).toFixed(2)} s${r.interrupted ? ' (interrupted)' : ''}`);
  if (r.first) {
    lines.push(`VIOLATION ${r.first.invariant} in round ${r.first.iteration} after ${r.first.elapsedMs.toFixed(1)} ms:`);
    lines.push(`  ${r.first.detail}`);
    for (const v of r.first.violations.slice(1, 6)) lines.push(`  also ${v.invariant}: ${v.message}`);
  } else if (!r.failure) {
    lines.push('no violation');
  }
  if (r.failure) {
    lines.push(`FAILED (${r.failure.code}) ${r.failure.actor ? r.failure.actor + ': ' : ''}${r.failure.message}`);
    for (const s of r.failure.stuck) lines.push(`  stuck: ${s.actor} (${s.status}) waiting on ${s.waitingOn}`);
  }
  if (r.trace) {
    const kept = `the newest before the stop, of ${fmt(r.trace.recorded)} recorded; each actor's flight recorder keeps its last ${fmt(r.trace.ringRecords)}`;
    if (r.trace.error === null) lines.push(`trace: ${fmt(r.trace.events)} accesses written to ${r.trace.file} (${kept}; open it in https://ui.perfetto.dev)`);
    else lines.push(`trace: NOT written to ${r.trace.file}: ${r.trace.error}`);
  }
  // Free mode: the seed fixes the round inputs, not the interleaving of the threads.
  lines.push(`rerun (same inputs; the interleaving is the host's, so not an exact replay): hvemu race ${r.scenario} --variant ${r.variant} --seed ${r.seed}${r.widen ? '' : ' --no-widen'}`);
  if (r.first || r.failure) lines.push(`exact replay: search in controlled mode, e.g. hvemu race ${r.scenario} --variant ${r.variant} --mode controlled --seed ${r.seed}, and replay the token it prints`);
  return lines.join('\n');
}

/** `hvemu race --mode controlled --json` / `hvemu replay --json`. */
export function controlledRaceToJson(r: ControlledRaceResult): Record<string, unknown> {
  return {
    ...raceToJson(r),
    mode: r.mode,
    strategy: r.strategy,
    schedules: r.schedules,
    steps: r.steps,
    exhausted: r.exhausted,
    guarantee: r.guarantee,
    replay: r.replay,
    traceDigest: r.traceDigest,
    execution: r.execution,
  };
}

/** The text report of a controlled search or a replay. */
export function controlledRaceToText(r: ControlledRaceResult): string {
  const lines = [`hvemu race ${r.scenario} --variant ${r.variant} --mode controlled --strategy ${r.strategy} --seed ${r.seed} (${r.vcpus} vCPUs, x86-TSO store buffers)`];
  lines.push(`${fmt(r.schedules)} schedule${r.schedules === 1 ? '' : 's'}, ${fmt(r.steps)} scheduling steps in ${(r.elapsedMs / 1000).toFixed(2)} s${r.interrupted ? ' (interrupted)' : ''}`);
  if (r.first) {
    lines.push(`VIOLATION ${r.first.invariant} in round ${r.first.iteration} of the failing schedule:`);
    lines.push(`  ${r.first.detail}`);
    for (const v of r.first.violations.slice(1, 6)) lines.push(`  also ${v.invariant}: ${v.message}`);
  } else if (!r.failure) {
    lines.push('no violation');
  }
  if (r.failure) lines.push(`FAILED (${r.failure.code}) ${r.failure.actor ? r.failure.actor + ': ' : ''}${r.failure.message}`);
  if (r.execution) lines.push(`execution: ${fmt(r.execution.steps)} steps, ${fmt(r.execution.drains)} store-buffer drains, ${fmt(r.execution.preemptions)} preemptions; trace digest ${r.traceDigest}`);
  lines.push(r.guarantee);
  if (r.replay) lines.push(`replay (exact, any host, any load; add --shrink for the shrunk CPU-column diagram): hvemu replay ${r.replay}`);
  return lines.join('\n');
}

/** The tour's controlled table: scenario, variant, schedules, first violation, trace digest. */
export function controlledTable(rs: readonly ControlledRaceResult[], tty: boolean): string {
  const t = table(['scenario', 'variant', 'schedules', 'first violation', 'invariant', 'trace digest'], tty);
  for (const r of rs) {
    const what = r.first ? `schedule ${fmt(r.schedules)}, round ${r.first.iteration}` : r.failure ? `failed: ${r.failure.code}` : `none in ${fmt(r.schedules)} schedules`;
    t.push([r.scenario, r.variant, fmt(r.schedules), what, r.first?.invariant ?? '', r.first ? (r.traceDigest ?? '') : '']);
  }
  return t.toString();
}

/** The tour's race table: scenario, variant, iterations, violations, time to first violation. */
export function racesTable(rs: readonly RaceResult[], tty: boolean): string {
  const t = table(['scenario', 'variant', 'iterations', 'violations', 'first violation', 'invariant'], tty);
  for (const r of rs) {
    const when = r.first ? `round ${fmt(r.first.iteration)}, ${r.first.elapsedMs.toFixed(1)} ms` : r.failure ? `failed: ${r.failure.code}` : `none in ${(r.elapsedMs / 1000).toFixed(1)} s`;
    t.push([r.scenario, r.variant, fmt(r.iterations), String(r.violations), when, r.first?.invariant ?? '']);
  }
  return t.toString();
}
