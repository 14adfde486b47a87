/**
 * The built CLI as a user runs it: exit codes, the JSON shape, usage errors without stack
 * traces, Ctrl-C with partial accounting, event files.
 */
import test, { type ExecutionContext } from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
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

interface HvemuOpts {
  sigintWhenRunning?: boolean;
  /** Called once, synchronously, when the run's "running" line appears on stderr. */
  whenRunning?: (child: ChildProcess) => void;
  /** Run the CLI as this user (tests of permissions when the suite runs as root). */
  uid?: number;
  /** Limit the size of files the CLI may write (ulimit -f, in 512-byte blocks): writes past it fail with EFBIG. */
  fileSizeBlocks?: number;
}

function hvemu(args: string[], opts: HvemuOpts = {}): Promise<Ran> {
  return new Promise((resolve) => {
    const ids = opts.uid === undefined ? {} : { uid: opts.uid, gid: opts.uid };
    const child =
      opts.fileSizeBlocks === undefined
        ? spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...ids })
        : // sh sets the limit and execs node (SIGXFSZ ignored, so a write past it fails with EFBIG).
          spawn('/bin/sh', ['-c', `trap '' XFSZ; ulimit -f ${opts.fileSizeBlocks}; exec "$0" "$@"`, process.execPath, CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...ids });
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
      if (opts.whenRunning && !signalled && /running/.test(stderr)) {
        signalled = true;
        opts.whenRunning(child);
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
  t.deepEqual(j.machine, { patches: [], vendor: 'vmx', vcpus: 3, pcpus: 2, ringRecords: 16384, packages: 1 });
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
  const rows = JSON.parse(r.stdout) as { id: string; title: string; seed: string; variants: { name: string; expected: string; patch: string | null; reverts: unknown[]; kernel: string | null }[]; invariants: string[] }[];
  const savic = rows.find((x) => x.id === 'savic-requested-irr');
  t.truthy(savic);
  t.deepEqual(savic?.variants.map((v) => v.name), ['buggy', 'fixed']);
  t.deepEqual(savic?.variants.map((v) => v.expected), ['fails', 'holds']);
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

// ---- Output files: checked before the run, written atomically, a failed write never costs the result.

const NO_STACK = /\n\s+at /;
const asRoot = process.getuid?.() === 0;
/** Root passes every permission check: the permission cases then run the CLI as nobody. */
const permissionUser = asRoot ? { uid: 65534 } : {};

/** A scratch directory that the permission user can enter and write. */
function scratch(): string {
  const dir = mkdtempSync(join(tmpdir(), 'hvemu-out-'));
  chmodSync(dir, 0o777);
  return dir;
}

type PathCase = { name: string; make: (dir: string) => string; why: RegExp; asUser?: boolean };

const PATH_CASES: PathCase[] = [
  { name: 'a parent directory that does not exist', make: (d) => join(d, 'missing', 'out.file'), why: /directory \S*missing does not exist/ },
  { name: 'a path that is a directory', make: (d) => d, why: /is a directory/ },
  {
    name: 'a directory that is not writable',
    make: (d) => {
      const ro = join(d, 'ro');
      mkdirSync(ro);
      chmodSync(ro, 0o555);
      return join(ro, 'out.file');
    },
    why: /directory \S*ro is not writable/,
    asUser: true,
  },
  {
    name: 'a file that is not writable',
    make: (d) => {
      const f = join(d, 'ro.file');
      writeFileSync(f, 'old');
      chmodSync(f, 0o444);
      return f;
    },
    why: /ro\.file is not writable/,
    asUser: true,
  },
];

const COMMANDS = [
  { flag: '--trace', args: (file: string) => ['race', 'savic-requested-irr', '--variant', 'fixed', '--iterations', '50', '--trace', file] },
  { flag: '--trace-out', args: (file: string) => ['run', '--sends', '200', '--trace-out', file] },
];

for (const cmd of COMMANDS) {
  for (const c of PATH_CASES) {
    test(`${cmd.args('FILE')[0]} ${cmd.flag} with ${c.name}: exit 2 before the run, naming ${cmd.flag}, no stack trace`, async (t) => {
      const dir = scratch();
      const file = c.make(dir);
      const before = readdirSync(dir).sort();
      const r = await hvemu(cmd.args(file), c.asUser ? permissionUser : {});
      t.is(r.code, 2, r.stderr);
      t.regex(r.stderr, new RegExp(`^hvemu: invalid ${cmd.flag}: `, 'm'));
      t.regex(r.stderr, c.why);
      t.regex(r.stderr, /usage: hvemu run/);
      t.notRegex(r.stderr, NO_STACK);
      t.notRegex(r.stderr, /running/, 'the run did not start');
      t.is(r.stdout, '', 'no result: nothing ran');
      t.deepEqual(readdirSync(dir).sort(), before, 'nothing created, no temp file');
    });
  }
}

/** The directory holds exactly `names` (no temp file, no partial file). */
function holdsExactly(t: ExecutionContext, dir: string, names: string[]): void {
  t.deepEqual(readdirSync(dir).sort(), [...names].sort(), 'no temp file or partial file left');
}

test('race --trace: the file appears complete, no temp file is left', async (t) => {
  const dir = scratch();
  const file = join(dir, 'race.json');
  const r = await hvemu(['race', 'savic-requested-irr', '--variant', 'fixed', '--iterations', '50', '--seed', '3', '--trace', file, '--json']);
  t.is(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout) as { trace: { file: string; events: number; recorded: number; ringRecords: number; error: string | null } };
  t.is(j.trace.error, null);
  t.true(j.trace.events > 0 && j.trace.recorded >= j.trace.events);
  const doc = JSON.parse(readFileSync(file, 'utf8')) as { traceEvents: { ph: string }[] };
  t.is(doc.traceEvents.filter((e) => e.ph === 'X').length, j.trace.events);
  holdsExactly(t, dir, ['race.json']);
});

test('a write that fails mid-file (EFBIG) after a run: result printed, error on stderr, the run\'s exit code, the old file intact, no temp file', async (t) => {
  const dir = scratch();
  const raceFile = join(dir, 'race.json');
  const runFile = join(dir, 'events.msgpack');
  writeFileSync(raceFile, 'old race');
  writeFileSync(runFile, 'old run');
  // Both files are far larger than 2 blocks: the write fails part-way through.
  const race = await hvemu(['race', 'savic-requested-irr', '--variant', 'fixed', '--iterations', '50', '--trace', raceFile], { fileSizeBlocks: 2 });
  t.is(race.code, 0, race.stderr);
  t.regex(race.stdout, /no violation/);
  t.regex(race.stdout, /rerun \(same inputs[^)]*\): hvemu race savic-requested-irr/);
  t.regex(race.stderr, /hvemu: could not write --trace \S+race\.json: EFBIG/);
  t.notRegex(race.stderr, NO_STACK);
  t.notRegex(race.stderr, /internal error/);
  const run = await hvemu(['run', '--sends', '200', '--seed', '4', '--trace-out', runFile, '--json'], { fileSizeBlocks: 2 });
  t.is(run.code, 0, run.stderr);
  const j = JSON.parse(run.stdout) as { ok: boolean; events: { emitted: number; written: number | null; error: string | null; file: string } };
  t.true(j.ok);
  t.is(j.events.written, null);
  t.regex(j.events.error ?? '', /EFBIG/);
  t.regex(run.stderr, /hvemu: could not write --trace-out \S+events\.msgpack: EFBIG/);
  t.notRegex(run.stderr, NO_STACK);
  t.is(readFileSync(raceFile, 'utf8'), 'old race', 'the target is the old file, never a partial new one');
  t.is(readFileSync(runFile, 'utf8'), 'old run', 'the target is the old file, never a partial new one');
  holdsExactly(t, dir, ['race.json', 'events.msgpack']);
});

test('run --trace-out whose directory is removed during the run: the result, then the error, exit 0', async (t) => {
  const dir = scratch();
  const file = join(dir, 'events.msgpack');
  // The directory goes before Ctrl-C, so it is gone when the run ends, however fast the host.
  const r = await hvemu(['run', '--seconds', '60', '--trace-out', file, '--json'], {
    whenRunning: (child) => {
      rmSync(dir, { recursive: true, force: true });
      child.kill('SIGINT');
    },
  });
  t.is(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout) as { interrupted: boolean; totals: { lost: number }; events: { written: number | null; error: string | null } };
  t.true(j.interrupted);
  t.is(j.totals.lost, 0);
  t.is(j.events.written, null);
  t.regex(j.events.error ?? '', /ENOENT/);
  t.regex(r.stderr, /hvemu: could not write --trace-out \S+events\.msgpack: ENOENT/);
  t.notRegex(r.stderr, NO_STACK);
  t.false(existsSync(dir));
});

test('race --trace whose directory is removed during the run: the result, then the error, exit 0', async (t) => {
  const dir = scratch();
  const file = join(dir, 'race.json');
  const r = await hvemu(['race', 'savic-requested-irr', '--variant', 'fixed', '--seconds', '120', '--trace', file], {
    whenRunning: (child) => {
      rmSync(dir, { recursive: true, force: true });
      child.kill('SIGINT');
    },
  });
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /\(interrupted\)/);
  t.regex(r.stdout, /trace: NOT written to \S+race\.json: ENOENT/);
  t.regex(r.stderr, /hvemu: could not write --trace \S+race\.json: ENOENT/);
  t.notRegex(r.stderr, NO_STACK);
  t.false(existsSync(dir));
});

