/**
 * The x86 litmus catalogue proves the controlled runtime's x86-TSO model: for every test, the
 * exhaustive bounded DFS over the runtime's schedules reaches exactly the final states x86-TSO
 * allows — SB, SB+mfence+po, SB+rfi-pos, R and n6 their relaxed state, and MP, LB, S, 2+2W,
 * WRC, IRIW, n5, SB+mfences, SB+xchgs and the coherence tests never their forbidden one. The
 * allowed sets themselves are checked against an independent enumeration of the x86-TSO abstract
 * machine (./tso-reference) and against the verdicts of the sources. Everything here is a function
 * of the schedules, not of the host's speed.
 */
import test from 'ava';
import { LITMUS_TESTS, formatState, satisfiesExists, type LitmusTest } from '../../src/scenarios/litmus-tests.js';
import { compareWithTso, litmusPool, runLitmus, type LitmusResult } from '../../src/scenarios/litmus-run.js';
import { findScenario, SCENARIOS } from '../../src/scenarios/index.js';
import { findVariant } from '../../src/scenarios/define.js';
import { closeSharedPool, type ActorPool } from '../../src/runtime/pool.js';
import { referenceStates } from './tso-reference.js';

// One pool for the whole file, sized for the largest test (IRIW: four threads and the starter).
let pool: ActorPool;
test.before(async () => {
  pool = await litmusPool(LITMUS_TESTS);
});
test.after.always(async () => {
  await closeSharedPool();
});

const byName = (name: string): LitmusTest => LITMUS_TESTS.find((x) => x.name === name)!;
const allowedKeys = (lt: LitmusTest): string[] => lt.allowed.map((v) => formatState(lt, v)).sort();
const conditionKey = (lt: LitmusTest): string => formatState(lt, lt.observe.map((o) => lt.exists[o]!));

// ---- the catalogue's data

test('the catalogue has the classic tests, each with a source and a verdict', (t) => {
  const names = LITMUS_TESTS.map((x) => x.name);
  for (const n of ['SB', 'SB+mfences', 'R', 'MP', 'LB', 'S', '2+2W', 'WRC', 'IRIW', 'n5', 'n6', 'CoRR', 'CoWW', 'CoRW1', 'CoRW2', 'CoWR', 'SB+xchgs']) t.true(names.includes(n), n);
  t.is(new Set(names).size, names.length);
  for (const lt of LITMUS_TESTS) {
    t.regex(lt.source, /herdtools7|SDM|x86-TSO/, lt.name);
    t.regex(lt.source, new RegExp(lt.verdict), `${lt.name}: its source names its verdict`);
    // Every test's condition names every observed component (so it is one final state).
    t.deepEqual(Object.keys(lt.exists).sort(), [...lt.observe].sort(), lt.name);
  }
});

test('every allowed set is exactly what the x86-TSO abstract machine reaches', (t) => {
  for (const lt of LITMUS_TESTS) t.deepEqual(allowedKeys(lt), [...referenceStates(lt, 'tso')].sort(), lt.name);
});

test('the condition is in the allowed set exactly when the verdict is Allow, and an allowed condition needs TSO (not reachable under SC)', (t) => {
  for (const lt of LITMUS_TESTS) {
    t.is(lt.allowed.some((v) => satisfiesExists(lt, v)), lt.verdict === 'Allow', lt.name);
    const sc = referenceStates(lt, 'sc');
    t.false(sc.has(conditionKey(lt)), `${lt.name}: the condition is reachable under SC`);
    for (const s of sc) t.true(allowedKeys(lt).includes(s), `${lt.name}: SC state ${s} is not allowed`);
  }
  // The reference can tell the models apart: SB has one more state under TSO than under SC.
  t.is(referenceStates(byName('SB'), 'sc').size, 3);
  t.is(referenceStates(byName('SB'), 'tso').size, 4);
});

test('litmus scenarios are found by id (litmus:SB) but are not in the race catalogue', (t) => {
  t.is(findScenario('litmus:SB').id, 'litmus:SB');
  const iriw = findScenario('litmus:IRIW');
  const roles = (variant: string) => iriw.roles({ variant: findVariant(iriw, variant), vcpus: 1, seed: 1 });
  t.deepEqual(roles('free'), ['P0', 'P1', 'P2', 'P3']);
  t.deepEqual(roles('controlled'), ['P0', 'P1', 'P2', 'P3', 'starter']);
  t.false(SCENARIOS.some((s) => s.id.startsWith('litmus:')));
  t.throws(() => findScenario('litmus:NOPE'), { message: /unknown scenario "litmus:NOPE"/ });
});

