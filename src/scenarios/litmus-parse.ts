/**
 * A parser for herdtools7's X86 (Intel syntax) `.litmus` files, the subset hvemu runs:
 *
 *   X86 SB                                    the architecture and the test's name
 *   "store buffering"                         optional doc string; then optional Key=Value info
 *   (* x86-TSO: Allow. … *)                   lines and comments (nested, anywhere)
 *   { x=0; y=0; 0:EAX=0; }                    init: locations and registers (all 0 by default)
 *    P0          | P1          ;              thread columns, separated by |, rows ending in ;
 *    MOV [x],$1  | MOV [y],$1  ;
 *    MOV EAX,[y] | MOV EAX,[x] ;
 *   locations [x;]                            optional: more components of the final state
 *   exists (0:EAX=0 /\ 1:EAX=0)               exists / ~exists / forall over /\ \/ ~ => ( )
 *
 * Instructions: MOV (store, load, register), ADD/XOR/OR/INC/DEC (on a register, on memory
 * unlocked, or with LOCK), XCHG (locked), LOCK XADD, LOCK CMPXCHG, MFENCE, LFENCE, SFENCE.
 * Operands: `[x]` (a named location), `$1` or `1` (an immediate), EAX…ESP. Anything else — another
 * architecture, an unknown instruction, indirect addressing, labels and jumps, typed or pointer
 * initial values, `filter`, a malformed row — is an EMU_ERR_BAD_PARAM naming the file, the line
 * and the offending token, never a guess.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { EmuError } from '../errors.js';
import type { LitmusAlu, LitmusCondition, LitmusOp, LitmusOperand, LitmusProp, LitmusQuantifier, LitmusTest, TsoVerdict } from './litmus-tests.js';

/** The x86 general registers the subset knows, in herd's order. */
export const X86_REGS = ['EAX', 'EBX', 'ECX', 'EDX', 'ESI', 'EDI', 'EBP', 'ESP'] as const;

/** The location an observed name reads, or the register's thread and name. */
export function parseObserved(name: string): { thread: number; reg: string } | { loc: string } {
  const m = /^(\d+):(\w+)$/.exec(name);
  return m ? { thread: Number(m[1]), reg: m[2]! } : { loc: name };
}

/** herd's order of final-state components: registers by thread then register, then locations by name. */
export function compareObserved(a: string, b: string): number {
  const pa = parseObserved(a);
  const pb = parseObserved(b);
  if ('loc' in pa) return 'loc' in pb ? (pa.loc < pb.loc ? -1 : pa.loc > pb.loc ? 1 : 0) : 1;
  if ('loc' in pb) return -1;
  if (pa.thread !== pb.thread) return pa.thread - pb.thread;
  return regRank(pa.reg) - regRank(pb.reg);
}

function regRank(r: string): number {
  const i = (X86_REGS as readonly string[]).indexOf(r);
  return i < 0 ? X86_REGS.length : i;
}

/** A litmus file outside the subset: EMU_ERR_BAD_PARAM naming file, line and token. @emulator */
export function litmusError(file: string, line: number, why: string, token?: string): EmuError {
  const where = `${file}:${line}`;
  return new EmuError('EMU_ERR_BAD_PARAM', `invalid litmus file ${where}: ${why}${token === undefined ? '' : ` "${token}"`}`, { detail: { param: 'litmus', file, line, ...(token === undefined ? {} : { token }) } });
}

/** The instructions the subset knows (for the message naming an unknown one). */
const SUBSET = 'MOV, ADD, XOR, OR, INC, DEC, XCHG, LOCK ADD/XOR/OR/INC/DEC/XCHG/XADD/CMPXCHG, MFENCE, LFENCE, SFENCE';

/** Words that end the program and start the final condition (herd's splitter). */
const CONDITION_WORDS = new Set(['exists', 'forall', 'locations', 'filter', 'final', 'observed', 'Observed', 'cases']);

