/**
 * `hvemu litmus` as a user runs it: the tables, herd7's block per test, the JSON document, exit
 * codes 0 (every test matches x86-TSO), 1 (a mismatch) and 2 (bad input, naming it, with the
 * usage). The run of every shipped .litmus file in controlled mode is the suite's check that the
 * controlled runtime reaches exactly the x86-TSO states of each of them (./tso-reference).
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseLitmus } from '../../src/scenarios/litmus-parse.js';
import { formatState } from '../../src/scenarios/litmus-tests.js';
import { referenceStates } from './tso-reference.js';

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

function hvemu(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], cwd: ROOT });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

test('litmus SB CoRR: a table per test and a summary, exit 0', async (t) => {
  const r = await hvemu(['litmus', 'SB', 'CoRR']);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^SB — store buffering/m);
  t.regex(r.stdout, /exists \(0:EAX=0 \/\\ 1:EAX=0\): x86-TSO Allow; observed: Ok/);
  t.regex(r.stdout, /0:EAX=0; 1:EAX=0; \(exists\)/);
  t.regex(r.stdout, /exists \(1:EAX=1 \/\\ 1:EBX=0\): x86-TSO Forbid; observed: No/);
  t.regex(r.stdout, /controlled: \d+ executions, DFS with ≤ 1 preemption, exhaustive: matches x86-TSO/);
  t.regex(r.stdout, /SB +│ 0:EAX=0 \/\\ 1:EAX=0 +│ Allow +│ Ok +│ 4 \/ 4 +│ \d+ +│ yes +│ match/);
  t.regex(r.stderr, /litmus running 2 tests in controlled mode/);
});

test('litmus --json: the documented shape', async (t) => {
  const r = await hvemu(['litmus', 'MP', '--json']);
  t.is(r.code, 0, r.stderr);
  const doc = JSON.parse(r.stdout) as { mode: string; ok: boolean; results: Record<string, unknown>[] };
  t.is(doc.mode, 'controlled');
  t.true(doc.ok);
  const [mp] = doc.results;
  for (const k of ['name', 'mode', 'source', 'condition', 'tso', 'states', 'allowed', 'forbiddenObserved', 'missing', 'conditionObserved', 'observation', 'verdict', 'reasons', 'exhaustive', 'preemptions', 'runs', 'steps', 'failure', 'elapsedMs']) t.true(k in mp!, k);
  t.is(mp!['observation'], 'No');
  t.deepEqual(mp!['forbiddenObserved'], []);
  t.deepEqual(mp!['states'], [
    { '1:EAX': 0, '1:EBX': 0, count: (mp!['states'] as { count: number }[])[0]!.count },
    { '1:EAX': 0, '1:EBX': 1, count: (mp!['states'] as { count: number }[])[1]!.count },
    { '1:EAX': 1, '1:EBX': 1, count: (mp!['states'] as { count: number }[])[2]!.count },
  ]);
});

test('litmus --mode free: rounds on real threads, exit 0 when nothing forbidden shows', async (t) => {
  const r = await hvemu(['litmus', 'SB', 'MP', '--mode', 'free', '--iterations', '300']);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /free: 300 rounds on real threads: matches x86-TSO/);
  t.regex(r.stdout, /MP +│ 1:EAX=1 \/\\ 1:EBX=0 +│ Forbid +│ No +│ \d \/ 3 +│ 300 +│ - +│ match/);
});

test('litmus: a DFS cut short by --iterations is a mismatch, exit 1', async (t) => {
  const r = await hvemu(['litmus', 'SB', '--iterations', '12']);
  t.is(r.code, 1, r.stderr);
  t.regex(r.stdout, /MISMATCH: .*did not run every schedule/);
});

test('litmus: bad input exits 2 naming it, with the usage', async (t) => {
  const unknown = await hvemu(['litmus', 'SB', 'NOPE']);
  t.is(unknown.code, 2);
  t.regex(unknown.stderr, /unknown litmus test "NOPE" \(known: SB, /);
  t.regex(unknown.stderr, /usage: hvemu run/);
  t.regex(unknown.stderr, /hvemu litmus \[NAME\|FILE\.litmus\|@INDEX\.\.\.\] \[--mode controlled\|free\]/);
  t.notRegex(unknown.stderr, /litmus running/, 'nothing ran');
  const mode = await hvemu(['litmus', '--mode', 'weak']);
  t.is(mode.code, 2);
  t.regex(mode.stderr, /invalid --mode: "weak"/);
  const bound = await hvemu(['litmus', 'SB', '--preemptions', 'x']);
  t.is(bound.code, 2);
  t.regex(bound.stderr, /invalid preemptions: "x" is not an integer/);
});

// ---- .litmus files

/** What the shell's litmus/x86/*.litmus expands to (sorted, relative to the repository). */
const SHIPPED = readdirSync(join(ROOT, 'litmus/x86'))
  .filter((f) => f.endsWith('.litmus'))
  .sort()
  .map((f) => `litmus/x86/${f}`);

