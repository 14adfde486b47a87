/**
 * A litmus test as a scenario: one role per thread plus a starter, found by `findScenario` as
 * `litmus:<name>` (e.g. `litmus:SB`) but kept out of the race catalogue.
 *
 *   round:  every thread runs its instructions through the access layer (MOV [x],$v =
 *           writeOnce, MOV r,[x] = readOnce, MFENCE = smpMb, XCHG = xchg), then publishes its
 *           registers, packed into one word on its own line (one poke, after the last instruction)
 *   check:  P0 reads the final state (registers and locations, peek), records it in a histogram
 *           of final states (bookkeeping), and reports `litmusTsoAllowed` if x86-TSO does not
 *           allow it
 *   reset:  locations and published words back to 0
 *
 * Roles: P0, P1, ... (one per thread; P0 checks) and, in the `controlled` variant, the starter.
 * Every location and every thread's registers sit on their own 64-byte line. In free mode the
 * threads meet at a spin rendezvous before their first instruction, so they race within about one
 * cache-line transfer (the round barrier can wake a sleeper tens of µs late).
 *
 * Controlled mode (one execution = one round, explored by ./litmus-run): no rendezvous, the
 * scheduler alone orders the accesses. The threads wait at a start gate that one more role, the
 * starter, opens once all of them wait there; the starter then parks, so the instructions start
 * from one known state with every thread woken and none of them running (whichever runs first,
 * it is not a preemption). After publishing, each thread parks for good too (a wait with no
 * timeout on a word nobody writes). Once every thread is parked and every store buffer drained,
 * the runtime ends the execution (it reports every actor blocked for good, which the litmus runner
 * expects) with the final state in memory. So an execution's decision log ends with the test's
 * last step, and the runner's DFS need not explore the end barrier, the check and the reset,
 * which cannot change the final state. The free variant has no starter (on a 2-core host a third
 * thread would keep the two racing ones from running at once).
 */
import { planScratch, type Addr } from '../mem/layout.js';
import type { Access } from '../mem/access.js';
import { pollUntil } from '../sync/wait.js';
import type { Violation } from '../invariants/checks.js';
import { badParam } from '../errors.js';
import type { ScenarioCtx, ScenarioDef } from './define.js';
import { LITMUS_TESTS, candidateValues, formatState, parseObserved, threadRegs, type LitmusOp, type LitmusTest } from './litmus-tests.js';

/** Prefix of a litmus scenario's id. */
export const LITMUS_PREFIX = 'litmus:';

/** The extra role (after the threads P0, P1, ...) that opens the start gate in controlled mode. */
export const STARTER = 'starter';

/**
 * The two variants of a litmus scenario: `free` (the threads only; run by the race runner) and
 * `controlled` (the threads and the starter; run by the controlled runtime).
 */
export const LITMUS_VARIANT = { free: 'free', controlled: 'controlled' } as const;

/** A thread's published word: this bit, and its registers packed 8 bits each in register order. */
export const PUBLISHED = 1 << 30;
/** Registers a thread may have (8 bits each below {@link PUBLISHED}). */
const MAX_REGS = 3;

/** Where a litmus test's words live in scratch memory, and how its final states are indexed. */
export interface LitmusPlan {
  /** Scratch word of each location. */
  loc: Record<string, number>;
  /** Scratch word of each thread's published word ({@link PUBLISHED} | packed registers). */
  out: number[];
  /** Each thread's registers, in packing order. */
  regs: string[][];
  /** Free mode: rendezvous counter. */
  go: number;
  /** Controlled mode: threads waiting at the start gate. */
  arrive: number;
  /** Controlled mode: the start gate (1 = open), opened by the starter. */
  gate: number;
  /** Controlled mode: the word parked threads wait on (never written). */
  park: number;
  /** Histogram: one counter per candidate final state (mixed radix over {@link candidateValues}). */
  hist: number;
  /** Counter of final states outside the candidates (a value no instruction wrote). */
  other: number;
  /** The last final state checked (values in `observe` order). */
  last: number;
  /** Candidate values of each observed component. */
  candidates: number[][];
  /** Number of candidate final states. */
  states: number;
  /** Scratch words the test needs. */
  words: number;
}