type TokKind = 'word' | 'num' | 'punct' | 'eof';

interface Token {
  kind: TokKind;
  text: string;
  line: number;
}

const isReg = (w: string): boolean => (X86_REGS as readonly string[]).includes(w.toUpperCase());

/** Split `text` (from `start`, at line `line`) into tokens; comments `(* … *)` nest and are skipped. */
function tokenize(file: string, text: string, start: number, line: number): Token[] {
  const toks: Token[] = [];
  let i = start;
  while (i < text.length) {
    const c = text[i]!;
    if (c === '\n') {
      line++;
      i++;
    } else if (c === ' ' || c === '\t' || c === '\r') {
      i++;
    } else if (text.startsWith('(*', i)) {
      ({ i, line } = skipComment(file, text, i, line));
    } else {
      const two = text.slice(i, i + 2);
      if (two === '/\\' || two === '\\/' || two === '=>' || two === '==' || two === '!=') {
        toks.push({ kind: 'punct', text: two, line });
        i += 2;
        continue;
      }
      if ('{}[]()|;,:=~$'.includes(c)) {
        toks.push({ kind: 'punct', text: c, line });
        i++;
        continue;
      }
      const num = /^-?(?:0x[0-9a-fA-F]+|\d+)/.exec(text.slice(i, i + 40));
      if (num) {
        toks.push({ kind: 'num', text: num[0], line });
        i += num[0].length;
        continue;
      }
      const word = /^[A-Za-z_][A-Za-z0-9_.]*/.exec(text.slice(i, i + 200));
      if (word) {
        toks.push({ kind: 'word', text: word[0], line });
        i += word[0].length;
        continue;
      }
      throw litmusError(file, line, 'unexpected character', c);
    }
  }
  toks.push({ kind: 'eof', text: 'end of file', line });
  return toks;
}

/** Skip a (nested) comment starting at `i`; returns the index after it, the line, and its text. */
function skipComment(file: string, text: string, i: number, line: number): { i: number; line: number; body: string } {
  const startLine = line;
  let depth = 0;
  const from = i + 2;
  while (i < text.length) {
    if (text.startsWith('(*', i)) {
      depth++;
      i += 2;
    } else if (text.startsWith('*)', i)) {
      depth--;
      i += 2;
      if (depth === 0) return { i, line, body: text.slice(from, i - 2) };
    } else {
      if (text[i] === '\n') line++;
      i++;
    }
  }
  throw litmusError(file, startLine, 'comment never closed', '(*');
}

function parseNumber(file: string, t: Token): number {
  if (t.kind !== 'num') throw litmusError(file, t.line, 'expected a number, found', t.text);
  const neg = t.text.startsWith('-');
  const body = neg ? t.text.slice(1) : t.text;
  const v = body.startsWith('0x') || body.startsWith('0X') ? parseInt(body.slice(2), 16) : Number(body);
  const n = neg ? -v : v;
  if (!Number.isSafeInteger(n) || n < -(2 ** 31) || n > 2 ** 32 - 1) throw litmusError(file, t.line, 'value out of 32-bit range', t.text);
  return n | 0;
}

/** The header's parts: name, doc string, declared verdict and its source, and where the init block starts. */
interface Header {
  name: string;
  title: string;
  declared: TsoVerdict | null;
  source: string | null;
  /** Index of the init block's `{`, and its line. */
  at: number;
  line: number;
}

const VERDICT_COMMENT = /^\s*x86-TSO:\s*(Allow|Forbid)\b/;