// ---- controlled mode: the runtime reaches exactly what x86-TSO allows

const results = new Map<string, LitmusResult>();

for (const lt of LITMUS_TESTS) {
  test.serial(`controlled ${lt.name}: the bounded DFS is exhaustive and reaches exactly the x86-TSO-allowed states`, async (t) => {
    const r = await runLitmus(lt.name, { mode: 'controlled', pool });
    results.set(lt.name, r);
    t.log(`${r.runs} executions, ${r.states.map((s) => `${lt.observe.map((o) => s[o]).join(',')}×${s.count}`).join(' ')}`);
    t.is(r.failure, null);
    t.true(r.exhaustive);
    t.deepEqual(r.forbiddenObserved, []);
    t.deepEqual(r.missing, []);
    t.deepEqual(r.states.map((s) => formatState(lt, lt.observe.map((o) => s[o]!))).sort(), allowedKeys(lt));
    // herd's words: Ok (the condition was reached) for Allow, No for Forbid.
    t.is(r.observation, lt.verdict === 'Allow' ? 'Ok' : 'No');
    t.is(r.verdict, 'match');
  });
}

test.serial('the relaxed outcomes show up (SB, R, n6) and the forbidden ones do not (MP, LB, 2+2W, WRC, IRIW, SB+mfences)', (t) => {
  for (const n of ['SB', 'R', 'n6']) t.true(results.get(n)?.conditionObserved, n);
  for (const n of ['MP', 'LB', '2+2W', 'WRC', 'IRIW', 'SB+mfences']) t.false(results.get(n)?.conditionObserved ?? true, n);
});

for (const name of ['SB', 'MP']) {
  test.serial(`controlled ${name} with two preemptions: more schedules, still exactly the allowed states`, async (t) => {
    const r = await runLitmus(name, { mode: 'controlled', preemptions: 2, pool });
    t.true(r.exhaustive);
    t.true(r.runs > (results.get(name)?.runs ?? Infinity), 'a higher bound explores more schedules');
    t.deepEqual(r.forbiddenObserved, []);
    t.deepEqual(r.missing, []);
    t.is(r.verdict, 'match');
  });
}

test.serial('a budget too small for the DFS is reported as not exhaustive (a mismatch)', async (t) => {
  const r = await runLitmus('SB', { mode: 'controlled', iterations: 12, pool });
  t.false(r.exhaustive);
  t.is(r.verdict, 'mismatch');
  t.regex(r.reasons.join(' '), /did not run every schedule/);
});

// ---- the comparison can fail

test.serial('the comparison can fail: against a wrong expected set, the same observations are a mismatch', (t) => {
  const seenOf = (lt: LitmusTest, r: LitmusResult) => new Map(r.states.map((s) => {
    const values = lt.observe.map((o) => s[o]!);
    return [formatState(lt, values), { values, count: s.count }] as const;
  }));
  const sb = byName('SB');
  const sbRun = results.get('SB')!;
  const run = { mode: 'controlled' as const, exhaustive: true, failure: null };
  t.is(compareWithTso(sb, seenOf(sb, sbRun), run).verdict, 'match');
  // Expect SC instead of TSO for SB: the relaxed state reached is now "forbidden".
  const asSc = compareWithTso(sb, seenOf(sb, sbRun), run, sb.allowed.filter((v) => !satisfiesExists(sb, v)));
  t.is(asSc.verdict, 'mismatch');
  t.deepEqual(asSc.forbiddenObserved, ['0:EAX=0; 1:EAX=0;']);
  // Expect SB+mfences to allow SB's relaxed state: it is never reached, so it is "missing".
  const fenced = byName('SB+mfences');
  const tooWeak = compareWithTso(fenced, seenOf(fenced, results.get('SB+mfences')!), run, [...fenced.allowed, [0, 0]]);
  t.is(tooWeak.verdict, 'mismatch');
  t.deepEqual(tooWeak.missing, ['0:EAX=0; 1:EAX=0;']);
  // In free mode a missing state is no finding, a forbidden one is.
  t.is(compareWithTso(fenced, seenOf(fenced, results.get('SB+mfences')!), { ...run, mode: 'free', exhaustive: null }, [...fenced.allowed, [0, 0]]).verdict, 'match');
  t.is(compareWithTso(sb, seenOf(sb, sbRun), { ...run, mode: 'free', exhaustive: null }, sb.allowed.filter((v) => !satisfiesExists(sb, v))).verdict, 'mismatch');
});