const plans = new Map<string, LitmusPlan>();

/** The scratch plan of a litmus test (EMU_ERR_BAD_PARAM if its registers do not pack). @emulator */
export function litmusPlan(t: LitmusTest): LitmusPlan {
  let p = plans.get(t.name);
  if (p) return p;
  const candidates = candidateValues(t);
  const states = candidates.reduce((n, c) => n * c.length, 1);
  const regs = t.threads.map((ops) => threadRegs(ops));
  if (regs.some((r) => r.length > MAX_REGS) || candidates.some((c) => c.some((v) => v < 0 || v > 255))) {
    throw badParam('test', `${t.name}: at most ${MAX_REGS} registers per thread and values 0..255`);
  }
  const areas: Record<string, number> = { go: 1, arrive: 1, gate: 1, park: 1, other: 1, last: t.observe.length, hist: states };
  for (const l of t.locs) areas[`loc:${l}`] = 1;
  t.threads.forEach((_, i) => (areas[`out:${i}`] = 1));
  const { at, words } = planScratch(areas);
  p = {
    loc: Object.fromEntries(t.locs.map((l) => [l, at[`loc:${l}`]!])),
    out: t.threads.map((_, i) => at[`out:${i}`]!),
    regs,
    go: at['go']!,
    arrive: at['arrive']!,
    gate: at['gate']!,
    park: at['park']!,
    hist: at['hist']!,
    other: at['other']!,
    last: at['last']!,
    candidates,
    states,
    words,
  };
  plans.set(t.name, p);
  return p;
}

/** Index of a final state in the histogram, or -1 when a value is not a candidate. @emulator */
export function stateIndex(p: LitmusPlan, values: readonly number[]): number {
  let idx = 0;
  for (let i = 0; i < p.candidates.length; i++) {
    const k = p.candidates[i]!.indexOf(values[i]!);
    if (k < 0) return -1;
    idx = idx * p.candidates[i]!.length + k;
  }
  return idx;
}

/** The final state of histogram index `idx` (values in `observe` order). @emulator */
export function stateAt(p: LitmusPlan, idx: number): number[] {
  const values: number[] = new Array<number>(p.candidates.length);
  for (let i = p.candidates.length - 1; i >= 0; i--) {
    const c = p.candidates[i]!;
    values[i] = c[idx % c.length]!;
    idx = Math.floor(idx / c.length);
  }
  return values;
}

/** One instruction, ready to run: its kind, machine word, value, label and register slot. */
interface Step {
  op: LitmusOp['op'];
  addr: Addr;
  value: number;
  label: string;
  /** Register slot (packing order) the result goes to, or -1. */
  reg: number;
}

/** Each actor's compiled thread (built once: nothing is computed between a store and the next load). */
const programs = new WeakMap<ScenarioCtx, Step[]>();

function program(ctx: ScenarioCtx, t: LitmusTest, p: LitmusPlan): Step[] {
  const known = programs.get(ctx);
  if (known) return known;
  const me = ctx.index;
  const prog: Step[] = t.threads[me]!.map((o) => ({
    op: o.op,
    // MFENCE touches no location (smpMb uses the actor's own fence word); the address is unused.
    addr: ctx.L.scratch(o.op === 'mfence' ? p.park : p.loc[o.loc]!),
    value: o.op === 'store' || o.op === 'xchg' ? o.value : 0,
    label: o.op === 'mfence' ? `litmus:P${me}:mfence` : `litmus:P${me}:${o.op}-${o.loc}`,
    reg: o.op === 'load' || o.op === 'xchg' ? p.regs[me]!.indexOf(o.reg) : -1,
  }));
  programs.set(ctx, prog);
  return prog;
}

