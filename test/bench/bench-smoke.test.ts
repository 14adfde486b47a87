/**
 * Smoke test of the benchmark pieces (not of the figures): the raw baseline workers run both
 * baselines and terminate, and every access-cost cell yields a finite ns/op.
 */
import test from 'ava';
import { RawPool, median } from '../../bench/harness.js';
import { measureAccessCost } from '../../bench/access-cost.js';

test('median', (t) => {
  t.is(median([3, 1, 2]), 2);
  t.is(median([4, 1, 3, 2]), 2.5);
  t.true(Number.isNaN(median([])));
});

test.serial('raw baselines run on persistent workers and terminate', async (t) => {
  const pool = await RawPool.create(3);
  t.teardown(() => pool.close());
  // A window long enough that two threads meet on a CPU however busy the host (the figures are not checked).
  const timing = { warmupMs: 10, measureMs: 600, sampleMs: 200 };
  const pp = await pool.run('pingpong', 2, timing);
  t.true(pp.window.events > 0, 'round trips counted');
  t.true(pp.samples.length >= 2);
  const ch = await pool.run('channel', 3, timing);
  t.true(ch.window.sent > 0, 'channel sent');
  t.true(ch.window.events > 0, 'channel delivered');
  t.true(ch.window.events <= ch.window.sent + 32 * 3, 'cannot deliver more than was sent (plus bits pending at the window start)');
});

test('access-cost cells are finite', (t) => {
  const r = measureAccessCost({ iterations: 1e4, reps: 1 });
  t.is(r.cells.length, 12);
  for (const c of r.cells) t.true(Number.isFinite(c.nsPerOp) && c.nsPerOp > 0, `${c.op}/${c.mode}`);
  t.is(r.recordDropped, 0);
});
