/**
 * The x86 litmus catalogue (litmus/x86/*.litmus, parsed at load) and its x86-TSO verdicts: every
 * shipped file's allowed final states, as src/scenarios/litmus-tso enumerates them, equal an
 * independent enumeration of the x86-TSO abstract machine (./tso-reference), and every file's
 * declared verdict (its `x86-TSO:` comment) is what that machine gives. The controlled runtime is
 * run in process on a few tests here (the ones later assertions compare, and a user file with the
 * rest of the instruction set); ./litmus-cli.test runs every shipped file through `hvemu litmus
 * --mode controlled --json` and checks each reached set against the reference. Everything here is
 * a function of the schedules, not of the host's speed.
 */
import test from 'ava';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LITMUS_DIR_PATH, LITMUS_TESTS, formatState, readIndex, satisfies, type LitmusTest } from '../../src/scenarios/litmus-tests.js';
import { loadLitmusFile } from '../../src/scenarios/litmus-parse.js';
import { tsoStates, tsoVerdict } from '../../src/scenarios/litmus-tso.js';
import { compareWithTso, litmusPool, runLitmus, type LitmusResult } from '../../src/scenarios/litmus-run.js';
import { findScenario, SCENARIOS } from '../../src/scenarios/index.js';
import { findVariant } from '../../src/scenarios/define.js';
import { closeSharedPool, type ActorPool } from '../../src/runtime/pool.js';
import { referenceStates } from './tso-reference.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

// One pool for the whole file, sized for the largest test (IRIW: four threads and the starter).
let pool: ActorPool;
test.before(async () => {
  pool = await litmusPool(LITMUS_TESTS);
});
test.after.always(async () => {
  await closeSharedPool();
});

const byName = (name: string): LitmusTest => LITMUS_TESTS.find((x) => x.name === name)!;
const allowedKeys = (lt: LitmusTest): string[] => tsoStates(lt).map((v) => formatState(lt, v)).sort();
const stateKeys = (lt: LitmusTest, r: LitmusResult): string[] => r.states.map((s) => formatState(lt, lt.observe.map((o) => s[o]!))).sort();

// ---- the catalogue's data