function parseHeader(file: string, text: string): Header {
  let i = 0;
  let line = 1;
  // Blank lines and comments before the header line.
  for (;;) {
    const ws = /^[ \t\r]*/.exec(text.slice(i))![0];
    i += ws.length;
    if (text[i] === '\n') {
      line++;
      i++;
    } else if (text.startsWith('(*', i)) {
      ({ i, line } = skipComment(file, text, i, line));
    } else {
      break;
    }
  }
  const eol = text.indexOf('\n', i) < 0 ? text.length : text.indexOf('\n', i);
  const head = text.slice(i, eol).replace(/\r$/, '');
  const m = /^([A-Za-z0-9_]+)[ \t]+([A-Za-z0-9_/.\-+[\]:]+)[ \t]*(?:\([A-Za-z][\w/.-]*\)[ \t]*)?(?:"([^"]*)"[ \t]*)?;?[ \t]*$/.exec(head);
  if (!m) {
    const first = head.trim().split(/\s+/)[0] ?? '';
    throw litmusError(file, line, first === '' ? 'expected the header line "X86 NAME"' : 'expected the header line "X86 NAME", found', first === '' ? undefined : head.trim());
  }
  if (m[1] !== 'X86') throw litmusError(file, line, 'only X86 tests (Intel syntax) are in the subset, not architecture', m[1]);
  const name = m[2]!;
  let title = m[3] ?? '';
  let declared: TsoVerdict | null = null;
  let source: string | null = null;
  i = eol;
  // Doc string, Key=Value info lines and comments, up to the init block.
  for (;;) {
    if (i >= text.length) throw litmusError(file, line, 'no init block "{ … }" after the header');
    const c = text[i]!;
    if (c === '\n') {
      line++;
      i++;
    } else if (c === ' ' || c === '\t' || c === '\r') {
      i++;
    } else if (c === '{') {
      return { name, title, declared, source, at: i, line };
    } else if (text.startsWith('(*', i)) {
      const r = skipComment(file, text, i, line);
      const v = VERDICT_COMMENT.exec(r.body);
      if (v) {
        if (declared !== null) throw litmusError(file, line, 'a second "x86-TSO:" verdict comment');
        declared = v[1] as TsoVerdict;
        source = r.body.replace(/\s+/g, ' ').trim();
      }
      ({ i, line } = r);
    } else if (c === '"') {
      const end = text.indexOf('"', i + 1);
      if (end < 0 || text.slice(i, end).includes('\n')) throw litmusError(file, line, 'doc string never closed', '"');
      if (title !== '') throw litmusError(file, line, 'a second doc string', text.slice(i, end + 1));
      title = text.slice(i + 1, end);
      i = end + 1;
    } else {
      const rest = text.slice(i, text.indexOf('\n', i) < 0 ? text.length : text.indexOf('\n', i)).replace(/\r$/, '');
      if (/^[A-Za-z][\w./-]*[ \t]*=/.test(rest)) {
        // herd's info line (Cycle=…, Generator=…): kept by herd, ignored here.
        i += rest.length;
      } else {
        throw litmusError(file, line, 'expected the init block "{", a doc string, a Key=Value line or a comment, found', rest.trim().split(/\s+/)[0]);
      }
    }
  }
}

/** Token cursor over one file. */
class Cursor {
  i = 0;
  constructor(
    readonly file: string,
    readonly toks: Token[],
  ) {}
  peek(k = 0): Token {
    return this.toks[Math.min(this.i + k, this.toks.length - 1)]!;
  }
  next(): Token {
    const t = this.peek();
    if (t.kind !== 'eof') this.i++;
    return t;
  }
  is(text: string, k = 0): boolean {
    const t = this.peek(k);
    return t.kind !== 'eof' && t.text === text;
  }
  expect(text: string, what: string): Token {
    const t = this.next();
    if (t.kind === 'eof' || t.text !== text) throw litmusError(this.file, t.line, `expected ${what}, found`, t.text);
    return t;
  }
  fail(t: Token, why: string): never {
    throw litmusError(this.file, t.line, why, t.text);
  }
}

/** A register or location name as written in the init block, `locations` or the condition. */
interface StateName {
  name: string;
  tok: Token;
}

