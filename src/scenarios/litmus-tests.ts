/**
 * The classic x86 litmus tests as data: threads of plain stores (MOV [x],$v = WRITE_ONCE),
 * plain loads (MOV EAX,[x] = READ_ONCE), MFENCE (smp_mb) and the locked exchange (XCHG), the
 * final state they are judged on (herd's registers `P:REG` and locations), their
 * `exists` condition, the verdict x86-TSO gives that condition, and every final state x86-TSO
 * allows.
 *
 * Names and shapes follow herdtools7 (catalogue/x86/tests, catalogue/x86_64/tests; the
 * coherence tests take the shapes of catalogue/aarch64/tests/Co*.litmus). Verdicts come from,
 * in this order: herdtools7's catalogue/x86_64/tests/kinds.txt (the x86-TSO model
 * herd/libdir/x86tso.cat gives each test Allow or Forbid); the Intel SDM vol. 3A §8.2.3
 * "Examples Illustrating the Memory-Ordering Principles" (rev. 32; §9.2.3 in later editions),
 * Examples 8-1..8-10; and the x86-TSO papers (Owens, Sarkar, Sewell, "A better x86 memory model:
 * x86-TSO", TPHOLs 2009; Sewell, Sarkar, Owens, Zappa Nardelli, Myreen, "x86-TSO: a rigorous and
 * usable programmer's model for x86 multiprocessors", CACM 53(7), 2010). Each test's `source`
 * says which one it relies on.
 *
 * The `allowed` sets are written out by hand from the x86-TSO abstract machine (FIFO store buffer
 * per CPU, loads forward from their own buffer, MFENCE and locked instructions drain it); the
 * condition's state is in the set exactly when the verdict is Allow. test/litmus checks every set
 * against an independent enumeration of that machine and against the verdicts.
 */

/** One instruction of a litmus thread. */
export type LitmusOp =
  /** MOV [loc],$value: a plain store (WRITE_ONCE; it goes to the store buffer). */
  | { op: 'store'; loc: string; value: number }
  /** MOV reg,[loc]: a plain load (READ_ONCE). */
  | { op: 'load'; reg: string; loc: string }
  /** MFENCE (smp_mb). */
  | { op: 'mfence' }
  /** XCHG [loc],reg with reg = value beforehand: locked (a full fence); reg receives the old value. */
  | { op: 'xchg'; reg: string; loc: string; value: number };

/** What x86-TSO says about a test's `exists` condition: reachable (Allow) or not (Forbid). */
export type TsoVerdict = 'Allow' | 'Forbid';

/** A final state: herd's names (`1:EAX`, `x`) to values. */
export type LitmusState = Readonly<Record<string, number>>;

/** One litmus test. */
export interface LitmusTest {
  /** herdtools7's name (`SB`, `MP`, `2+2W`, ...), or the paper's (`n5`, `n6`). */
  name: string;
  /** One line: what the test shows. */
  title: string;
  /** Where the verdict (and the shape) comes from. */
  source: string;
  /** Shared locations; every one starts at 0. */
  locs: readonly string[];
  /** The threads P0, P1, ... */
  threads: readonly (readonly LitmusOp[])[];
  /** The final state's components, in order: `P:REG` registers and locations. */
  observe: readonly string[];
  /** herd's `exists` clause: a conjunction over `observe`. */
  exists: LitmusState;
  /** x86-TSO's verdict on `exists`. */
  verdict: TsoVerdict;
  /** Every final state x86-TSO allows, as values in `observe` order. */
  allowed: readonly (readonly number[])[];
}

const st = (loc: string, value: number): LitmusOp => ({ op: 'store', loc, value });
const ld = (reg: string, loc: string): LitmusOp => ({ op: 'load', reg, loc });
const mfence: LitmusOp = { op: 'mfence' };
const xchg = (reg: string, loc: string, value: number): LitmusOp => ({ op: 'xchg', reg, loc, value });

const KINDS = 'herdtools7 catalogue/x86_64/tests/kinds.txt (x86tso.cat)';
const X86_CAT = 'catalogue/x86/tests';
const COHERENCE = 'herdtools7 catalogue/aarch64/tests shape; forbidden by the uniproc check of herd/libdir/x86tso.cat (acyclic po-loc | com)';

