/**
 * The control of the spinlock test (test/sync/spinlock.test.ts), free mode: without the lock the
 * same non-atomic increments from four workers really lose updates. Whether the workers overlap
 * on a CPU within a few tries depends on the host's load, so this is an opt-in stress test
 * (`npm run test:stress`); here it must find a lost update, it cannot pass without one.
 */
import test from 'ava';
import { expectOk, runWorkers } from '../helpers/run-workers.js';
import { testMachine } from '../helpers/machine.js';
import { S } from '../helpers/sync-protocol.js';

const N = 4;

test.serial('without the lock the same increments lose updates (the check can fail)', async (t) => {
  const tries = 20;
  const k = 200_000;
  let lost = 0;
  for (let i = 0; i < tries && lost === 0; i++) {
    const { mem, main, sc } = testMachine();
    expectOk(await runWorkers(mem, Array.from({ length: N }, (_, actor) => ({ actor, op: 'nolock-inc' as const, iterations: k }))));
    lost = N * k - main.peek(sc(S.COUNTER));
    t.log(`try ${i + 1}: lost ${lost} of ${N * k} unlocked increments`);
  }
  t.true(lost > 0, `no lost update in ${tries} tries of ${N} x ${k} unlocked increments`);
});
