/**
 * Buggy-variant budget shared by the scenario tests: run the variant seed after seed (each with
 * a bounded time) until one finds a violation or the seeds run out. A run stops at its first
 * violation, normally within a second on a quiet machine; when other test files share the two
 * cores the racing actors are less often on a CPU at the same time, and one seed can take longer.
 */
import type { ExecutionContext } from 'ava';
import { runRace, type RaceResult } from '../../src/scenarios/runner.js';

export interface BudgetOptions {
  /** Seeds tried in order. */
  seeds: readonly number[];
  /** Time budget per seed, in seconds. */
  secondsPerSeed: number;
  /** Emulated vCPUs (the scenario's default when omitted). */
  vcpus?: number;
}

/** Default budget: six seeds of 10 s each. */
export const DEFAULT_BUDGET: BudgetOptions = { seeds: [1, 2, 3, 4, 5, 6], secondsPerSeed: 10 };

/** Runs `id`/`variant` seed after seed until a violation (or a failure) is found. */
export async function findWithinBudget(
  t: ExecutionContext,
  id: string,
  variant: string,
  budget: BudgetOptions = DEFAULT_BUDGET,
): Promise<RaceResult> {
  const run = (seed: number) =>
    runRace(id, { variant, seconds: budget.secondsPerSeed, seed, ...(budget.vcpus === undefined ? {} : { vcpus: budget.vcpus }) });
  let r = await run(budget.seeds[0]!);
  for (const seed of budget.seeds.slice(1)) {
    if (r.first || r.failure) break;
    t.log(`seed ${r.seed}: ${r.iterations} rounds without a violation; next seed`);
    r = await run(seed);
  }
  if (r.first) t.log(`seed ${r.seed}: round ${r.first.iteration}, ${r.first.elapsedMs.toFixed(0)} ms`);
  return r;
}
