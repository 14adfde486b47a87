/**
 * `hvemu litmus` as a user runs it: the tables, the JSON document, exit codes 0 (every test
 * matches x86-TSO), 1 (a mismatch) and 2 (bad input, naming it, with the usage).
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

function hvemu(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
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
  t.regex(unknown.stderr, /hvemu litmus \[NAME\.\.\.\] \[--mode controlled\|free\]/);
  t.notRegex(unknown.stderr, /litmus running/, 'nothing ran');
  const mode = await hvemu(['litmus', '--mode', 'weak']);
  t.is(mode.code, 2);
  t.regex(mode.stderr, /invalid --mode: "weak"/);
  const bound = await hvemu(['litmus', 'SB', '--preemptions', 'x']);
  t.is(bound.code, 2);
  t.regex(bound.stderr, /invalid preemptions: "x" is not an integer/);
});
