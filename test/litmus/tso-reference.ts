/**
 * An independent reference for the litmus catalogue: the x86-TSO abstract machine of Owens,
 * Sarkar and Sewell ("A better x86 memory model: x86-TSO", TPHOLs 2009, §3) enumerated
 * exhaustively on plain JS data — no threads, no shared memory, no code shared with the
 * emulator's controlled runtime. Each CPU has a FIFO store buffer: a store enters it; a load takes
 * the newest buffered store to its location, else memory; the oldest entry may drain to memory at
 * any time; MFENCE and a locked instruction (XCHG) can run only with an empty buffer, and a locked
 * instruction reads and writes memory in one step. With `sc` the buffers are left out (every
 * store goes straight to memory): sequential consistency.
 */
import type { LitmusTest } from '../../src/scenarios/litmus-tests.js';
import { parseObserved } from '../../src/scenarios/litmus-tests.js';

interface MachineState {
  pc: number[];
  regs: Record<string, number>[];
  buf: [string, number][][];
  mem: Record<string, number>;
}

/** Every final state the abstract machine reaches, herd-spelled (`0:EAX=0; 1:EAX=1;`). */
export function referenceStates(t: LitmusTest, model: 'tso' | 'sc'): Set<string> {
  const out = new Set<string>();
  const visited = new Set<string>();
  const start: MachineState = {
    pc: t.threads.map(() => 0),
    regs: t.threads.map(() => ({})),
    buf: t.threads.map(() => []),
    mem: Object.fromEntries(t.locs.map((l) => [l, 0])),
  };
  const stack: MachineState[] = [start];
  while (stack.length > 0) {
    const s = stack.pop()!;
    const key = JSON.stringify(s);
    if (visited.has(key)) continue;
    visited.add(key);
    let moved = false;
    for (let i = 0; i < t.threads.length; i++) {
      // Drain the oldest buffered store of CPU i.
      if (s.buf[i]!.length > 0) {
        const n = clone(s);
        const [loc, v] = n.buf[i]!.shift()!;
        n.mem[loc] = v;
        stack.push(n);
        moved = true;
      }
      const op = t.threads[i]![s.pc[i]!];
      if (!op) continue;
      const n = clone(s);
      n.pc[i]!++;
      switch (op.op) {
        case 'store':
          if (model === 'sc') n.mem[op.loc] = op.value;
          else n.buf[i]!.push([op.loc, op.value]);
          break;
        case 'load': {
          const own = [...n.buf[i]!].reverse().find(([l]) => l === op.loc);
          n.regs[i]![op.reg] = own ? own[1] : n.mem[op.loc]!;
          break;
        }
        case 'mfence':
          if (n.buf[i]!.length > 0) continue;
          break;
        case 'xchg':
          if (n.buf[i]!.length > 0) continue;
          n.regs[i]![op.reg] = n.mem[op.loc]!;
          n.mem[op.loc] = op.value;
          break;
      }
      stack.push(n);
      moved = true;
    }
    if (!moved) out.add(final(t, s));
  }
  return out;
}

function clone(s: MachineState): MachineState {
  return { pc: [...s.pc], regs: s.regs.map((r) => ({ ...r })), buf: s.buf.map((b) => b.map(([l, v]) => [l, v] as [string, number])), mem: { ...s.mem } };
}

function final(t: LitmusTest, s: MachineState): string {
  return t.observe
    .map((name) => {
      const o = parseObserved(name);
      return `${name}=${'loc' in o ? s.mem[o.loc] : s.regs[o.thread]![o.reg]};`;
    })
    .join(' ');
}