/** `x`, `[x]`, `0:EAX`, `P0:EAX`. */
function parseStateName(c: Cursor, threads: number): StateName {
  const t = c.next();
  if (t.text === '[') {
    const w = c.next();
    if (w.kind !== 'word' || isReg(w.text)) c.fail(w, 'expected a location name in [ ], found');
    c.expect(']', '"]"');
    return { name: w.text, tok: w };
  }
  let thread: number | null = null;
  if (t.kind === 'num' && c.is(':')) thread = Number(t.text);
  else if (t.kind === 'word' && /^P\d+$/.test(t.text) && c.is(':')) thread = Number(t.text.slice(1));
  if (thread !== null) {
    c.next();
    const r = c.next();
    if (r.kind !== 'word' || !isReg(r.text)) c.fail(r, `expected a register (${X86_REGS.join(', ')}), found`);
    if (!Number.isInteger(thread) || thread >= threads) c.fail(t, `there is no thread ${thread} (the test has ${threads})`);
    return { name: `${thread}:${r.text.toUpperCase()}`, tok: r };
  }
  if (t.kind !== 'word') c.fail(t, 'expected a location or a register P:REG, found');
  if (isReg(t.text)) c.fail(t, 'a register needs its thread (0:EAX), found');
  if (t.text === 'true' || t.text === 'false' || CONDITION_WORDS.has(t.text)) c.fail(t, 'expected a location, found');
  return { name: t.text, tok: t };
}

/** The init block: `{ x=0; y; 0:EAX=1; }` (the opening brace is the cursor's first token). */
function parseInit(c: Cursor, countThreads: number): { init: Record<string, number>; names: StateName[] } {
  c.expect('{', '"{"');
  const init: Record<string, number> = {};
  const names: StateName[] = [];
  while (!c.is('}')) {
    if (c.peek().kind === 'eof') c.fail(c.peek(), 'init block never closed:');
    if (c.is(';')) {
      c.next();
      continue;
    }
    const first = c.peek();
    // A type in front of a name (`int x=0;`, `uint64_t x;`) is herd's typed declaration.
    if (first.kind === 'word' && !isReg(first.text) && (c.peek(1).kind === 'word' || c.is('*', 1))) c.fail(first, 'typed declarations are not in the subset:');
    const n = parseStateName(c, countThreads);
    let value = 0;
    if (c.is('=')) {
      c.next();
      const v = c.peek();
      if (v.kind === 'word' || v.text === '&') c.fail(v, 'pointer (address) values are not in the subset:');
      value = parseNumber(c.file, c.next());
    }
    if (n.name in init) c.fail(n.tok, 'given twice in the init block:');
    init[n.name] = value;
    names.push(n);
    if (!c.is('}')) c.expect(';', '";" or "}" in the init block');
  }
  c.next();
  return { init, names };
}

/** The thread header row `P0 | P1 | … ;`: the number of threads. */
function parseThreadHeader(c: Cursor): number {
  let n = 0;
  for (;;) {
    const t = c.next();
    if (t.kind !== 'word' || t.text !== `P${n}`) c.fail(t, `expected the thread column P${n}, found`);
    n++;
    const sep = c.next();
    if (sep.text === ';') return n;
    if (sep.text !== '|') c.fail(sep, 'expected "|" or ";" after a thread column, found');
  }
}

type Operand = { kind: 'mem'; loc: string } | { kind: 'reg'; reg: string } | { kind: 'imm'; value: number };

