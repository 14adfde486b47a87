/**
 * The built CLI as a user runs it: exit codes, the JSON shape, usage errors without stack
 * traces, Ctrl-C with partial accounting, event files.
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readEventsMsgpack } from '../../src/trace/msgpack.js';

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

function hvemu(args: string[], opts: { sigintWhenRunning?: boolean } = {}): Promise<Ran> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    let signalled = false;
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      // Once the run has started (its first line), let it run a moment, then Ctrl-C.
      if (opts.sigintWhenRunning && !signalled && /running/.test(stderr)) {
        signalled = true;
        setTimeout(() => child.kill('SIGINT'), 700);
      }
    });
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

test('run --json: exit 0 and the documented shape', async (t) => {
  const r = await hvemu(['run', '--vcpus', '3', '--pcpus', '2', '--sends', '1000', '--seed', '5', '--json']);
  t.is(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout) as Record<string, unknown>;
  for (const k of ['machine', 'seed', 'workload', 'seconds', 'ok', 'quiescent', 'interrupted', 'totals', 'rate', 'perVcpu', 'perVector', 'counters', 'violations', 'failure', 'events']) t.true(k in j, `missing ${k}`);
  t.deepEqual(j.machine, { vendor: 'vmx', vcpus: 3, pcpus: 2, ringRecords: 16384, packages: 1 });
  t.is(j.seed, 5);
  t.is(j.ok, true);
  const totals = j.totals as { sent: number; delivered: number; coalesced: number; lost: number };
  t.is(totals.lost, 0);
  t.is(totals.sent, totals.delivered + totals.coalesced);
  t.is((j.perVcpu as unknown[]).length, 3);
});

test('run --vendor svm|tdx|savic: the storm on every interrupt-virtualization model, nothing lost', async (t) => {
  for (const vendor of ['svm', 'tdx', 'savic']) {
    const r = await hvemu(['run', '--vendor', vendor, '--sends', '1000', '--seed', '3', '--json']);
    t.is(r.code, 0, `${vendor}: ${r.stderr}`);
    const j = JSON.parse(r.stdout) as { machine: { vendor: string }; totals: { lost: number; delivered: number } };
    t.is(j.machine.vendor, vendor);
    t.is(j.totals.lost, 0);
    t.true(j.totals.delivered > 0);
  }
});

test('run prints the accounting table and exits 0', async (t) => {
  const r = await hvemu(['run', '--sends', '1000', '--seed', '9']);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /vcpu3/);
  t.regex(r.stdout, /lost = 0/);
  t.notRegex(r.stderr, /\[[░█]+/, 'no progress bar without a TTY');
});

for (const [args, param] of [
  [['run', '--vcpus', '0'], 'vcpus'],
  [['run', '--vcpus', '257'], 'vcpus'],
  [['run', '--vcpus', 'many'], 'vcpus'],
  [['run', '--pcpus', '0'], 'pcpus'],
  [['run', '--vendor', 'sparc'], 'vendor'],
  [['run', '--seconds', 'soon'], 'seconds'],
  [['run', '--seed', '1.5'], 'seed'],
  [['run', '--burst', '-1'], 'burst'],
] as const) {
  test(`bad input ${args.slice(1).join(' ')}: exit 2, names ${param}, usage, no stack trace`, async (t) => {
    const r = await hvemu([...args]);
    t.is(r.code, 2);
    t.regex(r.stderr, new RegExp(`invalid ${param}`));
    t.regex(r.stderr, /usage: hvemu run/);
    t.notRegex(r.stderr, /\n\s+at /);
  });
}

test('unknown option and missing command: exit 2 with usage', async (t) => {
  for (const args of [['run', '--frobnicate'], [], ['explode']]) {
    const r = await hvemu(args);
    t.is(r.code, 2, args.join(' '));
    t.regex(r.stderr, /usage: hvemu/);
  }
});

test('--help exits 0', async (t) => {
  const r = await hvemu(['run', '--help']);
  t.is(r.code, 0);
  t.regex(r.stdout, /--vcpus <n>/);
});

test('Ctrl-C stops a long run cleanly and still prints the partial accounting', async (t) => {
  const r = await hvemu(['run', '--seconds', '60', '--json'], { sigintWhenRunning: true });
  t.is(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout) as { interrupted: boolean; seconds: number; totals: { sent: number; lost: number } };
  t.true(j.interrupted);
  t.true(j.seconds < 30);
  t.true(j.totals.sent > 0);
  t.is(j.totals.lost, 0);
});

test('--trace-out writes a msgpack event file that reads back', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'hvemu-'));
  const file = join(dir, 'events.msgpack');
  const r = await hvemu(['run', '--sends', '500', '--seed', '3', '--trace-out', file, '--json']);
  t.is(r.code, 0, r.stderr);
  const events = await readEventsMsgpack(file);
  const j = JSON.parse(r.stdout) as { events: { emitted: number } };
  t.is(events.length, j.events.emitted);
  t.true(events.some((e) => e.type === 'apic:ipi-sent'));
  t.true(events.some((e) => e.type === 'guest:delivered'));
});

test('list --json: every scenario with id, title, seed, variants, invariants', async (t) => {
  const r = await hvemu(['list', '--json']);
  t.is(r.code, 0, r.stderr);
  const rows = JSON.parse(r.stdout) as { id: string; title: string; seed: string; variants: string[]; invariants: string[] }[];
  const savic = rows.find((x) => x.id === 'savic-requested-irr');
  t.truthy(savic);
  t.deepEqual(savic?.variants, ['buggy', 'fixed']);
  t.regex(savic?.seed ?? '', /^003_/);
  for (const row of rows) t.true(row.variants.length >= 2 && row.invariants.length >= 1 && row.title.length > 0);
});

test('race --json: exit 1 with the first violation for buggy, exit 0 for fixed, the documented shape', async (t) => {
  // buggy-srcu-held deadlocks in its first round under every interleaving (synchronize_srcu under
  // the caller's own SRCU read lock), so this exit-1 path does not depend on the host's timing.
  const bad = await hvemu(['race', 'apic-memslot-inhibit', '--iterations', '50', '--deadline-ms', '2000', '--seed', '7', '--json']);
  t.is(bad.code, 1, bad.stderr);
  const j = JSON.parse(bad.stdout) as Record<string, unknown> & { first: { iteration: number; elapsedMs: number; invariant: string; detail: string } };
  for (const k of ['scenario', 'variant', 'seed', 'iterations', 'elapsedMs', 'violations', 'first']) t.true(k in j, `missing ${k}`);
  t.is(j.variant, 'buggy-srcu-held', 'default variant is the first buggy one');
  t.true((j.violations as number) >= 1);
  t.is(j.first.invariant, 'noDeadlock');
  t.is(typeof j.first.iteration, 'number');
  const good = await hvemu(['race', 'savic-requested-irr', '--variant', 'fixed', '--iterations', '500', '--json']);
  t.is(good.code, 0, good.stderr);
  const g = JSON.parse(good.stdout) as { violations: number; first: unknown; iterations: number };
  t.is(g.violations, 0);
  t.is(g.first, null);
  t.is(g.iterations, 500);
});

test('race: unknown id or variant is exit 2 naming it; --trace writes Chrome Trace Event JSON', async (t) => {
  const r1 = await hvemu(['race', 'no-such-race']);
  t.is(r1.code, 2);
  t.regex(r1.stderr, /unknown scenario "no-such-race"/);
  const r2 = await hvemu(['race', 'savic-requested-irr', '--variant', 'sideways']);
  t.is(r2.code, 2);
  t.regex(r2.stderr, /"sideways" is not a variant of savic-requested-irr/);
  const r3 = await hvemu(['race', 'savic-requested-irr', '--iterations', '5', '--seconds', '1']);
  t.is(r3.code, 2);
  const dir = mkdtempSync(join(tmpdir(), 'hvemu-'));
  const file = join(dir, 'race.json');
  const r4 = await hvemu(['race', 'savic-requested-irr', '--variant', 'fixed', '--seed', '7', '--iterations', '200', '--trace', file]);
  t.is(r4.code, 0, r4.stderr);
  const doc = JSON.parse(readFileSync(file, 'utf8')) as { traceEvents: { ph: string; tid: number; name: string; args?: { name?: string } }[] };
  const tracks = doc.traceEvents.filter((e) => e.ph === 'M' && e.name === 'thread_name').map((e) => e.args?.name);
  t.deepEqual(tracks.sort(), ['source0', 'source1', 'target']);
  t.true(doc.traceEvents.some((e) => e.ph === 'X' && e.name === 'savic:vmrun-clear'));
  t.true(doc.traceEvents.some((e) => e.ph === 's') && doc.traceEvents.some((e) => e.ph === 'f'), 'flow arrows between actors');
});

test('race: Ctrl-C ends a long run after the current round with exit 0 and interrupted: true', async (t) => {
  const r = await hvemu(['race', 'savic-requested-irr', '--variant', 'fixed', '--seconds', '120', '--json'], { sigintWhenRunning: true });
  t.is(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout) as { interrupted: boolean; violations: number; iterations: number };
  t.true(j.interrupted);
  t.is(j.violations, 0);
});