/** Run a compiled thread; returns its registers in packing order. */
function runThread(acc: Access, prog: readonly Step[]): number[] {
  const regs = [0, 0, 0];
  for (let i = 0; i < prog.length; i++) {
    const s = prog[i]!;
    switch (s.op) {
      case 'store':
        acc.writeOnce(s.addr, s.value, s.label);
        break;
      case 'load':
        regs[s.reg] = acc.readOnce(s.addr, s.label);
        break;
      case 'mfence':
        acc.smpMb(s.label);
        break;
      case 'xchg':
        regs[s.reg] = acc.xchg(s.addr, s.value, s.label);
        break;
    }
  }
  return regs;
}

/**
 * Free mode: every thread adds itself to `go` and spins until all have (the last to arrive wakes
 * a thread that fell back to sleeping), so the instructions that follow race closely.
 */
function rendezvous(ctx: ScenarioCtx, go: Addr, parties: number): void {
  const { acc } = ctx;
  if (parties === 1) return;
  if (acc.atomicAdd(go, 1, 'litmus:rendezvous-arrive') + 1 === parties) {
    acc.notify(go, Infinity, 'litmus:rendezvous-notify');
    return;
  }
  for (let i = 0; i < 50_000; i++) if (acc.readOnce(go, 'litmus:rendezvous-spin') === parties) return;
  pollUntil(acc, go, 'litmus:rendezvous-wait', () => acc.readOnce(go, 'litmus:rendezvous-spin') === parties, () => `all ${parties} threads at the start of the round`);
}

/** Thread `thread` has published its registers (its word has {@link PUBLISHED}). @emulator */
export function published(acc: Access, p: LitmusPlan, thread: number): boolean {
  return (acc.peek(acc.layout.scratch(p.out[thread]!)) & PUBLISHED) !== 0;
}

/** Read the final state of a round (registers and locations, values in `observe` order). @emulator */
export function finalState(acc: Access, t: LitmusTest, p: LitmusPlan): number[] {
  const L = acc.layout;
  return t.observe.map((name) => {
    const o = parseObserved(name);
    if ('loc' in o) return acc.peek(L.scratch(p.loc[o.loc]!));
    return (acc.peek(L.scratch(p.out[o.thread]!)) >>> (8 * p.regs[o.thread]!.indexOf(o.reg))) & 0xff;
  });
}

/** Controlled mode: a thread arrives at the start gate (locked add) and waits until it opens. */
function awaitGate(acc: Access, p: LitmusPlan): void {
  const L = acc.layout;
  acc.atomicAdd(L.scratch(p.arrive), 1, 'litmus:gate-arrive');
  acc.wait(L.scratch(p.gate), 0, Infinity, 'litmus:gate-wait');
}

/**
 * Controlled mode, the starter: once every thread waits at the gate, open it and park. When the
 * starter blocks, every thread is woken and none is running, so the scheduler's next choice —
 * which thread runs first — is free (not a preemption): no thread is favoured.
 */
function openGate(acc: Access, p: LitmusPlan, threads: number): void {
  const L = acc.layout;
  const arrive = L.scratch(p.arrive);
  for (let a = acc.readOnce(arrive, 'litmus:gate-count'); a < threads; a = acc.readOnce(arrive, 'litmus:gate-count')) acc.wait(arrive, a, Infinity, 'litmus:gate-count-wait');
  acc.poke(L.scratch(p.gate), 1);
  acc.wait(L.scratch(p.park), 0, Infinity, 'litmus:park');
}