function parseOperand(c: Cursor): { op: Operand; tok: Token } {
  const t = c.next();
  if (t.text === '[') {
    const w = c.next();
    if (w.kind === 'word' && isReg(w.text)) c.fail(w, 'indirect addressing is not in the subset (use a named location [x]):');
    if (w.kind !== 'word') c.fail(w, 'expected a location name in [ ], found');
    c.expect(']', '"]"');
    return { op: { kind: 'mem', loc: w.text }, tok: w };
  }
  if (t.text === '$') {
    const v = c.next();
    return { op: { kind: 'imm', value: parseNumber(c.file, v) }, tok: v };
  }
  if (t.kind === 'num') return { op: { kind: 'imm', value: parseNumber(c.file, t) }, tok: t };
  if (t.kind === 'word' && isReg(t.text)) return { op: { kind: 'reg', reg: t.text.toUpperCase() }, tok: t };
  return c.fail(t, `expected an operand ([x], $1, ${X86_REGS.join(', ')}), found`);
}

const src = (o: Operand): LitmusOperand => (o.kind === 'imm' ? { imm: o.value } : { reg: (o as { reg: string }).reg });

/** One cell: an instruction, or nothing. Stops before `|` or `;`. */
function parseInstruction(c: Cursor): LitmusOp | null {
  if (c.is('|') || c.is(';')) return null;
  let m = c.next();
  if (m.kind !== 'word') c.fail(m, 'expected an instruction, found');
  if (c.is(':')) c.fail(m, 'labels and jumps are not in the subset:');
  let locked = false;
  if (m.text.toUpperCase() === 'LOCK') {
    locked = true;
    m = c.next();
    if (m.kind !== 'word') c.fail(m, 'expected an instruction after LOCK, found');
  }
  const mn = m.text.toUpperCase();
  const operands: { op: Operand; tok: Token }[] = [];
  const arity = ({ MOV: 2, ADD: 2, XOR: 2, OR: 2, INC: 1, DEC: 1, XCHG: 2, XADD: 2, CMPXCHG: 2, MFENCE: 0, LFENCE: 0, SFENCE: 0 } as Record<string, number>)[mn];
  if (arity === undefined) c.fail(m, `unknown instruction (the subset: ${SUBSET}):`);
  for (let k = 0; k < arity; k++) {
    if (k > 0) c.expect(',', `"," between the operands of ${mn}`);
    operands.push(parseOperand(c));
  }
  if (!c.is('|') && !c.is(';')) c.fail(c.peek(), `expected "|" or ";" after ${mn}${arity > 0 ? ' and its operands' : ''}, found`);
  const lockOnlyOnMemory = (): void => {
    if (locked) c.fail(m, 'LOCK needs a read-modify-write of memory, not');
  };
  const [a, b] = operands;
  const bad = (why: string): never => c.fail(m, `${why}:`);
  switch (mn) {
    case 'MFENCE':
      lockOnlyOnMemory();
      return { op: 'mfence' };
    case 'LFENCE':
    case 'SFENCE':
      lockOnlyOnMemory();
      return { op: 'nop', mnemonic: mn };
    case 'MOV':
      if (locked) c.fail(m, 'LOCK prefix on');
      if (a!.op.kind === 'mem' && b!.op.kind !== 'mem') return { op: 'store', loc: a!.op.loc, src: src(b!.op) };
      if (a!.op.kind === 'reg' && b!.op.kind === 'mem') return { op: 'load', reg: a!.op.reg, loc: b!.op.loc, alu: 'mov' };
      if (a!.op.kind === 'reg') return { op: 'local', reg: a!.op.reg, alu: 'mov', src: src(b!.op) };
      return bad('MOV needs a register or a location as destination and not two locations');
    case 'ADD':
    case 'XOR':
    case 'OR': {
      const alu = mn.toLowerCase() as Exclude<LitmusAlu, 'mov'>;
      if (a!.op.kind === 'mem' && b!.op.kind !== 'mem') return { op: 'rmw', loc: a!.op.loc, alu, src: src(b!.op), locked, mnemonic: mn };
      lockOnlyOnMemory();
      if (a!.op.kind === 'reg' && b!.op.kind === 'mem') return { op: 'load', reg: a!.op.reg, loc: b!.op.loc, alu };
      if (a!.op.kind === 'reg') return { op: 'local', reg: a!.op.reg, alu, src: src(b!.op) };
      return bad(`${mn} needs a register or a location as destination and not two locations`);
    }
    case 'INC':
    case 'DEC': {
      const one: LitmusOperand = { imm: mn === 'INC' ? 1 : -1 };
      if (a!.op.kind === 'mem') return { op: 'rmw', loc: a!.op.loc, alu: 'add', src: one, locked, mnemonic: mn };
      lockOnlyOnMemory();
      if (a!.op.kind === 'reg') return { op: 'local', reg: a!.op.reg, alu: 'add', src: one };
      return bad(`${mn} needs a register or a location`);
    }
    case 'XCHG': {
      // Always locked with a memory operand (LOCK is allowed and changes nothing).
      if (a!.op.kind === 'mem' && b!.op.kind === 'reg') return { op: 'xchg', loc: a!.op.loc, reg: b!.op.reg };
      if (a!.op.kind === 'reg' && b!.op.kind === 'mem') return { op: 'xchg', loc: b!.op.loc, reg: a!.op.reg };
      return bad('XCHG needs a location and a register');
    }
    case 'XADD':
    case 'CMPXCHG': {
      if (!locked) bad(`${mn} without LOCK is not atomic and not in the subset (write LOCK ${mn})`);
      if (a!.op.kind === 'mem' && b!.op.kind === 'reg') return mn === 'XADD' ? { op: 'xadd', loc: a!.op.loc, reg: b!.op.reg } : { op: 'cmpxchg', loc: a!.op.loc, reg: b!.op.reg };
      return bad(`LOCK ${mn} needs a location and a register ([x],EBX)`);
    }
  }
  return bad('unknown instruction');
}