test('the catalogue is the shipped files, in @all order, and the package ships them', (t) => {
  const files = readdirSync(LITMUS_DIR_PATH).filter((f) => f.endsWith('.litmus')).sort();
  const index = readIndex(readFileSync(join(LITMUS_DIR_PATH, '@all'), 'utf8'));
  t.deepEqual([...index].sort(), files, '@all lists every .litmus file of litmus/x86 once');
  t.deepEqual(
    LITMUS_TESTS.map((x) => x.file),
    index.map((f) => `litmus/x86/${f}`),
  );
  for (const lt of LITMUS_TESTS) t.is(`${lt.name}.litmus`, lt.file.replace(/^litmus\/x86\//, ''), 'each file is named after its test');
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { files: string[] };
  t.true(pkg.files.includes('litmus'), 'package.json "files" ships litmus/');
});

test('the catalogue has the classic tests and locked read-modify-writes, each with a declared verdict and its source', (t) => {
  const names = LITMUS_TESTS.map((x) => x.name);
  for (const n of ['SB', 'SB+mfences', 'R', 'MP', 'LB', 'S', '2+2W', 'WRC', 'IRIW', 'n5', 'n6', 'CoRR', 'CoWW', 'CoRW1', 'CoRW2', 'CoWR', 'SB+xchgs', 'INC', 'LOCK-INC', 'XADD', 'CMPXCHG']) t.true(names.includes(n), n);
  t.is(new Set(names).size, names.length);
  for (const lt of LITMUS_TESTS) {
    t.not(lt.declared, null, `${lt.name}: the file declares its verdict`);
    t.regex(lt.source, /herdtools7|herd\/libdir|SDM|x86-TSO/, lt.name);
    t.regex(lt.source, new RegExp(`^x86-TSO: ${lt.declared}\\. Verdict: `), `${lt.name}: its comment names the verdict and where it comes from`);
    t.not(lt.title, '', lt.name);
    t.true(lt.observe.length > 0, lt.name);
  }
});

test('every shipped file: the allowed states are exactly what the independent x86-TSO machine reaches', (t) => {
  for (const lt of LITMUS_TESTS) t.deepEqual(allowedKeys(lt), [...referenceStates(lt, 'tso')].sort(), lt.name);
});

test('every shipped file: its declared verdict is x86-TSO\'s (the proposition is reachable exactly when it says Allow)', (t) => {
  for (const lt of LITMUS_TESTS) {
    t.is(tsoVerdict(lt), lt.declared!, lt.name);
    const reachable = [...referenceStates(lt, 'tso')].some((k) => satisfies(lt, k.split('; ').map((kv) => Number(kv.replace(/;$/, '').split('=')[1]))));
    t.is(reachable ? 'Allow' : 'Forbid', lt.declared!, `${lt.name} (reference)`);
  }
});

test('SC states are a subset of TSO states; the relaxed outcomes need TSO, except the lost update of an unlocked INC', (t) => {
  for (const lt of LITMUS_TESTS) {
    const sc = referenceStates(lt, 'sc');
    for (const s of sc) t.true(allowedKeys(lt).includes(s), `${lt.name}: SC state ${s} is not allowed`);
    const scReaches = [...sc].some((k) => satisfies(lt, k.split('; ').map((kv) => Number(kv.replace(/;$/, '').split('=')[1]))));
    t.is(scReaches, lt.name === 'INC', `${lt.name}: the proposition under SC`);
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

// ---- controlled mode, in process

const results = new Map<string, LitmusResult>();

for (const name of ['SB', 'MP', 'SB+mfences', 'LOCK-INC', 'CMPXCHG']) {
  test.serial(`controlled ${name}: the bounded DFS is exhaustive and reaches exactly the x86-TSO-allowed states`, async (t) => {
    const lt = byName(name);
    const r = await runLitmus(name, { mode: 'controlled', pool });
    results.set(name, r);
    t.log(`${r.runs} executions, ${r.states.map((s) => `${lt.observe.map((o) => s[o]).join(',')}×${s.count}`).join(' ')}`);
    t.is(r.failure, null);
    t.true(r.exhaustive);
    t.deepEqual(r.forbiddenObserved, []);
    t.deepEqual(r.missing, []);
    t.deepEqual(stateKeys(lt, r), [...referenceStates(lt, 'tso')].sort());
    t.is(r.observation, r.expected, 'herd\'s word over the states reached is the one over the states x86-TSO allows');
    t.is(r.verdict, 'match');
    t.is(
      r.positive + r.negative,
      r.states.reduce((n, s) => n + s.count, 0),
    );
  });
}

test.serial('herd\'s words: exists Ok/No by whether the state was reached, ~exists Ok when it never is', (t) => {
  const sb = results.get('SB')!;
  t.like(sb, { quantifier: 'exists', kind: 'Allowed', tso: 'Allow', expected: 'Ok', observation: 'Ok', conditionObserved: true, conditionHolds: true, herdObservation: 'Sometimes' });
  t.like(results.get('MP')!, { kind: 'Allowed', tso: 'Forbid', expected: 'No', observation: 'No', conditionObserved: false, conditionHolds: false, herdObservation: 'Never', positive: 0 });
  t.like(results.get('CMPXCHG')!, { quantifier: '~exists', kind: 'Forbidden', tso: 'Forbid', expected: 'Ok', observation: 'Ok', conditionObserved: false, conditionHolds: true });
  // ~exists: herd counts the runs that do NOT satisfy the proposition as positive witnesses.
  t.is(results.get('CMPXCHG')!.negative, 0);
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

// A user's file with what the shipped catalogue does not use: initial values, register
// arithmetic, an unlocked ADD, LOCK XOR (a cmpxchg loop), LOCK OR, LOCK DEC, LFENCE, a
// `locations` clause, a forall condition with \/ and ~.
const USER_FILE = `X86 user-rmw
"what the catalogue does not use"
{ x=5; y=0; 0:ECX=2; }
 P0             | P1            ;
 MOV EAX,$3     | LOCK XOR [x],$1 ;
 ADD EAX,ECX    | LFENCE        ;
 LOCK DEC [x]   | MOV EBX,[y]   ;
 MOV [y],EAX    | LOCK OR [x],$8 ;
 ADD [y],$1     | INC EBX       ;
locations [x;]
forall (1:EBX=1 \\/ 1:EBX=6 \\/ 1:EBX=7) /\\ ~(y=0)
`;

test.serial('controlled, a user file (parsed again on the pool threads by its id): exactly the reference states', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'hvemu-litmus-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'user.litmus');
  writeFileSync(path, USER_FILE);
  const lt = loadLitmusFile(path);
  t.regex(lt.id, /^litmus:\/.*user\.litmus#[0-9a-f]{16}$/);
  t.deepEqual(lt.observe, ['1:EBX', 'x', 'y']);
  const ref = [...referenceStates(lt, 'tso')].sort();
  t.deepEqual(allowedKeys(lt), ref);
  t.true(ref.length > 2, ref.join(' | '));
  // One of its states needs two preemptions (P1's LOCK XOR before P0's LOCK DEC, then P1's load
  // between P0's two stores to y): at the default bound of one it is missing, and said to be.
  const one = await runLitmus(lt, { mode: 'controlled', pool });
  t.deepEqual(one.missing, ['1:EBX=6; x=11; y=6;']);
  t.is(one.verdict, 'mismatch');
  t.regex(one.reasons.join(' '), /never reached with ≤ 1 preemption \(a larger --preemptions may reach it\)/);
  const r = await runLitmus(lt, { mode: 'controlled', preemptions: 2, pool });
  t.log(`${r.runs} executions: ${stateKeys(lt, r).join(' | ')}`);
  t.is(r.failure, null);
  t.true(r.exhaustive);
  t.deepEqual(stateKeys(lt, r), ref);
  t.like(r, { quantifier: 'forall', kind: 'Required', expected: 'Ok', observation: 'Ok', herdObservation: 'Always', verdict: 'match', file: path });
});

// ---- the comparison can fail

test.serial('the comparison can fail: against a wrong expected set, the same observations are a mismatch', (t) => {
  const seenOf = (lt: LitmusTest, r: LitmusResult) =>
    new Map(
      r.states.map((s) => {
        const values = lt.observe.map((o) => s[o]!);
        return [formatState(lt, values), { values, count: s.count }] as const;
      }),
    );
  const sb = byName('SB');
  const sbRun = results.get('SB')!;
  const run = { mode: 'controlled' as const, exhaustive: true, failure: null };
  t.is(compareWithTso(sb, seenOf(sb, sbRun), run).verdict, 'match');
  // Expect SC instead of TSO for SB: the relaxed state reached is now "forbidden".
  const asSc = compareWithTso(sb, seenOf(sb, sbRun), run, tsoStates(sb).filter((v) => !satisfies(sb, v)));
  t.is(asSc.verdict, 'mismatch');
  t.deepEqual(asSc.forbiddenObserved, ['0:EAX=0; 1:EAX=0;']);
  // Expect SB+mfences to allow SB's relaxed state: it is never reached, so it is "missing".
  const fenced = byName('SB+mfences');
  const tooWeak = compareWithTso(fenced, seenOf(fenced, results.get('SB+mfences')!), run, [...tsoStates(fenced), [0, 0]]);
  t.is(tooWeak.verdict, 'mismatch');
  t.deepEqual(tooWeak.missing, ['0:EAX=0; 1:EAX=0;']);
  // In free mode a missing state is no finding, a forbidden one is.
  t.is(compareWithTso(fenced, seenOf(fenced, results.get('SB+mfences')!), { ...run, mode: 'free', exhaustive: null }, [...tsoStates(fenced), [0, 0]]).verdict, 'match');
  t.is(compareWithTso(sb, seenOf(sb, sbRun), { ...run, mode: 'free', exhaustive: null }, tsoStates(sb).filter((v) => !satisfies(sb, v))).verdict, 'mismatch');
});
