/**
 * x86 litmus tests as data: what a herdtools7 X86 `.litmus` file says, parsed
 * (./litmus-parse) — threads of instructions over shared locations, the initial state, the final
 * state herd reports (registers `P:REG` and locations) and the final condition (`exists`,
 * `~exists` or `forall` over a proposition with `/\`, `\/`, `~`, `=>`).
 *
 * The built-in catalogue is the folder `litmus/x86/` of the package, one herd-format file per
 * test, run in the order of its `@all` index (herd's convention). Each file names, in a comment
 * `(* x86-TSO: Allow|Forbid. … *)`, the verdict x86-TSO gives its condition and where that verdict
 * comes from: herdtools7's catalogue/x86_64/tests/kinds.txt (the verdicts of herd7's
 * herd/libdir/x86tso.cat), the Intel SDM vol. 3A §8.2.3 examples (§9.2.3 in later editions), the
 * x86-TSO papers (Owens, Sarkar, Sewell, TPHOLs 2009; Sewell et al., CACM 53(7), 2010). The final
 * states x86-TSO allows are not written down: ./litmus-tso enumerates them from the abstract
 * machine, and test/litmus checks them against the declared verdicts and an independent
 * enumeration.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EmuError } from '../errors.js';
import { parseLitmus } from './litmus-parse.js';

// herd's naming of final-state components, defined beside the parser (which needs them first).
export { X86_REGS, compareObserved, parseObserved } from './litmus-parse.js';

/** An instruction's source operand: an immediate (`$1`) or a register (`EAX`). */
export type LitmusOperand = { imm: number } | { reg: string };

/** The arithmetic an instruction applies: `mov` replaces, the others combine old and operand. */
export type LitmusAlu = 'mov' | 'add' | 'xor' | 'or';

/**
 * One instruction of a litmus thread, as the access layer runs it:
 *
 * - `store` MOV [x],$v / MOV [x],REG: a plain store (writeOnce; it goes to the store buffer)
 * - `load` MOV REG,[x] (alu `mov`), ADD/XOR/OR REG,[x]: a plain load (readOnce)
 * - `local` MOV/ADD/XOR/OR/INC/DEC on registers only: no memory access, no scheduling step
 * - `rmw` ADD/XOR/OR/INC/DEC [x],...: unlocked, a load then a store (readOnce, writeOnce);
 *   with LOCK one locked instruction (atomicAdd, atomicOr; LOCK XOR as the kernel's
 *   atomic_fetch_xor does it, a cmpxchg loop)
 * - `xchg` XCHG [x],REG: locked (a full fence); REG receives the old value
 * - `xadd` LOCK XADD [x],REG: locked add (atomicAdd); REG receives the old value
 * - `cmpxchg` LOCK CMPXCHG [x],REG: locked; if [x] = EAX then [x] = REG; EAX receives the old value
 * - `mfence` MFENCE (smpMb)
 * - `nop` LFENCE, SFENCE: nothing x86-TSO lets move on ordinary memory (herd's x86tso.cat gives
 *   them no effect), so no instruction runs
 */
export type LitmusOp =
  | { op: 'store'; loc: string; src: LitmusOperand }
  | { op: 'load'; reg: string; loc: string; alu: LitmusAlu }
  | { op: 'local'; reg: string; alu: LitmusAlu; src: LitmusOperand }
  | { op: 'rmw'; loc: string; alu: Exclude<LitmusAlu, 'mov'>; src: LitmusOperand; locked: boolean; mnemonic: string }
  | { op: 'xchg'; loc: string; reg: string }
  | { op: 'xadd'; loc: string; reg: string }
  | { op: 'cmpxchg'; loc: string; reg: string }
  | { op: 'mfence' }
  | { op: 'nop'; mnemonic: 'LFENCE' | 'SFENCE' };

/** What x86-TSO says about a test's condition: some allowed final state satisfies it (Allow) or none does (Forbid). */
export type TsoVerdict = 'Allow' | 'Forbid';

/** A final state: herd's names (`1:EAX`, `x`) to values. */
export type LitmusState = Readonly<Record<string, number>>;