interface JsonResult {
  name: string;
  file: string;
  mode: string;
  states: Record<string, number>[];
  conditionHolds: boolean;
  conditionObserved: boolean;
  exhaustive: boolean;
  verdict: string;
}

test('litmus litmus/x86/*.litmus --mode controlled --json: every state set, exactly x86-TSO\'s; SB and R relaxed, MP, LB, 2+2W, WRC, IRIW, SB+mfences never', async (t) => {
  // A guard against a hang only (the whole catalogue runs in one process); nothing asserts time.
  t.timeout(30 * 60_000);
  const r = await hvemu(['litmus', ...SHIPPED, '--mode', 'controlled', '--json']);
  t.is(r.code, 0, r.stderr);
  const doc = JSON.parse(r.stdout) as { mode: string; ok: boolean; results: JsonResult[] };
  t.is(doc.mode, 'controlled');
  t.true(doc.ok);
  t.deepEqual(
    doc.results.map((x) => x.file),
    SHIPPED,
  );
  const byName = new Map(doc.results.map((x) => [x.name, x]));
  for (const res of doc.results) {
    const lt = parseLitmus(readFileSync(join(ROOT, res.file), 'utf8'), res.file, (n) => `litmus:${n}`);
    const reached = res.states.map((s) => formatState(lt, lt.observe.map((o) => s[o]!))).sort();
    t.log(`${res.name}: ${reached.length} states: ${res.states.map((s) => `${lt.observe.map((o) => s[o]).join(',')}×${s['count']}`).join(' ')}`);
    t.deepEqual(reached, [...referenceStates(lt, 'tso')].sort(), `${res.name}: the controlled runtime reaches exactly x86-TSO's states`);
    for (const s of res.states) t.true(s['count']! > 0 && Object.keys(s).length === lt.observe.length + 1, `${res.name}: {...regs, ...mem, count}`);
    t.is(res.mode, 'controlled');
    t.true(res.exhaustive, res.name);
    t.is(res.verdict, 'match', res.name);
  }
  for (const n of ['SB', 'R']) t.true(byName.get(n)?.conditionObserved && byName.get(n)?.conditionHolds, `${n} shows its relaxed outcome`);
  for (const n of ['MP', 'LB', '2+2W', 'WRC', 'IRIW', 'SB+mfences']) t.false(byName.get(n)?.conditionObserved ?? true, `${n} never shows its forbidden outcome`);
});

