/**
 * The CLI's controlled-mode extras: a free-mode find is followed by a controlled hunt that prints
 * an exact replay token; controlled races and replays write the execution as a Perfetto trace;
 * bad paths and misplaced flags exit 2 before any work.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

function hvemu(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { timeout: 300_000, maxBuffer: 64 << 20 }, (e, stdout, stderr) => {
      resolve({ code: e ? ((e as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

test('a free-mode find (certain in round 1) is followed by a controlled hunt whose token replays the same invariant', async (t) => {
  const r = await hvemu(['race', 'apic-memslot-inhibit', '--variant', 'buggy-srcu-held', '--iterations', '5', '--seed', '1', '--deadline-ms', '2000', '--json']);
  t.is(r.code, 1, r.stderr);
  const j = JSON.parse(r.stdout) as { first: { invariant: string }; hunt: { found: boolean; sameInvariant: boolean; replay: string } };
  t.is(j.first.invariant, 'noDeadlock');
  t.true(j.hunt.found);
  t.true(j.hunt.sameInvariant);
  const again = await hvemu(['replay', j.hunt.replay, '--json']);
  t.is(again.code, 1);
  t.is((JSON.parse(again.stdout) as { first: { invariant: string } }).first.invariant, 'noDeadlock');
});

test('--hunt 0 skips the hunt; --hunt with --mode controlled is bad usage', async (t) => {
  const r = await hvemu(['race', 'apic-memslot-inhibit', '--variant', 'buggy-srcu-held', '--iterations', '5', '--seed', '1', '--deadline-ms', '2000', '--hunt', '0', '--json']);
  t.is(r.code, 1);
  t.is((JSON.parse(r.stdout) as { hunt: unknown }).hunt, null);
  const bad = await hvemu(['race', 'pi-sb-notification', '--mode', 'controlled', '--hunt', '10']);
  t.is(bad.code, 2);
  t.regex(bad.stderr, /invalid hunt: --hunt is for --mode free/);
});

test('race --mode controlled --trace and replay --trace write the execution as Chrome Trace Event JSON, one track per CPU', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'hvemu-ctl-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'found.json');
  const r = await hvemu(['race', 'apic-memslot-inhibit', '--variant', 'buggy-no-inhibited', '--mode', 'controlled', '--seed', '1', '--trace', file, '--json']);
  t.is(r.code, 1, r.stderr);
  const j = JSON.parse(r.stdout) as { replay: string; trace: { file: string; events: number; error: null } };
  t.is(j.trace.file, file);
  t.is(j.trace.error, null);
  const doc = JSON.parse(readFileSync(file, 'utf8')) as { traceEvents: { ph: string; name: string; tid: number; args?: { name?: string } }[] };
  const tracks = doc.traceEvents.filter((e) => e.ph === 'M' && e.name === 'thread_name').map((e) => e.args?.name);
  t.deepEqual(tracks.sort(), ['vcpu0', 'vcpu1', 'vcpu2', 'vmm']);
  t.is(doc.traceEvents.filter((e) => e.ph === 'X').length, j.trace.events);
  t.true(doc.traceEvents.some((e) => e.name === 'apic-access:alloc-inhibited-read'));
  const file2 = join(dir, 'replayed.json');
  const rep = await hvemu(['replay', j.replay, '--shrink', '--trace', file2]);
  t.is(rep.code, 1);
  t.regex(rep.stderr, /wrote the last \d+ steps of the execution to .*replayed\.json/);
  t.true(JSON.parse(readFileSync(file2, 'utf8')).traceEvents.length > 0);
});

test('controlled --trace to a missing directory exits 2 before the search, naming --trace', async (t) => {
  const r = await hvemu(['race', 'pi-sb-notification', '--mode', 'controlled', '--trace', '/nonexistent/dir/t.json']);
  t.is(r.code, 2);
  t.regex(r.stderr, /invalid --trace: directory \/nonexistent\/dir does not exist/);
  t.notRegex(r.stderr, /at .*\.js:\d+/);
});