/** A proposition over final states (herd's `prop`): `true` is an empty `and`, `false` an empty `or`. */
export type LitmusProp =
  | { kind: 'atom'; name: string; value: number }
  | { kind: 'not'; p: LitmusProp }
  | { kind: 'and'; ps: LitmusProp[] }
  | { kind: 'or'; ps: LitmusProp[] }
  | { kind: 'implies'; p: LitmusProp; q: LitmusProp };

/** herd's quantifiers over final states. */
export type LitmusQuantifier = 'exists' | '~exists' | 'forall';

/** herd's final condition. */
export interface LitmusCondition {
  quantifier: LitmusQuantifier;
  prop: LitmusProp;
}

/** One litmus test. */
export interface LitmusTest {
  /** Scenario id: `litmus:SB` for a built-in test, `litmus:<absolute path>#<hash>` for a file given by the user. */
  id: string;
  /** herd's name (`SB`, `MP`, `2+2W`, ...). */
  name: string;
  /** The file's doc string (the quoted line after the name), or ''. */
  title: string;
  /** The file: package-relative for a built-in test, as given otherwise. */
  file: string;
  /** Where the verdict comes from (the file's `x86-TSO:` comment), or the file when it has none. */
  source: string;
  /** The verdict the file's `x86-TSO:` comment declares, or null. */
  declared: TsoVerdict | null;
  /** Shared locations, sorted. */
  locs: readonly string[];
  /** Each thread's registers (every one it names, or that the init block or the condition gives it), in herd's order. */
  regs: readonly (readonly string[])[];
  /** Initial values (`x`, `0:EAX`); everything else starts at 0. */
  init: LitmusState;
  /** The threads P0, P1, ... */
  threads: readonly (readonly LitmusOp[])[];
  /** The final state's components herd reports (the condition's and `locations [...]`), in herd's order: registers by thread, then locations. */
  observe: readonly string[];
  /** The final condition. */
  condition: LitmusCondition;
}

/** The initial value of a location or register (`x`, `0:EAX`): the init block's, else 0. */
export function initialValue(t: LitmusTest, name: string): number {
  return t.init[name] ?? 0;
}

/** Evaluate a proposition on a final state given as a lookup of herd names. */
export function evalProp(p: LitmusProp, value: (name: string) => number): boolean {
  switch (p.kind) {
    case 'atom':
      return value(p.name) === p.value;
    case 'not':
      return !evalProp(p.p, value);
    case 'and':
      return p.ps.every((q) => evalProp(q, value));
    case 'or':
      return p.ps.some((q) => evalProp(q, value));
    case 'implies':
      return !evalProp(p.p, value) || evalProp(p.q, value);
  }
}

/** Whether a final state (values in `observe` order) satisfies the test's proposition. */
export function satisfies(t: LitmusTest, values: readonly number[]): boolean {
  return evalProp(t.condition.prop, (name) => values[t.observe.indexOf(name)]!);
}

/**
 * herd's result for a set of final states (values in `observe` order): `exists` holds when some
 * state satisfies the proposition, `~exists` when none does, `forall` when every one does.
 */
export function conditionHolds(t: LitmusTest, states: readonly (readonly number[])[]): boolean {
  const pos = states.filter((v) => satisfies(t, v)).length;
  switch (t.condition.quantifier) {
    case 'exists':
      return pos > 0;
    case '~exists':
      return pos === 0;
    case 'forall':
      return pos === states.length;
  }
}

/** herd's kind of a test (its first output line, `Test SB Allowed`): from the quantifier. */
export function herdKind(q: LitmusQuantifier): 'Allowed' | 'Forbidden' | 'Required' {
  return q === 'exists' ? 'Allowed' : q === '~exists' ? 'Forbidden' : 'Required';
}

/** herd's spelling of a proposition (`0:EAX=0 /\ 1:EAX=0`). */
export function propText(p: LitmusProp): string {
  const sub = (q: LitmusProp, parent: LitmusProp['kind']): string => {
    const s = propText(q);
    const needs = q.kind === 'implies' || (q.kind === 'or' && q.ps.length > 1 && parent !== 'or') || (q.kind === 'and' && q.ps.length > 1 && parent === 'not');
    return needs ? `(${s})` : s;
  };
  switch (p.kind) {
    case 'atom':
      return `${p.name}=${p.value}`;
    case 'not':
      return `~${sub(p.p, 'not')}`;
    case 'and':
      return p.ps.length === 0 ? 'true' : p.ps.map((q) => sub(q, 'and')).join(' /\\ ');
    case 'or':
      return p.ps.length === 0 ? 'false' : p.ps.map((q) => sub(q, 'or')).join(' \\/ ');
    case 'implies':
      return `${sub(p.p, 'implies')} => ${sub(p.q, 'implies')}`;
  }
}