/** The program: rows of cells until the final condition. */
function parseProgram(c: Cursor, n: number): LitmusOp[][] {
  const threads: LitmusOp[][] = Array.from({ length: n }, () => []);
  for (;;) {
    const t = c.peek();
    if (t.kind === 'eof') c.fail(t, 'no final condition (exists, ~exists, forall or locations) before the');
    if (CONDITION_WORDS.has(t.text) || (t.text === '~' && c.peek(1).text === 'exists')) return threads;
    const rowLine = t.line;
    let col = 0;
    for (;;) {
      if (col >= n) c.fail(c.peek(), `row has more than the ${n} thread columns, at`);
      const op = parseInstruction(c);
      if (op) threads[col]!.push(op);
      const sep = c.next();
      col++;
      if (sep.text === ';') break;
      if (sep.text !== '|') c.fail(sep, 'expected "|" or ";", found');
    }
    if (col !== n) throw litmusError(c.file, rowLine, `row has ${col} columns, the thread header has ${n}`);
  }
}

/** Operator precedence as herd's: \/ lowest, then /\, then => (right), then ~. */
function parseProp(c: Cursor, threads: number, names: StateName[]): LitmusProp {
  // One level of an n-ary connective: operands from `sub`, nested ones of the same kind flattened.
  const nary = (op: string, kind: 'or' | 'and', sub: () => LitmusProp): LitmusProp => {
    const ps = [sub()];
    while (c.is(op)) {
      c.next();
      ps.push(sub());
    }
    return ps.length === 1 ? ps[0]! : { kind, ps: ps.flatMap((p) => (p.kind === kind && p.ps.length > 0 ? p.ps : [p])) };
  };
  const or = (): LitmusProp => nary('\\/', 'or', and);
  const and = (): LitmusProp => nary('/\\', 'and', implies);
  const implies = (): LitmusProp => {
    const p = unary();
    if (!c.is('=>')) return p;
    c.next();
    return { kind: 'implies', p, q: implies() };
  };
  const unary = (): LitmusProp => {
    const t = c.peek();
    if (t.text === '~') {
      c.next();
      return { kind: 'not', p: unary() };
    }
    if (t.text === '(') {
      c.next();
      const p = or();
      c.expect(')', '")"');
      return p;
    }
    if (t.kind === 'word' && t.text === 'true') {
      c.next();
      return { kind: 'and', ps: [] };
    }
    if (t.kind === 'word' && t.text === 'false') {
      c.next();
      return { kind: 'or', ps: [] };
    }
    if (t.kind === 'eof') c.fail(t, 'the condition ends early, at');
    const n = parseStateName(c, threads);
    names.push(n);
    const op = c.next();
    if (op.text !== '=' && op.text !== '==' && op.text !== '!=') c.fail(op, `expected "=" after ${n.name}, found`);
    const v = c.peek();
    if (v.kind === 'word' || v.text === '[') c.fail(v, 'comparing two locations is not in the subset:');
    const atom: LitmusProp = { kind: 'atom', name: n.name, value: parseNumber(c.file, c.next()) };
    return op.text === '!=' ? { kind: 'not', p: atom } : atom;
  };
  return or();
}