/** The catalogue, in the order the CLI prints it. */
export const LITMUS_TESTS: readonly LitmusTest[] = [
  {
    name: 'SB',
    title: 'store buffering: each load passes the older store to the other location',
    source: `${KINDS}: Allow; ${X86_CAT}/SB.litmus; SDM Example 8-3`,
    locs: ['x', 'y'],
    threads: [
      [st('x', 1), ld('EAX', 'y')],
      [st('y', 1), ld('EAX', 'x')],
    ],
    observe: ['0:EAX', '1:EAX'],
    exists: { '0:EAX': 0, '1:EAX': 0 },
    verdict: 'Allow',
    allowed: [
      [0, 0],
      [0, 1],
      [1, 0],
      [1, 1],
    ],
  },
  {
    name: 'SB+mfences',
    title: 'store buffering with MFENCE between store and load on both sides',
    source: `${KINDS}: Forbid; ${X86_CAT}/SB+mfences.litmus`,
    locs: ['x', 'y'],
    threads: [
      [st('x', 1), mfence, ld('EAX', 'y')],
      [st('y', 1), mfence, ld('EAX', 'x')],
    ],
    observe: ['0:EAX', '1:EAX'],
    exists: { '0:EAX': 0, '1:EAX': 0 },
    verdict: 'Forbid',
    allowed: [
      [0, 1],
      [1, 0],
      [1, 1],
    ],
  },
  {
    name: 'SB+mfence+po',
    title: 'store buffering with MFENCE on one side only: still allowed',
    source: `${KINDS}: Allow; ${X86_CAT}/SB+mfence+po.litmus`,
    locs: ['x', 'y'],
    threads: [
      [st('x', 1), mfence, ld('EAX', 'y')],
      [st('y', 1), ld('EAX', 'x')],
    ],
    observe: ['0:EAX', '1:EAX'],
    exists: { '0:EAX': 0, '1:EAX': 0 },
    verdict: 'Allow',
    allowed: [
      [0, 0],
      [0, 1],
      [1, 0],
      [1, 1],
    ],
  },
  {
    name: 'SB+xchgs',
    title: 'store buffering with XCHG as the stores: loads are not reordered with locked instructions',
    // Not in herdtools7's x86 catalogue: the name is herd's style, the test and verdict are the SDM's.
    source: 'SDM Example 8-9 (Loads Are not Reordered with Locks): Forbid',
    locs: ['x', 'y'],
    threads: [
      [xchg('EAX', 'x', 1), ld('EBX', 'y')],
      [xchg('EAX', 'y', 1), ld('EBX', 'x')],
    ],
    observe: ['0:EBX', '1:EBX'],
    exists: { '0:EBX': 0, '1:EBX': 0 },
    verdict: 'Forbid',
    allowed: [
      [0, 1],
      [1, 0],
      [1, 1],
    ],
  },
  {
    name: 'SB+rfi-pos',
    title: 'store buffering where each CPU first reads its own store (forwarding)',
    source: `${KINDS}: Allow; ${X86_CAT}/SB+rfi-pos.litmus; SDM Example 8-5`,
    locs: ['x', 'y'],
    threads: [
      [st('x', 1), ld('EAX', 'x'), ld('EBX', 'y')],
      [st('y', 1), ld('EAX', 'y'), ld('EBX', 'x')],
    ],
    observe: ['0:EAX', '0:EBX', '1:EAX', '1:EBX'],
    exists: { '0:EAX': 1, '0:EBX': 0, '1:EAX': 1, '1:EBX': 0 },
    verdict: 'Allow',
    allowed: [
      [1, 0, 1, 0],
      [1, 0, 1, 1],
      [1, 1, 1, 0],
      [1, 1, 1, 1],
    ],
  },
  {
    name: 'R',
    title: "a store passes into memory after the other CPU's later store although its load ran first",
    source: `${KINDS}: Allow; ${X86_CAT}/R.litmus`,
    locs: ['x', 'y'],
    threads: [
      [st('x', 1), st('y', 1)],
      [st('y', 2), ld('EAX', 'x')],
    ],
    observe: ['y', '1:EAX'],
    exists: { y: 2, '1:EAX': 0 },
    verdict: 'Allow',
    allowed: [
      [1, 0],
      [1, 1],
      [2, 0],
      [2, 1],
    ],
  },
  {
    name: 'R+po+mfence',
    title: 'R with MFENCE between the store and the load',
    source: `${KINDS}: Forbid; ${X86_CAT}/R+po+mfence.litmus`,
    locs: ['x', 'y'],
    threads: [
      [st('x', 1), st('y', 1)],
      [st('y', 2), mfence, ld('EAX', 'x')],
    ],
    observe: ['y', '1:EAX'],
    exists: { y: 2, '1:EAX': 0 },
    verdict: 'Forbid',
    allowed: [
      [1, 0],
      [1, 1],
      [2, 1],
    ],
  },
  {
    name: 'MP',
    title: 'message passing: stores are not reordered with stores, loads not with loads',
    source: `${KINDS}: Forbid; ${X86_CAT}/MP.litmus; SDM Example 8-1`,
    locs: ['x', 'y'],
    threads: [
      [st('x', 1), st('y', 1)],
      [ld('EAX', 'y'), ld('EBX', 'x')],
    ],
    observe: ['1:EAX', '1:EBX'],
    exists: { '1:EAX': 1, '1:EBX': 0 },
    verdict: 'Forbid',
    allowed: [
      [0, 0],
      [0, 1],
      [1, 1],
    ],
  },
  {
    name: 'LB',
    title: 'load buffering: stores are not reordered with older loads',
    source: `${KINDS}: Forbid; ${X86_CAT}/LB.litmus; SDM Example 8-2`,
    locs: ['x', 'y'],
    threads: [
      [ld('EAX', 'x'), st('y', 1)],
      [ld('EAX', 'y'), st('x', 1)],
    ],
    observe: ['0:EAX', '1:EAX'],
    exists: { '0:EAX': 1, '1:EAX': 1 },
    verdict: 'Forbid',
    allowed: [
      [0, 0],
      [0, 1],
      [1, 0],
    ],
  },
  {
    name: 'S',
    title: 'a store after a load that saw the other CPU’s second store lands after its first',
    source: `${KINDS}: Forbid; ${X86_CAT}/S.litmus`,
    locs: ['x', 'y'],
    threads: [
      [st('x', 2), st('y', 1)],
      [ld('EAX', 'y'), st('x', 1)],
    ],
    observe: ['x', '1:EAX'],
    exists: { x: 2, '1:EAX': 1 },
    verdict: 'Forbid',
    allowed: [
      [1, 0],
      [1, 1],
      [2, 0],
    ],
  },
  {
    name: '2+2W',
    title: 'two CPUs, two stores each, in opposite orders: memory sees one total store order',
    source: `${KINDS}: Forbid; ${X86_CAT}/2+2W.litmus`,
    locs: ['x', 'y'],
    threads: [
      [st('x', 2), st('y', 1)],
      [st('y', 2), st('x', 1)],
    ],
    observe: ['x', 'y'],
    exists: { x: 2, y: 2 },
    verdict: 'Forbid',
    allowed: [
      [1, 1],
      [1, 2],
      [2, 1],
    ],
  },
  {
    name: 'WRC',
    title: 'write-to-read causality: stores are transitively visible',
    source: `${KINDS}: Forbid; catalogue/x86_64/tests/WRC.litmus; SDM Example 8-6`,
    locs: ['x', 'y'],
    threads: [[st('x', 1)], [ld('EAX', 'x'), st('y', 1)], [ld('EAX', 'y'), ld('EBX', 'x')]],
    observe: ['1:EAX', '2:EAX', '2:EBX'],
    exists: { '1:EAX': 1, '2:EAX': 1, '2:EBX': 0 },
    verdict: 'Forbid',
    allowed: [
      [0, 0, 0],
      [0, 0, 1],
      [0, 1, 0],
      [0, 1, 1],
      [1, 0, 0],
      [1, 0, 1],
      [1, 1, 1],
    ],
  },
  {
    name: 'IRIW',
    title: 'independent reads of independent writes: all CPUs see stores in one order',
    // Not in herdtools7's x86 catalogues: the verdict is the SDM's and the x86-TSO papers'.
    source: 'SDM Example 8-7 (Stores Are Seen in a Consistent Order by Other Processors): Forbid; x86-TSO (CACM 2010, §2.2)',
    locs: ['x', 'y'],
    threads: [[st('x', 1)], [st('y', 1)], [ld('EAX', 'x'), ld('EBX', 'y')], [ld('EAX', 'y'), ld('EBX', 'x')]],
    observe: ['2:EAX', '2:EBX', '3:EAX', '3:EBX'],
    exists: { '2:EAX': 1, '2:EBX': 0, '3:EAX': 1, '3:EBX': 0 },
    verdict: 'Forbid',
    allowed: [
      [0, 0, 0, 0],
      [0, 0, 0, 1],
      [0, 0, 1, 0],
      [0, 0, 1, 1],
      [0, 1, 0, 0],
      [0, 1, 0, 1],
      [0, 1, 1, 0],
      [0, 1, 1, 1],
      [1, 0, 0, 0],
      [1, 0, 0, 1],
      [1, 0, 1, 1],
      [1, 1, 0, 0],
      [1, 1, 0, 1],
      [1, 1, 1, 0],
      [1, 1, 1, 1],
    ],
  },
  {
    name: 'n5',
    title: 'two CPUs store to and reload one location: they cannot see the stores in opposite orders',
    // Not in herdtools7's catalogues: test and verdict from the x86-TSO papers (an example x86-CC
    // allowed and x86-TSO forbids), as recalled from them (the text was not at hand to re-check);
    // the x86-TSO abstract machine the test suite enumerates forbids it too.
    source: 'x86-TSO papers (TPHOLs 2009, CACM 2010), test n5: Forbid',
    locs: ['x'],
    threads: [
      [st('x', 1), ld('EAX', 'x')],
      [st('x', 2), ld('EBX', 'x')],
    ],
    observe: ['0:EAX', '1:EBX'],
    exists: { '0:EAX': 2, '1:EBX': 1 },
    verdict: 'Forbid',
    allowed: [
      [1, 1],
      [1, 2],
      [2, 2],
    ],
  },
  {
    name: 'n6',
    title: 'a CPU reads its own buffered store, then an old value, and its store lands last (Loewenstein)',
    // Not in herdtools7's catalogues: test and verdict from the CACM paper (§2.2, due to Paul
    // Loewenstein; observed on an Intel Core 2, forbidden by x86-CC and the Intel white paper,
    // allowed by x86-TSO).
    source: 'x86-TSO (CACM 2010 §2.2, test n6): Allow',
    locs: ['x', 'y'],
    threads: [
      [st('x', 1), ld('EAX', 'x'), ld('EBX', 'y')],
      [st('y', 2), st('x', 2)],
    ],
    observe: ['0:EAX', '0:EBX', 'x'],
    exists: { '0:EAX': 1, '0:EBX': 0, x: 1 },
    verdict: 'Allow',
    allowed: [
      [1, 0, 1],
      [1, 0, 2],
      [1, 2, 1],
      [1, 2, 2],
      [2, 2, 2],
    ],
  },
  {
    name: 'CoRR',
    title: 'coherence: two loads of one location do not go back in time',
    source: `${COHERENCE}: Forbid`,
    locs: ['x'],
    threads: [[st('x', 1)], [ld('EAX', 'x'), ld('EBX', 'x')]],
    observe: ['1:EAX', '1:EBX'],
    exists: { '1:EAX': 1, '1:EBX': 0 },
    verdict: 'Forbid',
    allowed: [
      [0, 0],
      [0, 1],
      [1, 1],
    ],
  },
  {
    name: 'CoWW',
    title: 'coherence: two stores of one CPU to one location land in program order',
    source: `${COHERENCE}: Forbid`,
    locs: ['x'],
    threads: [[st('x', 1), st('x', 2)]],
    observe: ['x'],
    exists: { x: 1 },
    verdict: 'Forbid',
    allowed: [[2]],
  },
  {
    name: 'CoWR',
    title: 'coherence: a load sees the same CPU’s older store to the location',
    source: `${COHERENCE}: Forbid; SDM Example 8-4`,
    locs: ['x'],
    threads: [[st('x', 1), ld('EAX', 'x')]],
    observe: ['0:EAX'],
    exists: { '0:EAX': 0 },
    verdict: 'Forbid',
    allowed: [[1]],
  },
  {
    name: 'CoRW1',
    title: 'coherence: a load does not see the same CPU’s later store',
    source: `${COHERENCE}: Forbid`,
    locs: ['x'],
    threads: [[ld('EAX', 'x'), st('x', 1)]],
    observe: ['0:EAX'],
    exists: { '0:EAX': 1 },
    verdict: 'Forbid',
    allowed: [[0]],
  },
  {
    name: 'CoRW2',
    title: 'coherence: a store after a load that saw another store lands after it',
    source: `${COHERENCE}: Forbid`,
    locs: ['x'],
    threads: [[st('x', 1)], [ld('EAX', 'x'), st('x', 2)]],
    observe: ['x', '1:EAX'],
    exists: { x: 1, '1:EAX': 1 },
    verdict: 'Forbid',
    allowed: [
      [1, 0],
      [2, 0],
      [2, 1],
    ],
  },
];