/** herd's spelling of the final condition: `exists (0:EAX=0 /\ 1:EAX=0)`. */
export function conditionFull(t: LitmusTest): string {
  return `${t.condition.quantifier} (${propText(t.condition.prop)})`;
}

/** herd's spelling of a final state: `0:EAX=0; 1:EAX=1;`. */
export function formatState(t: LitmusTest, values: readonly number[]): string {
  return t.observe.map((name, i) => `${name}=${values[i]};`).join(' ');
}

/** The final state as a record (for JSON). */
export function stateRecord(t: LitmusTest, values: readonly number[]): Record<string, number> {
  return Object.fromEntries(t.observe.map((name, i) => [name, values[i]!]));
}

function operandText(o: LitmusOperand): string {
  return 'imm' in o ? `$${o.imm}` : o.reg;
}

/** herd's spelling of an instruction. */
export function herdOp(o: LitmusOp): string {
  switch (o.op) {
    case 'store':
      return `MOV [${o.loc}],${operandText(o.src)}`;
    case 'load':
      return `${o.alu.toUpperCase()} ${o.reg},[${o.loc}]`;
    case 'local':
      return `${o.alu.toUpperCase()} ${o.reg},${operandText(o.src)}`;
    case 'rmw':
      return `${o.locked ? 'LOCK ' : ''}${o.mnemonic} [${o.loc}]${o.mnemonic === 'INC' || o.mnemonic === 'DEC' ? '' : `,${operandText(o.src)}`}`;
    case 'xchg':
      return `XCHG [${o.loc}],${o.reg}`;
    case 'xadd':
      return `LOCK XADD [${o.loc}],${o.reg}`;
    case 'cmpxchg':
      return `LOCK CMPXCHG [${o.loc}],${o.reg}`;
    case 'mfence':
      return 'MFENCE';
    case 'nop':
      return o.mnemonic;
  }
}

/** Folder of the built-in catalogue inside the package, relative to its root. */
export const LITMUS_DIR = 'litmus/x86';

/** The package root: the nearest folder above this module with a package.json and the catalogue folder. */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, LITMUS_DIR, '@all'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new EmuError('EMU_ERR_INTERNAL', `the built-in litmus catalogue (${LITMUS_DIR}/@all) is missing from the package`);
    dir = up;
  }
}

/** Absolute path of the built-in catalogue's folder. */
export const LITMUS_DIR_PATH = join(packageRoot(), LITMUS_DIR);

/**
 * The file names an `@all`-style index lists (herd's convention: one per line, `#` comments and
 * blank lines skipped), in order.
 */
export function readIndex(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.replace(/#.*/, '').trim())
    .filter((l) => l !== '');
}

function loadCatalogue(): LitmusTest[] {
  const root = dirname(dirname(LITMUS_DIR_PATH));
  const tests = readIndex(readFileSync(join(LITMUS_DIR_PATH, '@all'), 'utf8')).map((f) => {
    const path = join(LITMUS_DIR_PATH, f);
    const file = relative(root, path);
    return parseLitmus(readFileSync(path, 'utf8'), file, (name) => `litmus:${name}`);
  });
  const names = new Set<string>();
  for (const t of tests) {
    if (names.has(t.name)) throw new EmuError('EMU_ERR_INTERNAL', `the built-in litmus catalogue has two tests named ${t.name}`);
    names.add(t.name);
  }
  return tests;
}

/** The built-in catalogue (litmus/x86/*.litmus, parsed when this module loads), in the order the CLI prints it. */
export const LITMUS_TESTS: readonly LitmusTest[] = loadCatalogue();

/** The built-in test called `name` (exact, then case-insensitive), or undefined. */
export function findLitmusTest(name: string): LitmusTest | undefined {
  return LITMUS_TESTS.find((t) => t.name === name) ?? LITMUS_TESTS.find((t) => t.name.toLowerCase() === name.toLowerCase());
}
