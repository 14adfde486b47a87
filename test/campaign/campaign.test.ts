/**
 * The pure half of campaigns: seeds and shard syntax, the sorted matrix, shards that are
 * disjoint, complete and stable, and the merge's checks on its parts (no race runs here).
 */
import test, { type ExecutionContext } from 'ava';
import { campaignDoc, cellId, matrixCells, mergeCampaigns, outcomeDigest, parseSeeds, parseShard, planCampaign, shardCells, type CampaignCell, type CampaignDoc, type CampaignParams, type CellKey } from '../../src/scenarios/campaign.js';
import { SCENARIOS } from '../../src/scenarios/index.js';
import { EmuError } from '../../src/errors.js';

/** The parameter a bad-input error names. */
function param(t: ExecutionContext, fn: () => unknown): string {
  const e = t.throws(fn, { instanceOf: EmuError });
  return String(e?.detail?.param);
}

test('--seeds: A..B inclusive or one seed; bad ranges name --seeds', (t) => {
  t.deepEqual(parseSeeds('1..8'), { from: 1, to: 8 });
  t.deepEqual(parseSeeds('7'), { from: 7, to: 7 });
  t.deepEqual(parseSeeds('0..4294967295'.replace('0..', '4294967290..')), { from: 4294967290, to: 4294967295 });
  for (const bad of ['', 'x', '1..', '..3', '5..2', '1..2..3', '-1..3', '1.5..2', '1..4294967296', '0..1000000']) t.is(param(t, () => parseSeeds(bad)), '--seeds', bad);
});

test('--shard: I/N with 1 ≤ I ≤ N; 0/2, 3/2, x/y and friends name --shard', (t) => {
  t.deepEqual(parseShard('1/2'), { index: 1, count: 2 });
  t.deepEqual(parseShard(' 3 / 3 '), { index: 3, count: 3 });
  for (const bad of ['0/2', '3/2', 'x/y', '1/0', '0/0', '1', '/2', '1/2/3', '-1/2', '1.0/2', '']) t.is(param(t, () => parseShard(bad)), '--shard', bad);
});

test('bad campaign options name their flag before anything runs', (t) => {
  t.is(param(t, () => planCampaign({ seeds: '1..2', scenarios: 'pi-wakeup-block,nope' })), '--scenarios');
  t.is(param(t, () => planCampaign({ seeds: '1..2', scenarios: 'pi-wakeup-block,' })), '--scenarios');
  t.is(param(t, () => planCampaign({ seeds: '1..2', variants: 'sideways' })), '--variants');
  // buggy-srcu-held is a variant of apic-memslot-inhibit only.
  t.is(param(t, () => planCampaign({ seeds: '1..2', scenarios: 'pi-wakeup-block', variants: 'buggy-srcu-held' })), '--variants');
  t.is(param(t, () => planCampaign({ seeds: '1..2', mode: 'fast' })), '--mode');
  t.is(param(t, () => planCampaign({ seeds: '1..2', seconds: 3 })), '--seconds');
  t.is(param(t, () => planCampaign({ seeds: '1..2', mode: 'free', schedules: 3 })), '--schedules');
  t.is(param(t, () => planCampaign({ seeds: '1..2', schedules: 0 })), '--schedules');
  t.is(param(t, () => planCampaign({ seeds: '1..2', buggySchedules: -1 })), '--buggy-schedules');
  t.is(param(t, () => planCampaign({ seeds: '2..1' })), '--seeds');
  t.is(param(t, () => planCampaign({ seeds: '1..2', shard: '3/2' })), '--shard');
});

test('the matrix: every selected scenario × variant × seed once, sorted by scenario, variant, seed', (t) => {
  const all = planCampaign({ seeds: '1..3' });
  const variants = SCENARIOS.reduce((n, d) => n + d.variants.length, 0);
  t.is(all.matrix.length, variants * 3);
  t.is(new Set(all.matrix.map(cellId)).size, all.matrix.length);
  const sorted = [...all.matrix].sort((a, b) => (a.scenario < b.scenario ? -1 : a.scenario > b.scenario ? 1 : a.variant < b.variant ? -1 : a.variant > b.variant ? 1 : a.seed - b.seed));
  t.deepEqual(all.matrix, sorted);
  t.deepEqual(all.params.scenarios, SCENARIOS.map((d) => d.id), 'params list scenarios in catalogue order');
  const buggy = planCampaign({ seeds: '4', variants: 'buggy' });
  t.true(buggy.matrix.every((c) => SCENARIOS.find((d) => d.id === c.scenario)!.variants.find((v) => v.name === c.variant)!.buggy));
  t.is(buggy.matrix.length, SCENARIOS.reduce((n, d) => n + d.variants.filter((v) => v.buggy).length, 0));
  const one = planCampaign({ seeds: '1..2', scenarios: 'apic-memslot-inhibit,pi-wakeup-block', variants: 'fixed,buggy-srcu-held' });
  t.deepEqual(one.matrix.map(cellId), ['apic-memslot-inhibit/buggy-srcu-held#1', 'apic-memslot-inhibit/buggy-srcu-held#2', 'apic-memslot-inhibit/fixed#1', 'apic-memslot-inhibit/fixed#2', 'pi-wakeup-block/fixed#1', 'pi-wakeup-block/fixed#2']);
  t.deepEqual(one.params.variants, ['buggy-srcu-held', 'fixed']);
  // The order of the words does not make another campaign.
  t.deepEqual(planCampaign({ seeds: '1..2', scenarios: 'pi-wakeup-block,apic-memslot-inhibit', variants: 'buggy-srcu-held,fixed' }).params, one.params);
});

