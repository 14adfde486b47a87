/**
 * JUnit XML of a campaign, read back with an XML parser: one testcase per scenario × variant ×
 * seed; expected outcomes pass (a buggy variant that fails, a fixed one that holds); unexpected
 * ones are failures carrying the invariant and the replay command, or errors for runs that failed.
 */
import test from 'ava';
import { campaignDoc, matrixCells, planCampaign, type CampaignCell } from '../../src/scenarios/campaign.js';
import { campaignJunit } from '../../src/scenarios/junit.js';
import { parseJunit, parseXml } from './junit-xml.js';

const PARAMS = planCampaign({ seeds: '1..2', scenarios: 'pi-wakeup-block,savic-requested-irr', schedules: 5, buggySchedules: 50 }).params;

/** Cells of every kind: pi-wakeup-block as expected; savic-requested-irr seed 1 unexpected in every way. */
function cells(): CampaignCell[] {
  return matrixCells(PARAMS).map((k): CampaignCell => {
    const buggy = k.variant === 'buggy';
    const base: CampaignCell = {
      ...k,
      buggy,
      expected: buggy ? 'fails' : 'holds',
      outcome: buggy ? 'fails' : 'holds',
      asExpected: true,
      invariant: buggy ? 'inv' : null,
      round: buggy ? 0 : null,
      detail: buggy ? 'broke' : null,
      iterations: 1,
      schedules: buggy ? 2 : 5,
      steps: 10,
      traceDigest: 'abcd',
      replay: buggy ? `hv1.TOKEN-${k.scenario}-${k.seed}` : null,
      failure: null,
      rerun: `hvemu race ${k.scenario} --variant ${k.variant} --mode controlled --seed ${k.seed} --iterations 1 --schedules ${buggy ? 50 : 5}`,
      elapsedMs: 1234,
    };
    if (k.scenario !== 'savic-requested-irr') return base;
    if (k.variant === 'fixed' && k.seed === 1) {
      // A fixed variant violated: the invariant, an awkward detail, the replay token.
      return { ...base, outcome: 'fails', asExpected: false, invariant: 'savicNoLostAllowedVector', round: 3, detail: 'vector 0x41 lost & <gone> "quoted" \u0001 control ]]> end', replay: 'hv1.FIXEDTOKEN' };
    }
    if (k.variant === 'buggy' && k.seed === 1) return { ...base, outcome: 'holds', asExpected: false, invariant: null, round: null, detail: null, replay: null, schedules: 50 };
    if (k.variant === 'buggy' && k.seed === 2) return { ...base, outcome: 'error', asExpected: false, invariant: null, round: null, detail: null, replay: null, failure: { code: 'EMU_ERR_ACTOR_CRASHED', message: 'target: worker crashed', actor: 'target' } };
    return base;
  });
}

test('one testcase per cell, classname = scenario, name = variant + seed; counts add up', (t) => {
  const doc = campaignDoc(PARAMS, { index: 2, count: 5 }, 40, cells(), false, '0.1.0');
  const j = parseJunit(t, campaignJunit(doc));
  t.is(j.tests, 8);
  t.is(j.failures, 2);
  t.is(j.errors, 1);
  t.deepEqual(j.suites.map((s) => s.name), ['pi-wakeup-block', 'savic-requested-irr']);
  t.deepEqual(j.suites[0]!.cases.map((c) => c.name), ['buggy seed 1', 'buggy seed 2', 'fixed seed 1', 'fixed seed 2']);
  t.true(j.suites[0]!.cases.every((c) => c.failure === null && c.error === null), 'expected outcomes pass');
  t.is(j.suites[0]!.cases[0]!.time, 1.234);
  const props = j.suites[1]!.properties;
  t.is(props.get('mode'), 'controlled');
  t.is(props.get('seeds'), '1..2');
  t.is(props.get('shard'), '2/5');
  t.is(props.get('outcomeDigest'), doc.outcomeDigest);
});

test('passing cells say what happened; a find carries its replay command', (t) => {
  const j = parseJunit(t, campaignJunit(campaignDoc(PARAMS, null, 8, cells(), false, '0.1.0')));
  const wake = j.suites[0]!.cases;
  t.regex(wake[0]!.systemOut ?? '', /^expected violation: inv in round 0 of schedule 2/);
  t.regex(wake[0]!.systemOut ?? '', /hvemu replay hv1\.TOKEN-pi-wakeup-block-1/);
  t.regex(wake[2]!.systemOut ?? '', /held as expected: no violation in 5 schedules of 1 round/);
});

test('unexpected outcomes: fixed violated and buggy not reached are failures, a failed run is an error', (t) => {
  const xml = campaignJunit(campaignDoc(PARAMS, null, 8, cells(), false, '0.1.0'));
  const savic = parseJunit(t, xml).suites[1]!.cases;
  const byName = new Map(savic.map((c) => [c.name, c]));
  const fixed = byName.get('fixed seed 1')!;
  t.is(fixed.failure?.type, 'savicNoLostAllowedVector');
  t.is(fixed.failure?.message, 'fixed is expected to hold but broke savicNoLostAllowedVector in round 3');
  t.true(fixed.failure?.text.includes('vector 0x41 lost & <gone> "quoted" \uFFFD control ]]> end'), 'escaped, and the control character replaced');
  t.regex(fixed.failure?.text ?? '', /invariant savicNoLostAllowedVector: /);
  t.regex(fixed.failure?.text ?? '', /replay \(exact\): hvemu replay hv1\.FIXEDTOKEN/);
  const notReached = byName.get('buggy seed 1')!;
  t.is(notReached.failure?.type, 'not-reached');
  t.regex(notReached.failure?.message ?? '', /buggy is expected to break an invariant but held over 50 schedules of 1 round \(not reached\)/);
  t.regex(notReached.failure?.text ?? '', /rerun: hvemu race savic-requested-irr --variant buggy --mode controlled --seed 1 --iterations 1 --schedules 50/);
  const crashed = byName.get('buggy seed 2')!;
  t.is(crashed.failure, null);
  t.is(crashed.error?.type, 'EMU_ERR_ACTOR_CRASHED');
  t.regex(crashed.error?.text ?? '', /target: worker crashed/);
  t.is(byName.get('fixed seed 2')!.failure, null);
  // No raw control character reaches the file (XML 1.0 forbids it).
  // eslint-disable-next-line no-control-regex -- looking for the control characters XML forbids
  t.notRegex(xml, /[\u0000-\u0008\u000B\u000C\u000E-\u001F]/);
});

test('the checks can fail: malformed XML throws, counts that do not add up fail', async (t) => {
  t.throws(() => parseXml('<testsuites><testsuite></testsuites>'), { any: true });
  t.throws(() => parseXml('<testsuites>&bogus;</testsuites>'), { any: true });
  const wrong = await t.try((tt) => {
    parseJunit(tt, '<?xml version="1.0" encoding="UTF-8"?>\n<testsuites tests="2" failures="0" errors="0"><testsuite name="a" tests="1" failures="0" errors="0"><testcase classname="a" name="x" time="0"/></testsuite></testsuites>');
  });
  const passed = wrong.passed;
  wrong.discard();
  t.false(passed);
});
