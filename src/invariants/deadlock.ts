/**
 * A deadlock finding that names its cycle. Each stuck actor's EMU_ERR_DEADLINE carries what it
 * waited for and (where the primitive knows) the actors whose progress would end the wait: a
 * mutex's owner, the SRCU readers a grace period waits for. Those are the edges of a wait-for
 * graph; a cycle in it is reported as the ABBA it is ("vcpu0 waits for slots_lock held by vmm;
 * vmm waits in synchronize_srcu for its reader vcpu0"), as lockdep's circular-dependency report
 * would, instead of a list of timeouts.
 */
import type { WireError } from '../errors.js';
import type { Violation } from './checks.js';

/** One stuck actor as the runner sees it. */
export interface StuckActor {
  name: string;
  error?: WireError;
}

/** What a deadlock finding found. */
export interface DeadlockReport {
  /** Actors on the cycle in wait-for order (first repeated at the end), or null when none was found. */
  cycle: string[] | null;
  /** Every stuck actor's wait, as its error said. */
  waits: string[];
}

function waitsForOf(e: WireError | undefined): string[] {
  const w = e?.detail?.['waitsFor'];
  return Array.isArray(w) ? w.filter((x): x is string => typeof x === 'string') : [];
}

function whatOf(a: StuckActor): string {
  const w = a.error?.detail?.['what'];
  return typeof w === 'string' ? w : (a.error?.message ?? 'an unknown wait');
}

/**
 * The first wait-for cycle among stuck actors (depth-first over the `waitsFor` edges).
 * @kvm kernel/locking/lockdep.c check_noncircular (print_circular_bug names the chain)
 */
export function findWaitCycle(stuck: readonly StuckActor[]): string[] | null {
  const edges = new Map<string, string[]>();
  for (const a of stuck) edges.set(a.name, waitsForOf(a.error));
  for (const start of edges.keys()) {
    const path: string[] = [];
    const onPath = new Set<string>();
    const dfs = (n: string): string[] | null => {
      if (onPath.has(n)) return [...path.slice(path.indexOf(n)), n];
      if (!edges.has(n)) return null;
      path.push(n);
      onPath.add(n);
      for (const m of edges.get(n) ?? []) {
        const c = dfs(m);
        if (c) return c;
      }
      path.pop();
      onPath.delete(n);
      return null;
    };
    const c = dfs(start);
    if (c) return c;
  }
  return null;
}

/**
 * The `noDeadlock` violation for a run whose actors got stuck: the cycle first when there is one
 * (`ABBA deadlock: vcpu0 → vmm → vcpu0: vcpu0 waits for …; vmm waits for …`), otherwise every
 * stuck actor's wait. `extra` are further lines (actors seen blocked without an error of their own).
 * @emulator
 */
export function deadlockViolation(stuck: readonly StuckActor[], extra: readonly string[] = []): Violation & { deadlock: DeadlockReport } {
  const waits = stuck.map((a) => a.error?.message ?? a.name).concat(extra);
  const cycle = findWaitCycle(stuck);
  if (!cycle) return { invariant: 'noDeadlock', message: waits.join('; '), deadlock: { cycle: null, waits } };
  const byName = new Map(stuck.map((a) => [a.name, a]));
  const kind = cycle.length === 3 ? 'ABBA deadlock' : cycle.length === 2 ? 'self-deadlock' : `circular wait of ${cycle.length - 1}`;
  const steps = cycle.slice(0, -1).map((n) => `${n} waits for ${whatOf(byName.get(n)!)}`);
  return { invariant: 'noDeadlock', message: `${kind}: ${cycle.join(' → ')}: ${steps.join('; ')}`, deadlock: { cycle, waits } };
}
