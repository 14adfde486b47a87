/**
 * Scenario actor tasks: what crosses to a pool thread and what comes back (plain data).
 */
import type { LayoutConfig } from '../mem/layout.js';
import type { WidenConfig } from '../mem/access.js';
import type { WireError } from '../errors.js';
import type { Violation } from '../invariants/checks.js';

/** One scenario actor's task. */
export interface ScenarioTask {
  kind: 'scenario';
  sab: SharedArrayBuffer;
  layout: LayoutConfig;
  scenario: string;
  /** A user's scenario: the module to import on the worker (ScenarioDef.module). */
  module?: string;
  variant: string;
  vcpus: number;
  seed: number;
  index: number;
  name: string;
  deadlineMs: number;
  epochMs: number;
  widen?: WidenConfig;
  trace: boolean;
  /** Stop after this many rounds (role 0 decides). */
  maxIterations: number;
  /** Controlled mode: the execution's control block (see mem/controlled); free mode when absent. */
  control?: SharedArrayBuffer;
}

/** What a scenario actor reports. */
export interface ScenarioTaskResult {
  name: string;
  ok: boolean;
  error?: WireError;
  /** Labels this actor recorded, with their ids (tracing only). */
  labels?: [string, number][];
  /** Role 0 only: rounds completed, and the first violation with its round and time. */
  iterations?: number;
  first?: { iteration: number; elapsedMs: number; violations: Violation[] } | null;
}