/** `locations [..]` and the quantified condition, to the end of the file. */
function parseCondition(c: Cursor, threads: number): { condition: LitmusCondition; extra: StateName[]; names: StateName[] } {
  const extra: StateName[] = [];
  const names: StateName[] = [];
  if (c.is('locations')) {
    c.next();
    c.expect('[', '"[" after locations');
    while (!c.is(']')) {
      if (c.is(';')) {
        c.next();
        continue;
      }
      if (c.peek().kind === 'eof') c.fail(c.peek(), 'locations [ … ] never closed:');
      extra.push(parseStateName(c, threads));
      if (!c.is(']')) c.expect(';', '";" or "]" in locations');
    }
    c.next();
  }
  let quantifier: LitmusQuantifier;
  const q = c.next();
  if (q.text === 'exists') quantifier = 'exists';
  else if (q.text === 'forall') quantifier = 'forall';
  else if (q.text === '~' && c.is('exists')) {
    c.next();
    quantifier = '~exists';
  } else if (q.kind === 'eof' && extra.length > 0) {
    // Only `locations`: herd reports the final states, with the trivial condition forall (true).
    return { condition: { quantifier: 'forall', prop: { kind: 'and', ps: [] } }, extra, names };
  } else if (q.text === 'filter' || q.text === 'final' || q.text === 'observed' || q.text === 'Observed' || q.text === 'cases') {
    return c.fail(q, 'only exists, ~exists and forall conditions are in the subset, not');
  } else {
    return c.fail(q, 'expected exists, ~exists or forall, found');
  }
  const prop = parseProp(c, threads, names);
  if (c.is(';')) c.next();
  const end = c.peek();
  if (end.kind !== 'eof') c.fail(end, 'unexpected text after the final condition:');
  return { condition: { quantifier, prop }, extra, names };
}

/** Registers an instruction reads or writes. */
function opRegs(o: LitmusOp): string[] {
  switch (o.op) {
    case 'store':
    case 'rmw':
      return 'reg' in o.src ? [o.src.reg] : [];
    case 'load':
      return [o.reg];
    case 'local':
      return 'reg' in o.src ? [o.reg, o.src.reg] : [o.reg];
    case 'xchg':
    case 'xadd':
      return [o.reg];
    case 'cmpxchg':
      return ['EAX', o.reg];
    case 'mfence':
    case 'nop':
      return [];
  }
}

function opLoc(o: LitmusOp): string | null {
  return 'loc' in o ? o.loc : null;
}

/**
 * Parse one `.litmus` file's text. `file` names it in errors; `idOf` gives the scenario id from
 * the test's name. Throws EMU_ERR_BAD_PARAM (file, line, token) for anything outside the subset.
 * @emulator
 */
