/**
 * An independent reference for the litmus tests: the x86-TSO abstract machine of Owens, Sarkar and
 * Sewell ("A better x86 memory model: x86-TSO", TPHOLs 2009, §3) enumerated exhaustively on plain
 * JS data — no threads, no shared memory, no code shared with the emulator's controlled runtime or
 * with src/scenarios/litmus-tso.ts (only the parsed test and herd's naming helpers). Each CPU has a
 * FIFO store buffer: a store enters it; a load takes the newest buffered store to its location,
 * else memory; the oldest entry may drain to memory at any time; MFENCE and a locked instruction
 * can run only with an empty buffer, and a locked instruction reads and writes memory in one step.
 * An unlocked read-modify-write is two machine steps here (its load, then its buffered store). With
 * `sc` the buffers are left out (every store goes straight to memory): sequential consistency.
 */
import type { LitmusOperand, LitmusTest } from '../../src/scenarios/litmus-tests.js';
import { parseObserved } from '../../src/scenarios/litmus-tests.js';

interface MachineState {
  pc: number[];
  /** An unlocked read-modify-write between its two steps: the value it will store, or null. */
  half: (number | null)[];
  regs: Record<string, number>[];
  buf: [string, number][][];
  mem: Record<string, number>;
}

const int32 = (v: number): number => v | 0;

function alu(kind: string, old: number, v: number): number {
  if (kind === 'mov') return int32(v);
  if (kind === 'add') return int32(old + v);
  if (kind === 'xor') return int32(old ^ v);
  if (kind === 'or') return int32(old | v);
  throw new Error(`unknown alu ${kind}`);
}

/** Every final state the abstract machine reaches, herd-spelled (`0:EAX=0; 1:EAX=1;`). */
export function referenceStates(t: LitmusTest, model: 'tso' | 'sc'): Set<string> {
  const out = new Set<string>();
  const visited = new Set<string>();
  const regsOf = (i: number): Record<string, number> => {
    const r: Record<string, number> = {};
    for (const [k, v] of Object.entries(t.init)) {
      const m = /^(\d+):(\w+)$/.exec(k);
      if (m && Number(m[1]) === i) r[m[2]!] = v;
    }
    return r;
  };
  const mem: Record<string, number> = {};
  for (const l of t.locs) mem[l] = t.init[l] ?? 0;
  const start: MachineState = { pc: t.threads.map(() => 0), half: t.threads.map(() => null), regs: t.threads.map((_, i) => regsOf(i)), buf: t.threads.map(() => []), mem };
  const queue: MachineState[] = [start];
  while (queue.length > 0) {
    const s = queue.shift()!;
    const key = JSON.stringify(s);
    if (visited.has(key)) continue;
    visited.add(key);
    let moved = false;
    for (let i = 0; i < t.threads.length; i++) {
      const reg = (n: MachineState, r: string): number => n.regs[i]![r] ?? 0;
      const operand = (n: MachineState, o: LitmusOperand): number => ('imm' in o ? o.imm : reg(n, o.reg));
      const load = (n: MachineState, loc: string): number => {
        const own = [...n.buf[i]!].reverse().find(([l]) => l === loc);
        return own ? own[1] : n.mem[loc]!;
      };
      const store = (n: MachineState, loc: string, v: number): void => {
        if (model === 'sc') n.mem[loc] = v;
        else n.buf[i]!.push([loc, v]);
      };
      // Drain the oldest buffered store of CPU i.
      if (s.buf[i]!.length > 0) {
        const n = clone(s);
        const [loc, v] = n.buf[i]!.shift()!;
        n.mem[loc] = v;
        queue.push(n);
        moved = true;
      }
      const op = t.threads[i]![s.pc[i]!];
      if (!op) continue;
      const n = clone(s);
      const empty = n.buf[i]!.length === 0;
      let advance = true;
      switch (op.op) {
        case 'store':
          store(n, op.loc, operand(n, op.src));
          break;
        case 'load':
          n.regs[i]![op.reg] = alu(op.alu, reg(n, op.reg), load(n, op.loc));
          break;
        case 'local':
          n.regs[i]![op.reg] = alu(op.alu, reg(n, op.reg), operand(n, op.src));
          break;
        case 'rmw':
          if (op.locked) {
            if (!empty) continue;
            n.mem[op.loc] = alu(op.alu, n.mem[op.loc]!, operand(n, op.src));
          } else if (n.half[i] === null) {
            // First step: the load; the instruction is not done yet.
            n.half[i] = alu(op.alu, load(n, op.loc), operand(n, op.src));
            advance = false;
          } else {
            store(n, op.loc, n.half[i]!);
            n.half[i] = null;
          }
          break;
        case 'xchg': {
          if (!empty) continue;
          const old = n.mem[op.loc]!;
          n.mem[op.loc] = reg(n, op.reg);
          n.regs[i]![op.reg] = old;
          break;
        }
        case 'xadd': {
          if (!empty) continue;
          const old = n.mem[op.loc]!;
          n.mem[op.loc] = int32(old + reg(n, op.reg));
          n.regs[i]![op.reg] = old;
          break;
        }
        case 'cmpxchg': {
          if (!empty) continue;
          const old = n.mem[op.loc]!;
          if (old === reg(n, 'EAX')) n.mem[op.loc] = reg(n, op.reg);
          n.regs[i]!['EAX'] = old;
          break;
        }
        case 'mfence':
          if (!empty) continue;
          break;
        case 'nop':
          break;
      }
      if (advance) n.pc[i]!++;
      queue.push(n);
      moved = true;
    }
    if (!moved) out.add(final(t, s));
  }
  return out;
}

function clone(s: MachineState): MachineState {
  return JSON.parse(JSON.stringify(s)) as MachineState;
}

function final(t: LitmusTest, s: MachineState): string {
  return t.observe
    .map((name) => {
      const o = parseObserved(name);
      return `${name}=${'loc' in o ? s.mem[o.loc] : (s.regs[o.thread]![o.reg] ?? 0)};`;
    })
    .join(' ');
}
