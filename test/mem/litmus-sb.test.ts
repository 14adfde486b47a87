/**
 * The store-buffering litmus through the access layer, on two real worker threads:
 *   x = y = 0;  P0: WRITE_ONCE(x, 1); r0 = READ_ONCE(y)   P1: WRITE_ONCE(y, 1); r1 = READ_ONCE(x)
 * x86-TSO allows r0 == r1 == 0 (each store still in its CPU's store buffer); a full fence
 * (smp_mb) or a locked RMW (xchg) between store and load forbids it. This proves that
 * writeOnce really is a buffered plain store on this host and that smpMb / xchg really fence.
 */
import test from 'ava';
import { runWorkers, expectOk } from '../helpers/run-workers.js';
import { testMachine } from '../helpers/machine.js';
import { FENCE } from '../helpers/sync-protocol.js';

const ROUNDS = 200_000;
/** Upper bound on one run's duration, so a descheduled partner cannot stretch the file past ~10 s. */
const BUDGET_MS = 4_000;

async function litmus(fence: number, rounds = ROUNDS): Promise<Record<string, number>> {
  const { mem } = testMachine(30_000);
  const [r0] = expectOk(
    await runWorkers(
      mem,
      [0, 1].map((role) => ({ actor: role, op: 'sb-litmus' as const, iterations: rounds, params: { role, fence, budgetMs: BUDGET_MS } })),
      { timeoutMs: 60_000 },
    ),
  );
  if (!r0) throw new Error('no result from role 0');
  return r0;
}

const fmt = (r: Record<string, number>): string => `both-zero ${r['bothZero']}, (0,1) ${r['zeroOne']}, (1,0) ${r['oneZero']}, (1,1) ${r['bothOne']} of ${r['rounds']}`;

test.serial('variant A (no fence): the store-buffering outcome r0 == r1 == 0 is observed', async (t) => {
  const tries = 8;
  for (let i = 1; i <= tries; i++) {
    const r = await litmus(FENCE.NONE);
    t.log(`no fence, try ${i}: ${fmt(r)}`);
    t.is((r['bothZero'] ?? 0) + (r['zeroOne'] ?? 0) + (r['oneZero'] ?? 0) + (r['bothOne'] ?? 0), r['rounds'] ?? 0);
    if ((r['bothZero'] ?? 0) > 0) return;
  }
  t.fail(`no both-zero outcome in ${tries} runs of up to ${ROUNDS} rounds: writeOnce did not behave as a buffered store`);
});

test.serial('variant B (smp_mb between store and load): r0 == r1 == 0 never happens', async (t) => {
  const r = await litmus(FENCE.MB);
  t.log(`smp_mb: ${fmt(r)}`);
  t.is(r['bothZero'], 0);
  t.is((r['bothZero'] ?? 0) + (r['zeroOne'] ?? 0) + (r['oneZero'] ?? 0) + (r['bothOne'] ?? 0), r['rounds'] ?? 0);
  t.true((r['rounds'] ?? 0) > 0);
});

test.serial('variant C (xchg as the store): r0 == r1 == 0 never happens', async (t) => {
  const r = await litmus(FENCE.XCHG, ROUNDS / 2);
  t.log(`xchg: ${fmt(r)}`);
  t.is(r['bothZero'], 0);
});
