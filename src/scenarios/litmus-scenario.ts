/**
 * A litmus test as a scenario: one role per thread plus a starter, found by `findScenario` as
 * `litmus:<name>` (e.g. `litmus:SB`) but kept out of the race catalogue.
 *
 *   round:  every thread runs its instructions through the access layer (MOV [x],$v =
 *           writeOnce, MOV r,[x] = readOnce, MFENCE = smpMb, XCHG = xchg, LOCK ADD/INC/DEC =
 *           atomicAdd, LOCK XADD = atomicAdd, LOCK OR = atomicOr, LOCK CMPXCHG = cmpxchg, LOCK
 *           XOR = a cmpxchg loop, an unlocked read-modify-write = readOnce then writeOnce;
 *           register-only instructions are no access), then publishes the registers the final
 *           state names: each into its own word on the thread's line (bookkeeping writes that are
 *           no scheduling step), then the thread's published flag (one poke, after the last
 *           instruction)
 *   check:  P0 reads the final state (registers and locations, peek), records it in a histogram
 *           of final states (bookkeeping), and reports `litmusTsoAllowed` if x86-TSO does not
 *           allow it (./litmus-tso)
 *   reset:  locations back to their initial values, published words back to 0
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
import type { ScenarioCtx, ScenarioDef } from './define.js';
import { LITMUS_TESTS, formatState, initialValue, parseObserved, type LitmusAlu, type LitmusOp, type LitmusTest } from './litmus-tests.js';
import { litmusTestById } from './litmus-parse.js';
import { applyAlu, tsoStates } from './litmus-tso.js';

/** Prefix of a litmus scenario's id. */
export const LITMUS_PREFIX = 'litmus:';

/** The extra role (after the threads P0, P1, ...) that opens the start gate in controlled mode. */
export const STARTER = 'starter';

/**
 * The two variants of a litmus scenario: `free` (the threads only; run by the race runner) and
 * `controlled` (the threads and the starter; run by the controlled runtime).
 */
export const LITMUS_VARIANT = { free: 'free', controlled: 'controlled' } as const;

/** A thread's published flag once its registers are written. */
export const PUBLISHED = 1;

/** Where a litmus test's words live in scratch memory, and how its final states are indexed. */
export interface LitmusPlan {
  /** Scratch word of each location. */
  loc: Record<string, number>;
  /** Scratch word of each thread's published flag ({@link PUBLISHED}); its observed registers follow it. */
  out: number[];
  /** Each thread's registers the final state names, in the order of their words after `out`. */
  published: string[][];
  /** Free mode: rendezvous counter. */
  go: number;
  /** Controlled mode: threads waiting at the start gate. */
  arrive: number;
  /** Controlled mode: the start gate (1 = open), opened by the starter. */
  gate: number;
  /** Controlled mode: the word parked threads wait on (never written). */
  park: number;
  /** Histogram: one counter per final state x86-TSO allows (in {@link tsoStates} order). */
  hist: number;
  /** Counter of final states x86-TSO does not allow. */
  other: number;
  /** The last final state checked (values in `observe` order). */
  last: number;
  /** The allowed final states (values in `observe` order). */
  allowed: readonly (readonly number[])[];
  /** Histogram index of each allowed state, by its values joined with commas. */
  index: ReadonlyMap<string, number>;
  /** Scratch words the test needs. */
  words: number;
}

const plans = new WeakMap<LitmusTest, LitmusPlan>();

/** The scratch plan of a litmus test (enumerates its x86-TSO states the first time). @emulator */
export function litmusPlan(t: LitmusTest): LitmusPlan {
  let p = plans.get(t);
  if (p) return p;
  const allowed = tsoStates(t);
  const published = t.threads.map((_, i) =>
    t.observe
      .map((name) => parseObserved(name))
      .filter((o): o is { thread: number; reg: string } => 'thread' in o && o.thread === i)
      .map((o) => o.reg),
  );
  const areas: Record<string, number> = { go: 1, arrive: 1, gate: 1, park: 1, other: 1, last: t.observe.length, hist: allowed.length };
  for (const l of t.locs) areas[`loc:${l}`] = 1;
  t.threads.forEach((_, i) => (areas[`out:${i}`] = 1 + published[i]!.length));
  const { at, words } = planScratch(areas);
  p = {
    loc: Object.fromEntries(t.locs.map((l) => [l, at[`loc:${l}`]!])),
    out: t.threads.map((_, i) => at[`out:${i}`]!),
    published,
    go: at['go']!,
    arrive: at['arrive']!,
    gate: at['gate']!,
    park: at['park']!,
    hist: at['hist']!,
    other: at['other']!,
    last: at['last']!,
    allowed,
    index: new Map(allowed.map((v, i) => [v.join(','), i])),
    words,
  };
  plans.set(t, p);
  return p;
}

/** Index of a final state in the histogram, or -1 when x86-TSO does not allow it. @emulator */
export function stateIndex(p: LitmusPlan, values: readonly number[]): number {
  return p.index.get(values.join(',')) ?? -1;
}