/** Build the scenario of a litmus test. @emulator */
export function litmusScenario(t: LitmusTest): ScenarioDef {
  const p = litmusPlan(t);
  const allowed = new Set(t.allowed.map((v) => stateIndex(p, v)));
  return {
    id: `${LITMUS_PREFIX}${t.name}`,
    title: `x86 litmus test ${t.name}: ${t.title}`,
    seedFile: t.source,
    // Not buggy/fixed: how the test runs (see LITMUS_VARIANT).
    variants: [
      { name: LITMUS_VARIANT.free, buggy: false, differs: '' },
      { name: LITMUS_VARIANT.controlled, buggy: false, differs: 'a starter role opens the start gate' },
    ],
    invariants: [{ name: 'litmusTsoAllowed', description: `every final state of ${t.name} is one x86-TSO allows` }],
    widen: { probability: 0, maxSpins: 0, points: [] },
    vcpus: { default: 1, min: 1, max: 1 },
    roles: (params) => [...t.threads.map((_, i) => `P${i}`), ...(params.variant.name === LITMUS_VARIANT.controlled ? [STARTER] : [])],
    layout: () => ({ vcpus: 1, pcpus: 1, scratchWords: p.words }),
    init(acc: Access, params) {
      const L = acc.layout;
      for (let i = 0; i < p.words; i++) acc.poke(L.scratch(i), 0);
      // The runners call init on the main thread: keep its handle on this run's memory.
      mainMemories.set(memoryKey(t.name, params.seed), acc);
    },
    round(ctx) {
      const { acc, L } = ctx;
      const me = ctx.index;
      const threads = t.threads.length;
      // The gate and the parking are for the litmus runner's controlled executions only (a free
      // run of the controlled variant, or a controlled race of the free one, runs plain rounds).
      const gated = acc.controlled && ctx.params.variant.name === LITMUS_VARIANT.controlled;
      if (me === threads) {
        if (gated) openGate(acc, p, threads);
        return;
      }
      const prog = program(ctx, t, p);
      if (gated) awaitGate(acc, p);
      else if (!acc.controlled) rendezvous(ctx, L.scratch(p.go), threads);
      const regs = runThread(acc, prog);
      // Publish the registers (bookkeeping after the last instruction; one locked store).
      acc.poke(L.scratch(p.out[me]!), regs.reduce((w, v, i) => w | ((v & 0xff) << (8 * i)), PUBLISHED));
      // Park for good: the execution ends once every thread is parked and every buffer drained.
      if (gated) acc.wait(L.scratch(p.park), 0, Infinity, 'litmus:park');
    },
    check(ctx): Violation[] {
      const { acc, L } = ctx;
      const values = finalState(acc, t, p);
      values.forEach((v, i) => acc.poke(L.scratch(p.last + i), v));
      const idx = stateIndex(p, values);
      const counter = L.scratch(idx < 0 ? p.other : p.hist + idx);
      acc.poke(counter, acc.peek(counter) + 1);
      if (allowed.has(idx)) return [];
      return [{ invariant: 'litmusTsoAllowed', message: `${t.name}: final state ${formatState(t, values)} is not one x86-TSO allows (${t.allowed.length} allowed: ${t.allowed.map((v) => formatState(t, v)).join(' | ')})` }];
    },
    reset(ctx) {
      const { acc, L } = ctx;
      for (const l of t.locs) acc.poke(L.scratch(p.loc[l]!), 0);
      for (const w of p.out) acc.poke(L.scratch(w), 0);
      acc.poke(L.scratch(p.go), 0);
    },
  };
}

/** The main thread's access to the memory of each run that has not been read yet, by test and seed. */
const mainMemories = new Map<string, Access>();

function memoryKey(name: string, seed: number): string {
  return `${name}#${seed}`;
}

/**
 * The main thread's access to the machine memory of the run of test `name` with `seed` (recorded
 * by `init`, which the race runner calls on the main thread before the actors start), so a runner
 * can read the histogram after `runRace` returns; forgotten once taken. @emulator
 */
export function takeLitmusMemory(name: string, seed: number): Access | undefined {
  const k = memoryKey(name, seed);
  const acc = mainMemories.get(k);
  mainMemories.delete(k);
  return acc;
}

/** Every litmus test as a scenario, by id (`litmus:SB`, ...). */
export const LITMUS_SCENARIOS: ReadonlyMap<string, ScenarioDef> = new Map(LITMUS_TESTS.map((t) => [`${LITMUS_PREFIX}${t.name}`, litmusScenario(t)]));