test('run --trace-out says what was kept and what was dropped (text and JSON)', async (t) => {
  const dir = scratch();
  const file = join(dir, 'events.msgpack');
  const text = await hvemu(['run', '--sends', '200', '--seed', '6', '--trace-out', file]);
  t.is(text.code, 0, text.stderr);
  const m = /events: ([\d,]+) recorded, ([\d,]+) dropped/.exec(text.stdout);
  t.truthy(m, text.stdout);
  const recorded = Number(m![1]!.replace(/,/g, ''));
  const dropped = Number(m![2]!.replace(/,/g, ''));
  const line = new RegExp(`wrote ${m![1]} events to \\S+events\\.msgpack \\((none dropped|${m![2]} more dropped, the file has gaps: an actor's event ring \\([\\d,]+ records\\) was full.*)\\)`);
  t.regex(text.stderr, line);
  t.is(dropped === 0, /none dropped/.test(text.stderr));
  t.is((await readEventsMsgpack(file)).length, recorded);
  holdsExactly(t, dir, ['events.msgpack']);
  const json = await hvemu(['run', '--sends', '200', '--seed', '6', '--trace-out', file, '--json']);
  t.is(json.code, 0, json.stderr);
  const j = JSON.parse(json.stdout) as { machine: { ringRecords: number }; events: { traced: boolean; emitted: number; dropped: number; ringRecords: number; file: string; written: number; error: null } };
  t.true(j.events.traced);
  t.is(j.events.written, j.events.emitted, 'every event read from the rings is in the file');
  t.is(typeof j.events.dropped, 'number');
  t.is(j.events.ringRecords, j.machine.ringRecords);
  t.true(j.events.ringRecords > 16384, 'rings sized up for a run that writes every event');
  t.is(j.events.error, null);
  const off = await hvemu(['run', '--sends', '200', '--no-trace']);
  t.is(off.code, 0, off.stderr);
  t.regex(off.stdout, /events: not recorded \(--no-trace\)/);
});