test('litmus FILE.litmus: herd7\'s block after the table (Test, States, Ok, Witnesses, Condition, Observation)', async (t) => {
  const r = await hvemu(['litmus', 'litmus/x86/SB.litmus', 'litmus/x86/CMPXCHG.litmus']);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^ {2}file: litmus\/x86\/SB\.litmus$/m);
  t.regex(r.stdout, /^Test SB Allowed\nStates 4\n0:EAX=0; 1:EAX=0;\n0:EAX=0; 1:EAX=1;\n0:EAX=1; 1:EAX=0;\n0:EAX=1; 1:EAX=1;\nOk\nWitnesses\nPositive: (\d+) Negative: (\d+)\nCondition exists \(0:EAX=0 \/\\ 1:EAX=0\)\nObservation SB Sometimes \1 \2$/m);
  t.regex(r.stdout, /^Test CMPXCHG Forbidden\nStates 2\n0:EAX=0; 1:EAX=1;\n0:EAX=1; 1:EAX=0;\nOk\nWitnesses\nPositive: (\d+) Negative: 0\nCondition ~exists \(0:EAX=0 \/\\ 1:EAX=0\)\nObservation CMPXCHG Never 0 \1$/m);
  t.regex(r.stdout, /CMPXCHG +│ ~exists \(0:EAX=0 \/\\ 1:EAX=0\) +│ Forbid +│ Ok +│ 2 \/ 2 /);
});

test('litmus @INDEX: the files an index lists, relative to it', async (t) => {
  const r = await hvemu(['litmus', '@litmus/x86/@all', '--mode', 'free', '--iterations', '50', '--json']);
  t.is(r.code, 0, r.stderr);
  const doc = JSON.parse(r.stdout) as { results: JsonResult[] };
  t.deepEqual(
    doc.results.map((x) => x.file).sort(),
    SHIPPED,
  );
});

test('litmus with a file outside the subset: exit 2 naming the file, the line and the token, with the usage; nothing runs', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'hvemu-litmus-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const bad = join(dir, 'bad.litmus');
  writeFileSync(bad, 'X86 BAD\n{ x=0; }\n P0          | P1          ;\n MOV [x],$1  | MOV EAX,[x] ;\n CLFLUSH [x] | MOV EBX,[x] ;\nexists (1:EAX=1 /\\ 1:EBX=0)\n');
  const r = await hvemu(['litmus', 'litmus/x86/SB.litmus', bad]);
  t.is(r.code, 2);
  t.true(r.stderr.includes(`invalid litmus file ${bad}:5: unknown instruction`), r.stderr);
  t.regex(r.stderr, / "CLFLUSH"\n/);
  t.regex(r.stderr, /usage: hvemu run/);
  t.notRegex(r.stderr, /litmus running/, 'nothing ran');
  t.is(r.stdout, '');
  const missing = await hvemu(['litmus', join(dir, 'nope.litmus')]);
  t.is(missing.code, 2);
  t.regex(missing.stderr, /invalid litmus file .*nope\.litmus: cannot be read \(ENOENT\)/);
});

test('README\'s litmus usage line and the CLI\'s usage name every flag of litmus --help; the usage is the same', async (t) => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const readmeLine = /^hvemu litmus .*$/m.exec([...readme.matchAll(/```[a-z]*\n([\s\S]*?)```/g)].map((m) => m[1]).join('\n'))?.[0] ?? '';
  const printed = /^\s*hvemu litmus .*$/m.exec((await hvemu(['no-such-command'])).stderr)?.[0].trim() ?? '';
  t.is(readmeLine, printed);
  const help = await hvemu(['litmus', '--help']);
  t.is(help.code, 0, help.stderr);
  const flags = [...help.stdout.matchAll(/^\s+(?:-\w, )?(--[a-z][a-z-]*)/gm)].map((m) => m[1]!).filter((f) => f !== '--help');
  t.deepEqual(flags, ['--mode', '--iterations', '--preemptions', '--json']);
  for (const flag of flags) t.regex(readmeLine, new RegExp(`${flag}(?![a-z-])`), flag);
  t.regex(help.stdout, /Usage: hvemu litmus \[options\] \[tests\.\.\.\]/);
  t.regex(help.stdout, /FILE\.litmus/);
});
