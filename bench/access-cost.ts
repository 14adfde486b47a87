/**
 * Access-layer cost, single thread, no workers: ns per operation of raw Int32Array / Atomics
 * operations versus the access layer's writeOnce / readOnce / atomicOr, with instrumentation
 * off, with window widening on at probability 0 (the hooked path, never delaying), and with
 * `record: true` (every access appended to the actor's event ring).
 *
 * Each figure includes the loop itself (the same loop shape for every variant). Loops run in
 * chunks of {@link CHUNK} operations; after each chunk the record variant's ring is emptied
 * (one store per chunk), so recording never takes the ring-full (drop) path.
 */
import { Access, createMachineMemory } from '../src/mem/access.js';
import { RING, type Addr } from '../src/mem/layout.js';
import { median } from './harness.js';

export type AccessOp = 'store' | 'load' | 'or';
export type AccessMode = 'raw' | 'off' | 'widen-p0' | 'record';

export const ACCESS_OPS: readonly AccessOp[] = ['store', 'load', 'or'];
export const ACCESS_MODES: readonly AccessMode[] = ['raw', 'off', 'widen-p0', 'record'];

/** What each (op, mode) cell calls. */
export const OP_CALLS: Record<AccessOp, Record<AccessMode, string>> = {
  store: { raw: 'm[a] = v', off: 'writeOnce', 'widen-p0': 'writeOnce', record: 'writeOnce' },
  load: { raw: 'Atomics.load', off: 'readOnce', 'widen-p0': 'readOnce', record: 'readOnce' },
  or: { raw: 'Atomics.or', off: 'atomicOr', 'widen-p0': 'atomicOr', record: 'atomicOr' },
};

const CHUNK = 1024;

export interface AccessCell {
  op: AccessOp;
  mode: AccessMode;
  /** Median over repetitions. */
  nsPerOp: number;
  reps: number[];
  /** nsPerOp / raw nsPerOp of the same op. */
  ratio: number;
}

export interface AccessCostResult {
  iterations: number;
  reps: number;
  cells: AccessCell[];
  /** Ring records dropped in record mode (0: the drop path was never measured). */
  recordDropped: number;
  /** Accumulated loads (defeats dead-code elimination; meaningless). */
  sink: number;
}

let sink = 0;

type After = () => void;
const noop: After = () => undefined;

function rawStore(m: Int32Array, a: number, chunks: number, after: After): void {
  for (let c = 0; c < chunks; c++) {
    for (let i = 0; i < CHUNK; i++) m[a] = i;
    after();
  }
}
function rawLoad(m: Int32Array, a: number, chunks: number, after: After): void {
  let s = 0;
  for (let c = 0; c < chunks; c++) {
    for (let i = 0; i < CHUNK; i++) s = (s + Atomics.load(m, a)) | 0;
    after();
  }
  sink ^= s;
}
function rawOr(m: Int32Array, a: number, chunks: number, after: After): void {
  let s = 0;
  for (let c = 0; c < chunks; c++) {
    for (let i = 0; i < CHUNK; i++) s ^= Atomics.or(m, a, 1 << (i & 31));
    after();
  }
  sink ^= s;
}
function accStore(acc: Access, a: Addr, chunks: number, after: After): void {
  for (let c = 0; c < chunks; c++) {
    for (let i = 0; i < CHUNK; i++) acc.writeOnce(a, i, 'bench:store');
    after();
  }
}
function accLoad(acc: Access, a: Addr, chunks: number, after: After): void {
  let s = 0;
  for (let c = 0; c < chunks; c++) {
    for (let i = 0; i < CHUNK; i++) s = (s + acc.readOnce(a, 'bench:load')) | 0;
    after();
  }
  sink ^= s;
}
function accOr(acc: Access, a: Addr, chunks: number, after: After): void {
  let s = 0;
  for (let c = 0; c < chunks; c++) {
    for (let i = 0; i < CHUNK; i++) s ^= acc.atomicOr(a, 1 << (i & 31), 'bench:or');
    after();
  }
  sink ^= s;
}

/** Measure every (op, mode) cell: `iterations` operations each, `reps` repetitions (median). */
export function measureAccessCost(opts: { iterations: number; reps: number }): AccessCostResult {
  const mem = createMachineMemory({ vcpus: 1, pcpus: 1 });
  const L = mem.layout;
  const m = new Int32Array(mem.sab, 0, L.totalBytes >> 2);
  const addr = L.scratch(0);
  const accs: Record<Exclude<AccessMode, 'raw'>, Access> = {
    off: new Access(mem, { actor: 0, name: 'bench' }),
    'widen-p0': new Access(mem, { actor: 0, name: 'bench', widen: { seed: 1, probability: 0, maxSpins: 0 } }),
    record: new Access(mem, { actor: 0, name: 'bench', record: true }),
  };
  const head = L.ring(0, RING.HEAD);
  const tail = L.ring(0, RING.TAIL);
  const drainRing: After = () => Atomics.store(m, tail, Atomics.load(m, head));

  const once = (op: AccessOp, mode: AccessMode, chunks: number): number => {
    const t0 = process.hrtime.bigint();
    if (mode === 'raw') {
      if (op === 'store') rawStore(m, addr, chunks, noop);
      else if (op === 'load') rawLoad(m, addr, chunks, noop);
      else rawOr(m, addr, chunks, noop);
    } else {
      const acc = accs[mode];
      const after = mode === 'record' ? drainRing : noop;
      if (op === 'store') accStore(acc, addr, chunks, after);
      else if (op === 'load') accLoad(acc, addr, chunks, after);
      else accOr(acc, addr, chunks, after);
    }
    return Number(process.hrtime.bigint() - t0) / (chunks * CHUNK);
  };

  const chunks = Math.max(1, Math.round(opts.iterations / CHUNK));
  const warmChunks = Math.max(1, Math.round(chunks / 20));
  for (const op of ACCESS_OPS) for (const mode of ACCESS_MODES) once(op, mode, warmChunks);

  const reps = new Map<string, number[]>();
  for (let r = 0; r < opts.reps; r++) {
    for (const op of ACCESS_OPS) {
      for (const mode of ACCESS_MODES) {
        const k = `${op}/${mode}`;
        const list = reps.get(k) ?? [];
        list.push(once(op, mode, chunks));
        reps.set(k, list);
      }
    }
  }
  const cells: AccessCell[] = [];
  for (const op of ACCESS_OPS) {
    const raw = median(reps.get(`${op}/raw`) ?? []);
    for (const mode of ACCESS_MODES) {
      const list = reps.get(`${op}/${mode}`) ?? [];
      const ns = median(list);
      cells.push({ op, mode, nsPerOp: ns, reps: list, ratio: ns / raw });
    }
  }
  return {
    iterations: chunks * CHUNK,
    reps: opts.reps,
    cells,
    recordDropped: Atomics.load(m, L.ring(0, RING.DROPPED)),
    sink: sink + Atomics.load(m, addr),
  };
}
