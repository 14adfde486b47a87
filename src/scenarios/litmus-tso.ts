/**
 * What x86-TSO allows a litmus test: every final state of the x86-TSO abstract machine (Owens,
 * Sarkar, Sewell, "A better x86 memory model: x86-TSO", TPHOLs 2009, §3), enumerated
 * exhaustively. Each CPU has a FIFO store buffer: a store enters it; a load takes the newest
 * buffered store to its location, else memory; the oldest entry may drain to memory at any time;
 * MFENCE and a locked instruction (XCHG, LOCK ADD/XOR/OR/INC/DEC/XADD/CMPXCHG) run only with an
 * empty buffer, and a locked instruction reads and writes memory in one step; an unlocked
 * read-modify-write is a load and a buffered store. A run ends with every buffer drained.
 *
 * The runner compares what the emulator shows with these states; test/litmus checks them against
 * an independent enumeration and against each shipped file's declared verdict.
 */
import { badParam } from '../errors.js';
import { conditionHolds, initialValue, parseObserved, satisfies, type LitmusAlu, type LitmusOperand, type LitmusTest, type TsoVerdict } from './litmus-tests.js';

/** Machine states one enumeration may visit before the test counts as too large. */
export const MAX_TSO_STATES = 2_000_000;

/** The arithmetic of an instruction on 32-bit values. @emulator */
export function applyAlu(alu: LitmusAlu, old: number, v: number): number {
  switch (alu) {
    case 'mov':
      return v | 0;
    case 'add':
      return (old + v) | 0;
    case 'xor':
      return (old ^ v) | 0;
    case 'or':
      return old | v | 0;
  }
}

interface Machine {
  pc: number[];
  regs: number[][];
  /** Per CPU: location index, value, location index, value, ... oldest first. */
  buf: number[][];
  mem: number[];
}

const allowedCache = new WeakMap<LitmusTest, readonly (readonly number[])[]>();

/**
 * Every final state x86-TSO allows (values in `observe` order), sorted. Memoized per test.
 * EMU_ERR_BAD_PARAM when the test has more than {@link MAX_TSO_STATES} machine states. @emulator
 */
export function tsoStates(t: LitmusTest): readonly (readonly number[])[] {
  const known = allowedCache.get(t);
  if (known) return known;
  const locIx = new Map(t.locs.map((l, i) => [l, i]));
  const regIx = t.regs.map((rs) => new Map(rs.map((r, i) => [r, i])));
  const start: Machine = {
    pc: t.threads.map(() => 0),
    regs: t.regs.map((rs, i) => rs.map((r) => initialValue(t, `${i}:${r}`))),
    buf: t.threads.map(() => []),
    mem: t.locs.map((l) => initialValue(t, l)),
  };
  const observe = t.observe.map((name) => {
    const o = parseObserved(name);
    return 'loc' in o ? { loc: locIx.get(o.loc)! } : { thread: o.thread, reg: regIx[o.thread]!.get(o.reg)! };
  });
  const finals = new Map<string, number[]>();
  const visited = new Set<string>();
  const stack: Machine[] = [start];
  while (stack.length > 0) {
    const s = stack.pop()!;
    const key = `${s.pc.join(',')}|${s.regs.map((r) => r.join(',')).join(';')}|${s.buf.map((b) => b.join(',')).join(';')}|${s.mem.join(',')}`;
    if (visited.has(key)) continue;
    visited.add(key);
    if (visited.size > MAX_TSO_STATES) throw badParam('litmus', `${t.file}: test ${t.name} has more than ${MAX_TSO_STATES} x86-TSO machine states, too many to enumerate`);
    let moved = false;
    for (let i = 0; i < t.threads.length; i++) {
      const buf = s.buf[i]!;
      if (buf.length > 0) {
        const n = clone(s);
        const [loc, v] = n.buf[i]!.splice(0, 2);
        n.mem[loc!] = v!;
        stack.push(n);
        moved = true;
      }
      const op = t.threads[i]![s.pc[i]!];
      if (!op) continue;
      const val = (o: LitmusOperand): number => ('imm' in o ? o.imm : s.regs[i]![regIx[i]!.get(o.reg)!]!);
      const r = (name: string): number => regIx[i]!.get(name)!;
      const read = (loc: number): number => {
        for (let k = buf.length - 2; k >= 0; k -= 2) if (buf[k] === loc) return buf[k + 1]!;
        return s.mem[loc]!;
      };
      const locked = op.op === 'mfence' || op.op === 'xchg' || op.op === 'xadd' || op.op === 'cmpxchg' || (op.op === 'rmw' && op.locked);
      if (locked && buf.length > 0) continue;
      const n = clone(s);
      n.pc[i]!++;
      const regs = n.regs[i]!;
      switch (op.op) {
        case 'store':
          n.buf[i]!.push(locIx.get(op.loc)!, val(op.src));
          break;
        case 'load':
          regs[r(op.reg)] = applyAlu(op.alu, regs[r(op.reg)]!, read(locIx.get(op.loc)!));
          break;
        case 'local':
          regs[r(op.reg)] = applyAlu(op.alu, regs[r(op.reg)]!, val(op.src));
          break;
        case 'rmw': {
          const loc = locIx.get(op.loc)!;
          const v = applyAlu(op.alu, read(loc), val(op.src));
          if (op.locked) n.mem[loc] = v;
          else n.buf[i]!.push(loc, v);
          break;
        }
        case 'xchg': {
          const loc = locIx.get(op.loc)!;
          const old = n.mem[loc]!;
          n.mem[loc] = regs[r(op.reg)]!;
          regs[r(op.reg)] = old;
          break;
        }
        case 'xadd': {
          const loc = locIx.get(op.loc)!;
          const old = n.mem[loc]!;
          n.mem[loc] = (old + regs[r(op.reg)]!) | 0;
          regs[r(op.reg)] = old;
          break;
        }
        case 'cmpxchg': {
          const loc = locIx.get(op.loc)!;
          const old = n.mem[loc]!;
          if (old === regs[r('EAX')]) n.mem[loc] = regs[r(op.reg)]!;
          regs[r('EAX')] = old;
          break;
        }
        case 'mfence':
        case 'nop':
          break;
      }
      stack.push(n);
      moved = true;
    }
    if (!moved) {
      const values = observe.map((o) => ('loc' in o ? s.mem[o.loc]! : s.regs[o.thread]![o.reg]!));
      finals.set(values.join(','), values);
    }
  }
  const states = [...finals.values()].sort(compareValues);
  allowedCache.set(t, states);
  return states;
}

/** Order of final states: by values, component by component. @emulator */
export function compareValues(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return 0;
}

function clone(s: Machine): Machine {
  return { pc: [...s.pc], regs: s.regs.map((r) => [...r]), buf: s.buf.map((b) => [...b]), mem: [...s.mem] };
}

/** x86-TSO's verdict on the test's proposition: some allowed final state satisfies it (Allow) or none does. @emulator */
export function tsoVerdict(t: LitmusTest): TsoVerdict {
  return tsoStates(t).some((v) => satisfies(t, v)) ? 'Allow' : 'Forbid';
}

/** What herd7 with x86-TSO prints for the test's condition over the allowed states: Ok or No. @emulator */
export function tsoResult(t: LitmusTest): 'Ok' | 'No' {
  return conditionHolds(t, tsoStates(t)) ? 'Ok' : 'No';
}