// ---- README and usage stay in step with --help.

const README = readFileSync(fileURLToPath(new URL('../../../README.md', import.meta.url)), 'utf8');

/** The `hvemu <cmd> ...` usage entries in README's code blocks (continuation lines joined). */
function readmeUsage(): Map<string, string> {
  const usage = new Map<string, string>();
  for (const block of README.matchAll(/```[a-z]*\n([\s\S]*?)```/g)) {
    let current: string | undefined;
    for (const line of block[1]!.split('\n')) {
      const m = /^hvemu (\w+)\b/.exec(line);
      if (m) {
        current = m[1]!;
        usage.set(current, (usage.get(current) ?? '') + ' ' + line);
      } else if (current && /^\s+\[/.test(line)) {
        usage.set(current, usage.get(current) + ' ' + line);
      } else {
        current = undefined;
      }
    }
  }
  return usage;
}

/** The usage the CLI prints on bad usage, per command (continuation lines joined). */
function cliUsage(stderr: string): Map<string, string> {
  const usage = new Map<string, string>();
  let current: string | undefined;
  for (const line of stderr.split('\n')) {
    const m = /^(?:usage:)?\s*hvemu (\w+)\b/.exec(line);
    if (m) {
      current = m[1]!;
      usage.set(current, (usage.get(current) ?? '') + ' ' + line);
    } else if (current && /^\s+\[/.test(line)) usage.set(current, usage.get(current) + ' ' + line);
  }
  return usage;
}

test('every flag of run, race, tour, list, campaign and merge --help is in README\'s usage lines and in the CLI\'s usage', async (t) => {
  const readme = readmeUsage();
  const printed = cliUsage((await hvemu(['no-such-command'])).stderr);
  for (const cmd of ['run', 'race', 'replay', 'tour', 'list', 'campaign', 'merge']) {
    const help = await hvemu([cmd, '--help']);
    t.is(help.code, 0, help.stderr);
    const flags = [...help.stdout.matchAll(/^\s+(?:-\w, )?(--[a-z][a-z-]*)/gm)].map((m) => m[1]!).filter((f) => f !== '--help');
    t.true(flags.length > 0, `${cmd}: no flags parsed from --help`);
    for (const flag of flags) {
      const word = new RegExp(`${flag}(?![a-z-])`);
      t.regex(readme.get(cmd) ?? '', word, `README's usage of hvemu ${cmd} lacks ${flag}`);
      t.regex(printed.get(cmd) ?? '', word, `the CLI's usage of hvemu ${cmd} lacks ${flag}`);
    }
  }
});

test('README lists every key of run --json and race --json', async (t) => {
  const keysIn = (re: RegExp): string[] => {
    const m = re.exec(README);
    return m ? m[1]!.replace(/\([^)]*\)/g, '').split(/,\s*/).map((k) => k.trim()) : [];
  };
  const runKeys = keysIn(/`(machine, seed, workload,[^`]*)`/);
  const raceKeys = keysIn(/`(scenario, variant, seed,[^`]*)`/);
  const run = await hvemu(['run', '--sends', '200', '--json']);
  t.is(run.code, 0, run.stderr);
  t.deepEqual(Object.keys(JSON.parse(run.stdout) as object), runKeys);
  const race = await hvemu(['race', 'savic-requested-irr', '--variant', 'fixed', '--iterations', '50', '--json']);
  t.is(race.code, 0, race.stderr);
  t.deepEqual(Object.keys(JSON.parse(race.stdout) as object), raceKeys);
});
