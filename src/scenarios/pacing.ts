/**
 * Pacing of scenario rounds (emulator bookkeeping, not machine code): a litmus-style
 * rendezvous at the start of a round, counters of actors done with their part, and a wait that
 * spins and then polls. The same in every variant; none of it orders the machine accesses the
 * race is about (those are the machine's own: kvm/, hw/, sync/).
 */
import type { Addr } from '../mem/layout.js';
import type { Access } from '../mem/access.js';
import { pollUntil } from '../sync/wait.js';
import type { ScenarioCtx } from './define.js';

/** Spins of a wait before it falls back to a bounded sleeping poll. */
const SPINS_BEFORE_SLEEP = 50_000;

/**
 * Spin until `cond()` holds, then (a partner thread descheduled) fall back to the bounded
 * sleeping {@link pollUntil} on `addr`. Throws EMU_ERR_DEADLINE / EMU_ERR_ABORTED like every wait.
 * @emulator
 */
export function spinUntil(acc: Access, addr: Addr, label: string, cond: () => boolean, what: () => string): void {
  for (let i = 0; i < SPINS_BEFORE_SLEEP; i++) if (cond()) return;
  pollUntil(acc, addr, label, cond, what);
}

/**
 * Count this actor as done with its part of the round (an atomic add on a pacing word; others
 * wait for the count with {@link spinUntil}).
 * @emulator
 */
export function countDone(acc: Access, addr: Addr, label: string): void {
  acc.atomicAdd(addr, 1, label);
}

/**
 * Litmus-style start of a round: every role adds itself to the word at `go` (zeroed by the
 * reset) and spins until all have, so the race that follows starts on all CPUs within about one
 * cache-line transfer (the round barrier may put a thread to sleep and wake it tens of µs late);
 * the last to arrive wakes any role that fell back to sleeping. It implies no order between
 * the roles.
 * @emulator
 */
export function rendezvous(ctx: ScenarioCtx, go: Addr): void {
  const { acc } = ctx;
  const parties = ctx.roles.length;
  if (acc.atomicAdd(go, 1, 'round:rendezvous-arrive') + 1 === parties) {
    // Wake a role that gave up spinning (its partner was descheduled) and sleeps on the word.
    acc.notify(go, Infinity, 'round:rendezvous-notify');
    return;
  }
  spinUntil(acc, go, 'round:rendezvous-wait', () => acc.readOnce(go, 'round:rendezvous-spin') === parties, () => `all ${parties} roles at the start of the round`);
}
