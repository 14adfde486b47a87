/**
 * A reusable counting barrier for a fixed group of actors (sense reversal by generation):
 *
 *   word 0 COUNT: arrivals in this generation      word 1 GEN: generation number
 *
 * The last arrival resets COUNT, bumps GEN (locked: a full fence) and wakes everyone; the others
 * spin briefly, then sleep on GEN. Emulator-only: it paces a scenario's rounds (iterations).
 */
import type { Addr } from '../mem/layout.js';
import type { Access, RacePoint } from '../mem/access.js';
import { spinThenWait } from './wait.js';
import { wordAt } from './owner.js';

/** Word offsets of a barrier. */
export const BARRIER = { COUNT: 0, GEN: 1 } as const;

/**
 * Wait until all `parties` actors have called it for this generation; returns the new
 * generation. Bounded like every wait (EMU_ERR_DEADLINE names the barrier and the count).
 * @emulator
 */
export function barrierWait(acc: Access, addr: Addr, parties: number, label: RacePoint = 'barrier:wait', what = 'barrier'): number {
  const countAddr = wordAt(addr, BARRIER.COUNT);
  const genAddr = wordAt(addr, BARRIER.GEN);
  const gen = acc.readOnce(genAddr, label);
  if (acc.atomicAdd(countAddr, 1, label) === parties - 1) {
    acc.writeOnce(countAddr, 0, label);
    acc.atomicAdd(genAddr, 1, label);
    acc.notify(genAddr, Infinity, label);
    return gen + 1;
  }
  for (;;) {
    const g = acc.readOnce(genAddr, label);
    if (g !== gen) return g;
    spinThenWait(acc, genAddr, gen, label, `${what} (generation ${gen}, ${acc.readOnce(countAddr, label)} of ${parties} arrived)`);
  }
}
