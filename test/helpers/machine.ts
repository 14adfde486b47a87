/** A fresh machine memory for sync tests plus the main thread's Access. */
import { Access, createMachineMemory, type MachineMemory } from '../../src/mem/access.js';
import type { Addr } from '../../src/mem/layout.js';
import { SYNC_LAYOUT } from './sync-protocol.js';

export interface TestMachine {
  mem: MachineMemory;
  /** The main thread's access layer (actor = layout.mainActor, name 'main'). */
  main: Access;
  /** Scratch word i. */
  sc(i: number): Addr;
}

export function testMachine(deadlineMs?: number): TestMachine {
  const mem = createMachineMemory(SYNC_LAYOUT);
  const opts = { actor: mem.layout.mainActor, name: 'main' };
  const main = new Access(mem, deadlineMs === undefined ? opts : { ...opts, deadlineMs });
  return { mem, main, sc: (i) => mem.layout.scratch(i) };
}

/** Yield to the event loop until `cond()` holds (a shared-memory handshake), at most `limitMs`. */
export async function until(cond: () => boolean, what: string, limitMs = 10_000): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > limitMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}