export function parseLitmus(text: string, file: string, idOf: (name: string) => string): LitmusTest {
  const h = parseHeader(file, text);
  const c = new Cursor(file, tokenize(file, text, h.at, h.line));
  // The thread count is needed to check registers in the init block: look past it for the header row.
  const initStart = c.i;
  let depth = 0;
  while (c.peek().kind !== 'eof') {
    const t = c.next();
    if (t.text === '{') depth++;
    else if (t.text === '}' && --depth === 0) break;
  }
  if (depth !== 0) c.fail(c.peek(), 'init block never closed:');
  const afterInit = c.i;
  const n = parseThreadHeader(c);
  const programStart = c.i;
  c.i = initStart;
  const { init, names: initNames } = parseInit(c, n);
  if (c.i !== afterInit) c.fail(c.peek(), 'unexpected token in the init block:');
  c.i = programStart;
  const threads = parseProgram(c, n);
  const { condition, extra, names: condNames } = parseCondition(c, n);

  // Locations: every one an instruction, the init block or the final state names.
  const locs = new Set<string>();
  threads.forEach((ops) => ops.forEach((o) => opLoc(o) !== null && locs.add(opLoc(o)!)));
  const regs: Set<string>[] = threads.map((ops) => new Set(ops.flatMap(opRegs)));
  for (const s of [...initNames, ...extra, ...condNames]) {
    const p = /^(\d+):(\w+)$/.exec(s.name);
    if (p) regs[Number(p[1])]!.add(p[2]!);
    else locs.add(s.name);
  }
  const regOrder = (rs: Set<string>): string[] => [...rs].sort((x, y) => X86_REGS.indexOf(x as (typeof X86_REGS)[number]) - X86_REGS.indexOf(y as (typeof X86_REGS)[number]));
  const observe = [...new Set([...condNames, ...extra].map((s) => s.name))].sort(compareObserved);
  return {
    id: idOf(h.name),
    name: h.name,
    title: h.title,
    file,
    source: h.source ?? file,
    declared: h.declared,
    locs: [...locs].sort(),
    regs: regs.map(regOrder),
    init,
    threads,
    observe,
    condition,
  };
}

/** Tests read from files, by scenario id. */
const byId = new Map<string, LitmusTest>();

/** Prefix of the scenario id of a test loaded from a file (`litmus:/abs/path.litmus#hash`). */
const FILE_ID = /^litmus:(.+\.litmus)#([0-9a-f]{16})$/;

function hashOf(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}

/**
 * Read and parse a `.litmus` file given by the user (EMU_ERR_BAD_PARAM naming it if it cannot
 * be read or is outside the subset). Its scenario id names the absolute path and a hash of the
 * text, so the pool's threads find the same test ({@link litmusTestById}). @emulator
 */
export function loadLitmusFile(path: string): LitmusTest {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new EmuError('EMU_ERR_BAD_PARAM', `invalid litmus file ${path}: cannot be read (${(e as NodeJS.ErrnoException).code ?? String(e)})`, { detail: { param: 'litmus', file: path } });
  }
  const abs = resolve(path);
  const hash = hashOf(text);
  const t = parseLitmus(text, path, () => `litmus:${abs}#${hash}`);
  byId.set(t.id, t);
  return t;
}

/**
 * The test of a file's scenario id (`litmus:/abs/path.litmus#hash`), read again on a pool thread;
 * undefined for any other id. EMU_ERR_BAD_PARAM when the file changed since the id was made.
 * @emulator
 */
export function litmusTestById(id: string): LitmusTest | undefined {
  const m = FILE_ID.exec(id);
  if (!m) return undefined;
  let t = byId.get(id);
  if (t) return t;
  const text = readFileSync(m[1]!, 'utf8');
  if (hashOf(text) !== m[2]) throw new EmuError('EMU_ERR_BAD_PARAM', `invalid litmus file ${m[1]}: it changed while the test ran`, { detail: { param: 'litmus', file: m[1] } });
  t = parseLitmus(text, m[1]!, () => id);
  byId.set(id, t);
  return t;
}