/** The test called `name` (exact, then case-insensitive), or undefined. */
export function findLitmusTest(name: string): LitmusTest | undefined {
  return LITMUS_TESTS.find((t) => t.name === name) ?? LITMUS_TESTS.find((t) => t.name.toLowerCase() === name.toLowerCase());
}

/** A thread's registers, in the order its instructions first write them. */
export function threadRegs(ops: readonly LitmusOp[]): string[] {
  const regs: string[] = [];
  for (const o of ops) if (o.op !== 'store' && o.op !== 'mfence' && !regs.includes(o.reg)) regs.push(o.reg);
  return regs;
}

/** The location an observed name reads, or the register's thread and name. */
export function parseObserved(name: string): { thread: number; reg: string } | { loc: string } {
  const m = /^(\d+):(\w+)$/.exec(name);
  return m ? { thread: Number(m[1]), reg: m[2]! } : { loc: name };
}

/**
 * The values each observed component can take at all (0, or a value some instruction stores to
 * the location it reads): the candidate final states are their product.
 */
export function candidateValues(t: LitmusTest): number[][] {
  const stored = (loc: string): number[] => {
    const vals = new Set<number>([0]);
    for (const ops of t.threads) {
      for (const o of ops) {
        if ((o.op === 'store' || o.op === 'xchg') && o.loc === loc) vals.add(o.value);
      }
    }
    return [...vals].sort((a, b) => a - b);
  };
  return t.observe.map((name) => {
    const p = parseObserved(name);
    if ('loc' in p) return stored(p.loc);
    const ops = t.threads[p.thread] ?? [];
    const locs = ops.filter((o): o is Extract<LitmusOp, { reg: string }> => o.op !== 'store' && o.op !== 'mfence' && o.reg === p.reg).map((o) => o.loc);
    const vals = new Set<number>();
    for (const l of locs) for (const v of stored(l)) vals.add(v);
    return [...vals].sort((a, b) => a - b);
  });
}

/** herd's spelling of a final state: `0:EAX=0; 1:EAX=1;`. */
export function formatState(t: LitmusTest, values: readonly number[]): string {
  return t.observe.map((name, i) => `${name}=${values[i]};`).join(' ');
}

/** The final state as a record (for JSON). */
export function stateRecord(t: LitmusTest, values: readonly number[]): Record<string, number> {
  return Object.fromEntries(t.observe.map((name, i) => [name, values[i]!]));
}

/** Whether a final state (values in `observe` order) satisfies the test's `exists` clause. */
export function satisfiesExists(t: LitmusTest, values: readonly number[]): boolean {
  return t.observe.every((name, i) => t.exists[name] === undefined || t.exists[name] === values[i]);
}

/** herd's spelling of an instruction. */
export function herdOp(o: LitmusOp): string {
  switch (o.op) {
    case 'store':
      return `MOV [${o.loc}],$${o.value}`;
    case 'load':
      return `MOV ${o.reg},[${o.loc}]`;
    case 'mfence':
      return 'MFENCE';
    case 'xchg':
      return `XCHG [${o.loc}],${o.reg} (${o.reg}=$${o.value})`;
  }
}