/** The final state of histogram index `idx` (values in `observe` order). @emulator */
export function stateAt(p: LitmusPlan, idx: number): number[] {
  return [...p.allowed[idx]!];
}

/** One instruction, ready to run. */
interface Step {
  op: LitmusOp['op'];
  addr: Addr;
  label: string;
  alu: LitmusAlu;
  locked: boolean;
  /** Register slot the instruction writes (or reads, for XCHG/XADD/CMPXCHG's source), or -1. */
  reg: number;
  /** Register slot of the source operand, or -1 for an immediate. */
  srcReg: number;
  /** The immediate source operand. */
  imm: number;
  /** Register slot of EAX (CMPXCHG's comparand), or -1. */
  eax: number;
}

/** A thread compiled once (nothing is computed between a store and the next load). */
interface Program {
  steps: Step[];
  /** Initial register values, by slot. */
  regs: number[];
  /** Slots of the registers the thread publishes, with their words. */
  publish: { slot: number; addr: Addr }[];
}

/** Each actor's compiled thread. */
const programs = new WeakMap<ScenarioCtx, Program>();

function program(ctx: ScenarioCtx, t: LitmusTest, p: LitmusPlan): Program {
  const known = programs.get(ctx);
  if (known) return known;
  const me = ctx.index;
  const regs = t.regs[me]!;
  const slot = (r: string): number => regs.indexOf(r);
  const steps: Step[] = t.threads[me]!.map((o) => {
    const loc = 'loc' in o ? o.loc : null;
    const src = 'src' in o ? o.src : null;
    return {
      op: o.op,
      // MFENCE touches no location (smpMb uses the actor's own fence word); the address is unused.
      addr: ctx.L.scratch(loc === null ? p.park : p.loc[loc]!),
      label: loc === null ? `litmus:P${me}:${o.op === 'nop' ? o.mnemonic.toLowerCase() : o.op}` : `litmus:P${me}:${o.op}-${loc}`,
      alu: 'alu' in o ? o.alu : 'mov',
      locked: o.op === 'rmw' ? o.locked : true,
      reg: 'reg' in o ? slot(o.reg) : -1,
      srcReg: src !== null && 'reg' in src ? slot(src.reg) : -1,
      imm: src !== null && 'imm' in src ? src.imm : 0,
      eax: slot('EAX'),
    };
  });
  const prog: Program = {
    steps,
    regs: regs.map((r) => initialValue(t, `${me}:${r}`)),
    publish: p.published[me]!.map((r, k) => ({ slot: slot(r), addr: ctx.L.scratch(p.out[me]! + 1 + k) })),
  };
  programs.set(ctx, prog);
  return prog;
}

