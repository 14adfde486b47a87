/**
 * `--from TOKEN --continue`: a search that first replays a prefix of a token's execution (same
 * inputs) and then explores onward; its finds replay exactly like any other.
 */
import test from 'ava';
import { runControlledRace, replayRace } from '../../src/scenarios/controlled.js';
import { closeSharedPool } from '../../src/runtime/pool.js';

test.after.always(async () => {
  await closeSharedPool();
});

const ID = 'apic-memslot-inhibit';

test.serial('continuing with the whole prefix reaches the token\'s violation again at once; with a short prefix each schedule explores and its token replays', async (t) => {
  const found = await runControlledRace(ID, { variant: 'buggy-flag-order', seed: 1 });
  t.truthy(found.replay);
  const whole = await runControlledRace(ID, { from: found.replay!, prefixSteps: 1_000_000, schedules: 3, seed: 9 });
  t.is(whole.schedules, 1);
  t.is(whole.first?.invariant, found.first?.invariant);
  const onward = await runControlledRace(ID, { from: found.replay!, prefixSteps: 20, schedules: 200, seed: 9 });
  t.is(onward.variant, 'buggy-flag-order', 'the token\'s variant is kept');
  if (onward.replay) {
    const again = await replayRace(onward.replay);
    t.is(again.traceDigest, onward.traceDigest);
    t.is(again.first?.invariant, onward.first?.invariant);
  } else {
    t.is(onward.schedules, 200);
  }
});

test('a token of another scenario, another variant, dfs, or prefixSteps without a token is refused, naming the parameter', async (t) => {
  const found = await runControlledRace(ID, { variant: 'buggy-no-inhibited', seed: 1 });
  await t.throwsAsync(runControlledRace('pi-sb-notification', { from: found.replay! }), { message: /invalid from: the token is a run of apic-memslot-inhibit/ });
  await t.throwsAsync(runControlledRace(ID, { from: found.replay!, variant: 'fixed' }), { message: /invalid variant/ });
  await t.throwsAsync(runControlledRace(ID, { from: found.replay!, strategy: 'dfs' }), { message: /invalid strategy: dfs cannot continue/ });
  await t.throwsAsync(runControlledRace(ID, { prefixSteps: 10 }), { message: /invalid prefixSteps: needs from/ });
});