test('shards are disjoint, cover the matrix, are balanced within one cell, and do not depend on anything but the parameters', (t) => {
  const matrix = planCampaign({ seeds: '1..5' }).matrix;
  for (let n = 1; n <= 9; n++) {
    const parts = Array.from({ length: n }, (_, i) => planCampaign({ seeds: '1..5', shard: `${i + 1}/${n}` }).cells);
    const ids = parts.flat().map(cellId);
    t.is(ids.length, matrix.length, `N=${n}: every cell once`);
    t.deepEqual([...ids].sort(), matrix.map(cellId).sort(), `N=${n}: the union is the matrix`);
    const sizes = parts.map((p) => p.length);
    t.true(Math.max(...sizes) - Math.min(...sizes) <= 1, `N=${n}: sizes ${sizes.join(',')}`);
    // Stable: the same shard again is the same cells.
    t.deepEqual(planCampaign({ seeds: '1..5', shard: `${n}/${n}` }).cells, parts[n - 1]);
  }
  // Round robin: consecutive seeds of one scenario × variant go to different shards.
  const two = shardCells(matrix, { index: 1, count: 2 });
  t.true(two.some((c) => c.seed === 1) && two.some((c) => c.seed === 2));
  t.deepEqual(shardCells(matrix.slice(0, 3), { index: 5, count: 5 }), [], 'more shards than cells: some are empty');
});

// ---- merge, on synthetic documents

const PARAMS: CampaignParams = planCampaign({ seeds: '1..3', scenarios: 'pi-wakeup-block,pi-sb-notification', schedules: 3, buggySchedules: 40 }).params;

/** A made-up result for a cell (buggy variants fail as expected, fixed ones hold). */
function fakeCell(k: CellKey): CampaignCell {
  const buggy = k.variant !== 'fixed';
  return {
    ...k,
    buggy,
    expected: buggy ? 'fails' : 'holds',
    outcome: buggy ? 'fails' : 'holds',
    asExpected: true,
    invariant: buggy ? 'someInvariant' : null,
    round: buggy ? 0 : null,
    detail: buggy ? 'what broke' : null,
    iterations: 1,
    schedules: buggy ? 2 : 3,
    steps: 100 + k.seed,
    traceDigest: `d${k.seed}`,
    replay: buggy ? `hv1.token${k.seed}` : null,
    failure: null,
    rerun: `hvemu race ${k.scenario} --variant ${k.variant} --mode controlled --seed ${k.seed}`,
    elapsedMs: 10 * k.seed,
  };
}

function shardDoc(index: number, count: number, params: CampaignParams = PARAMS): CampaignDoc {
  const matrix = matrixCells(params);
  return campaignDoc(params, { index, count }, matrix.length, shardCells(matrix, { index, count }).map(fakeCell), false, '0.1.0');
}

const part = (file: string, doc: unknown) => ({ file, text: JSON.stringify(doc) });

test('merge: the shards in any order give the whole document', (t) => {
  const whole = campaignDoc(PARAMS, null, matrixCells(PARAMS).length, matrixCells(PARAMS).map(fakeCell), false, '0.1.0');
  const merged = mergeCampaigns([part('c.json', shardDoc(3, 3)), part('a.json', shardDoc(1, 3)), part('b.json', shardDoc(2, 3))]);
  t.deepEqual(merged, whole);
  t.is(merged.outcomeDigest, outcomeDigest(whole.cells));
  t.is(merged.shard, null);
  // A whole document merges to itself.
  t.deepEqual(mergeCampaigns([part('w.json', whole)]), whole);
});

test('merge: a clear error naming the file for every part that does not belong', (t) => {
  const msg = (parts: { file: string; text: string }[]) => (t.throws(() => mergeCampaigns(parts), { instanceOf: EmuError }) as EmuError).message;
  const other = { ...PARAMS, seeds: { from: 1, to: 4 } };
  t.regex(msg([part('a.json', shardDoc(1, 2)), part('b.json', shardDoc(2, 2, other))]), /^invalid PART: b\.json is from another campaign: --seeds .*a\.json/);
  t.regex(msg([part('a.json', shardDoc(1, 2)), part('b.json', shardDoc(2, 2, { ...PARAMS, schedules: 4 }))]), /b\.json is from another campaign: --schedules 4 there, 3 in a\.json/);
  t.regex(msg([part('a.json', shardDoc(1, 2)), part('b.json', { ...shardDoc(2, 2), version: '9.9.9' })]), /b\.json was made by hvemu 9\.9\.9/);
  t.regex(msg([part('a.json', shardDoc(1, 3)), part('b.json', shardDoc(1, 3)), part('c.json', shardDoc(3, 3))]), /b\.json and a\.json are both shard 1\/3/);
  t.regex(msg([part('a.json', shardDoc(1, 3)), part('c.json', shardDoc(3, 3))]), /shard 2\/3 missing \(given: 1\/3 a\.json, 3\/3 c\.json\)/);
  t.regex(msg([part('a.json', shardDoc(1, 2)), part('b.json', shardDoc(2, 3))]), /b\.json is shard 2\/3, a\.json is shard 1\/2/);
  t.regex(msg([part('a.json', shardDoc(1, 2)), part('b.json', { ...shardDoc(2, 2), interrupted: true })]), /b\.json was interrupted/);
  const short = shardDoc(2, 2);
  t.regex(msg([part('a.json', shardDoc(1, 2)), part('b.json', { ...short, cells: short.cells.slice(1) })]), /b\.json does not hold exactly the cells of shard 2\/2/);
  t.regex(msg([part('a.json', shardDoc(1, 2)), { file: 'b.json', text: '{"format": "hvemu-camp' }]), /b\.json: not JSON/);
  t.regex(msg([part('a.json', shardDoc(1, 2)), part('b.json', { hello: 1 })]), /b\.json: not a campaign document/);
  t.regex(msg([]), /no part given/);
});