/** Run a compiled thread through the access layer; returns its registers by slot. */
function runThread(acc: Access, prog: Program): number[] {
  const regs = [...prog.regs];
  for (let i = 0; i < prog.steps.length; i++) {
    const s = prog.steps[i]!;
    const src = s.srcReg < 0 ? s.imm : regs[s.srcReg]!;
    switch (s.op) {
      case 'store':
        acc.writeOnce(s.addr, src, s.label);
        break;
      case 'load':
        regs[s.reg] = applyAlu(s.alu, regs[s.reg]!, acc.readOnce(s.addr, s.label));
        break;
      case 'local':
        regs[s.reg] = applyAlu(s.alu, regs[s.reg]!, src);
        break;
      case 'rmw':
        if (!s.locked) acc.writeOnce(s.addr, applyAlu(s.alu, acc.readOnce(s.addr, s.label), src), s.label);
        else if (s.alu === 'add') acc.atomicAdd(s.addr, src, s.label);
        else if (s.alu === 'or') acc.atomicOr(s.addr, src, s.label);
        else {
          // LOCK XOR as the kernel's atomic_fetch_xor on x86: a cmpxchg loop.
          let old = acc.readOnce(s.addr, s.label);
          for (let seen = acc.cmpxchg(s.addr, old, applyAlu(s.alu, old, src), s.label); seen !== old; seen = acc.cmpxchg(s.addr, old, applyAlu(s.alu, old, src), s.label)) old = seen;
        }
        break;
      case 'xchg':
        regs[s.reg] = acc.xchg(s.addr, regs[s.reg]!, s.label);
        break;
      case 'xadd':
        regs[s.reg] = acc.atomicAdd(s.addr, regs[s.reg]!, s.label);
        break;
      case 'cmpxchg':
        regs[s.eax] = acc.cmpxchg(s.addr, regs[s.eax]!, regs[s.reg]!, s.label);
        break;
      case 'mfence':
        acc.smpMb(s.label);
        break;
      case 'nop':
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

/** Thread `thread` has published its registers. @emulator */
export function published(acc: Access, p: LitmusPlan, thread: number): boolean {
  return acc.peek(acc.layout.scratch(p.out[thread]!)) === PUBLISHED;
}

/** Read the final state of a round (registers and locations, values in `observe` order). @emulator */
export function finalState(acc: Access, t: LitmusTest, p: LitmusPlan): number[] {
  const L = acc.layout;
  return t.observe.map((name) => {
    const o = parseObserved(name);
    if ('loc' in o) return acc.peek(L.scratch(p.loc[o.loc]!));
    return acc.peek(L.scratch(p.out[o.thread]! + 1 + p.published[o.thread]!.indexOf(o.reg)));
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

/** Locations to their initial values, published words to 0. */
function resetWords(acc: Access, t: LitmusTest, p: LitmusPlan): void {
  const L = acc.layout;
  for (const l of t.locs) acc.poke(L.scratch(p.loc[l]!), initialValue(t, l));
  p.out.forEach((w, i) => {
    for (let k = 0; k <= p.published[i]!.length; k++) acc.poke(L.scratch(w + k), 0);
  });
}

/** Build the scenario of a litmus test (its plan is made when it first runs). @emulator */
export function litmusScenario(t: LitmusTest): ScenarioDef {
  const plan = (): LitmusPlan => litmusPlan(t);
  return {
    id: t.id,
    title: `x86 litmus test ${t.name}${t.title === '' ? '' : `: ${t.title}`}`,
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
    layout: () => ({ vcpus: 1, pcpus: 1, scratchWords: plan().words }),
    init(acc: Access, params) {
      const p = plan();
      const L = acc.layout;
      for (let i = 0; i < p.words; i++) acc.poke(L.scratch(i), 0);
      resetWords(acc, t, p);
      // The runners call init on the main thread: keep its handle on this run's memory.
      mainMemories.set(memoryKey(t.id, params.seed), acc);
    },
    round(ctx) {
      const { acc, L } = ctx;
      const p = plan();
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
      // Publish the registers (bookkeeping after the last instruction): each into its word (a
      // bookkeeping write on a word only this thread writes during the round, no scheduling
      // step; reset zeroes it between rounds), then the flag (one poke, ordered after them).
      for (const { slot, addr } of prog.publish) acc.bump(addr, regs[slot]!);
      acc.poke(L.scratch(p.out[me]!), PUBLISHED);
      // Park for good: the execution ends once every thread is parked and every buffer drained.
      if (gated) acc.wait(L.scratch(p.park), 0, Infinity, 'litmus:park');
    },
    check(ctx): Violation[] {
      const { acc, L } = ctx;
      const p = plan();
      const values = finalState(acc, t, p);
      values.forEach((v, i) => acc.poke(L.scratch(p.last + i), v));
      const idx = stateIndex(p, values);
      const counter = L.scratch(idx < 0 ? p.other : p.hist + idx);
      acc.poke(counter, acc.peek(counter) + 1);
      if (idx >= 0) return [];
      return [{ invariant: 'litmusTsoAllowed', message: `${t.name}: final state ${formatState(t, values)} is not one x86-TSO allows (${p.allowed.length} allowed: ${p.allowed.map((v) => formatState(t, v)).join(' | ')})` }];
    },
    reset(ctx) {
      const { acc, L } = ctx;
      const p = plan();
      resetWords(acc, t, p);
      acc.poke(L.scratch(p.go), 0);
    },
  };
}

/** The main thread's access to the memory of each run that has not been read yet, by test and seed. */
const mainMemories = new Map<string, Access>();

function memoryKey(id: string, seed: number): string {
  return `${id}#${seed}`;
}

/**
 * The main thread's access to the machine memory of the run of the test with scenario id `id`
 * and `seed` (recorded by `init`, which the race runner calls on the main thread before the
 * actors start), so a runner can read the histogram after `runRace` returns; forgotten once
 * taken. @emulator
 */
export function takeLitmusMemory(id: string, seed: number): Access | undefined {
  const k = memoryKey(id, seed);
  const acc = mainMemories.get(k);
  mainMemories.delete(k);
  return acc;
}

/** Every built-in litmus test as a scenario, by id (`litmus:SB`, ...). */
export const LITMUS_SCENARIOS: ReadonlyMap<string, ScenarioDef> = new Map(LITMUS_TESTS.map((t) => [t.id, litmusScenario(t)]));

const fileScenarios = new Map<string, ScenarioDef>();

/**
 * The litmus scenario with this id: a built-in test's (`litmus:SB`), or a file's
 * (`litmus:/abs/path.litmus#hash`, parsed again on a pool thread); undefined otherwise. @emulator
 */
export function findLitmusScenario(id: string): ScenarioDef | undefined {
  const builtIn = LITMUS_SCENARIOS.get(id);
  if (builtIn) return builtIn;
  let s = fileScenarios.get(id);
  if (s) return s;
  const t = litmusTestById(id);
  if (!t) return undefined;
  s = litmusScenario(t);
  fileScenarios.set(id, s);
  return s;
}

/** The scenario of a test (the built-in one, or the one its file's id resolves to). @emulator */
export function scenarioOf(t: LitmusTest): ScenarioDef {
  const s = LITMUS_SCENARIOS.get(t.id);
  if (s) return s;
  let f = fileScenarios.get(t.id);
  if (!f) {
    f = litmusScenario(t);
    fileScenarios.set(t.id, f);
  }
  return f;
}
