/**
 * `hvemu campaign` and `hvemu merge` as a user runs them: bad input is exit 2 naming the flag
 * before any work; shards run by separate processes merge to the unsharded document; JUnit XML
 * validates; a failed write after the run costs neither the result nor the exit code.
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CampaignDoc } from '../../src/scenarios/campaign.js';
import { parseJunit } from './junit-xml.js';

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const NO_STACK = /\n\s+at /;

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run the built CLI (optionally as another user, or with a file-size limit in 512-byte blocks). */
function hvemu(args: string[], opts: { uid?: number; fileSizeBlocks?: number } = {}): Promise<Ran> {
  return new Promise((resolve) => {
    const ids = opts.uid === undefined ? {} : { uid: opts.uid, gid: opts.uid };
    const child =
      opts.fileSizeBlocks === undefined
        ? spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...ids })
        : spawn('/bin/sh', ['-c', `trap '' XFSZ; ulimit -f ${opts.fileSizeBlocks}; exec "$0" "$@"`, process.execPath, CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...ids });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** A scratch directory anyone may write (the permission cases run as nobody under root). */
function scratch(): string {
  const dir = mkdtempSync(join(tmpdir(), 'hvemu-campaign-'));
  chmodSync(dir, 0o777);
  return dir;
}

const asRoot = process.getuid?.() === 0;
const permissionUser = asRoot ? { uid: 65534 } : {};

/** The tiny campaign of these tests: one scenario × (buggy, fixed) × seeds 1..2 = 4 cells. */
const TINY = ['campaign', '--scenarios', 'pi-sb-notification', '--seeds', '1..2', '--schedules', '2', '--buggy-schedules', '100'];

const timeless = (d: CampaignDoc) => ({ ...d, cells: d.cells.map(({ elapsedMs: _t, ...c }) => c) });

const BAD: { args: string[]; flag: string; why: RegExp; asUser?: boolean; make?: (dir: string) => void }[] = [
  { args: ['--shard', '0/2'], flag: '--shard', why: /I must be in 1\.\.2/ },
  { args: ['--shard', '3/2'], flag: '--shard', why: /I must be in 1\.\.2/ },
  { args: ['--shard', 'x/y'], flag: '--shard', why: /"x\/y" is not I\/N/ },
  { args: ['--seeds', '5..2'], flag: '--seeds', why: /is empty/ },
  { args: ['--seeds', 'one..two'], flag: '--seeds', why: /is not a range A\.\.B/ },
  { args: ['--scenarios', 'pi-sb-notification,no-such-race'], flag: '--scenarios', why: /unknown scenario "no-such-race"/ },
  { args: ['--variants', 'sideways'], flag: '--variants', why: /"sideways" is not a variant/ },
  { args: ['--schedules', 'lots'], flag: '--schedules', why: /is not an integer/ },
  { args: ['--mode', 'free'], flag: '--schedules', why: /--schedules: needs --mode controlled/ },
  { args: ['--junit', '/nonexistent/dir/junit.xml'], flag: '--junit', why: /directory \/nonexistent\/dir does not exist/ },
  { args: ['--junit', 'DIR'], flag: '--junit', why: /is a directory/ },
  { args: ['--out', 'DIR/ro/part.json'], flag: '--out', why: /ro is not writable/, asUser: true, make: (d) => (mkdirSync(join(d, 'ro')), chmodSync(join(d, 'ro'), 0o555)) },
  { args: ['--out', 'DIR/same.xml', '--junit', 'DIR/same.xml'], flag: '--junit', why: /is also the --out file/ },
];

// Serial: one CLI process at a time is kinder to a busy 2-core host than a dozen at once.
for (const c of BAD) {
  test.serial(`campaign ${c.args.join(' ')}: exit 2 before any work, naming ${c.flag}, no stack trace`, async (t) => {
    const dir = scratch();
    c.make?.(dir);
    const before = readdirSync(dir).sort();
    const base = c.args.some((a) => a === '--seeds') ? TINY.filter((_, i) => i !== 3 && i !== 4) : TINY;
    const r = await hvemu([...base, ...c.args.map((a) => a.replace('DIR', dir))], c.asUser ? permissionUser : {});
    t.is(r.code, 2, r.stderr);
    t.regex(r.stderr, new RegExp(`^hvemu: invalid ${c.flag}: `, 'm'));
    t.regex(r.stderr, c.why);
    t.regex(r.stderr, /usage: hvemu/);
    t.notRegex(r.stderr, NO_STACK);
    t.notRegex(r.stderr, /: running \(Ctrl-C/, 'nothing ran');
    t.is(r.stdout, '');
    t.deepEqual(readdirSync(dir).sort(), before, 'no file, no temp file');
  });
}

test.serial('campaign without --seeds: exit 2 naming --seeds', async (t) => {
  const r = await hvemu(['campaign', '--scenarios', 'pi-sb-notification']);
  t.is(r.code, 2);
  t.regex(r.stderr, /--seeds/);
  t.notRegex(r.stderr, NO_STACK);
});

test.serial('shards run by separate processes merge to the unsharded document; --junit validates; merge checks its parts', async (t) => {
  const dir = scratch();
  const whole = await hvemu([...TINY, '--json', '--junit', join(dir, 'whole.xml')]);
  t.is(whole.code, 0, whole.stderr);
  const w = JSON.parse(whole.stdout) as CampaignDoc;
  t.is(w.cells.length, 4);
  t.true(w.ok);
  const s1 = await hvemu([...TINY, '--shard', '1/2', '--out', join(dir, 'part-1.json')]);
  t.is(s1.code, 0, s1.stderr);
  t.regex(s1.stdout, /shard 1\/2 of 4 cells: combine the parts/);
  const s2 = await hvemu([...TINY, '--shard', '2/2', '--json']);
  t.is(s2.code, 0, s2.stderr);
  writeFileSync(join(dir, 'part-2.json'), s2.stdout);
  const m = await hvemu(['merge', join(dir, 'part-2.json'), join(dir, 'part-1.json'), '--json', '--junit', join(dir, 'merged.xml')]);
  t.is(m.code, 0, m.stderr);
  const merged = JSON.parse(m.stdout) as CampaignDoc;
  t.deepEqual(timeless(merged), timeless(w));
  t.is(merged.outcomeDigest, w.outcomeDigest);
  // The JUnit of the merge and of the unsharded run: the same testcases and counts.
  const jm = parseJunit(t, readFileSync(join(dir, 'merged.xml'), 'utf8'));
  const jw = parseJunit(t, readFileSync(join(dir, 'whole.xml'), 'utf8'));
  t.is(jm.tests, 4);
  t.is(jm.failures, 0);
  t.is(jm.errors, 0);
  t.deepEqual(jm.suites.map((s) => s.cases.map((c) => [c.classname, c.name])), [[['pi-sb-notification', 'buggy seed 1'], ['pi-sb-notification', 'buggy seed 2'], ['pi-sb-notification', 'fixed seed 1'], ['pi-sb-notification', 'fixed seed 2']]]);
  t.deepEqual(jm.suites.map((s) => s.cases.map((c) => c.systemOut)), jw.suites.map((s) => s.cases.map((c) => c.systemOut)));
  t.deepEqual(readdirSync(dir).sort(), ['merged.xml', 'part-1.json', 'part-2.json', 'whole.xml'], 'no temp file left');
  // A part of another campaign, a missing shard, a file that is not there: exit 2 naming the file.
  const other = await hvemu([...TINY.map((a) => (a === '1..2' ? '1..3' : a)), '--shard', '2/2', '--out', join(dir, 'other.json')]);
  t.is(other.code, 0, other.stderr);
  for (const [files, why] of [
    [['part-1.json', 'other.json'], /other\.json is from another campaign: --seeds \{"from":1,"to":3\} there, \{"from":1,"to":2\} in \S*part-1\.json/],
    [['part-1.json'], /shard 2\/2 missing/],
    [['part-1.json', 'nope.json'], /nope\.json cannot be read \(ENOENT\)/],
  ] as const) {
    const r = await hvemu(['merge', ...files.map((f) => join(dir, f))]);
    t.is(r.code, 2, r.stderr);
    t.regex(r.stderr, /^hvemu: invalid PART: /m);
    t.regex(r.stderr, why);
    t.notRegex(r.stderr, NO_STACK);
    t.is(r.stdout, '');
  }
});

test.serial('a write that fails after the campaign: the result first, then the error, the campaign\'s exit code, no temp file', async (t) => {
  const dir = scratch();
  const junit = join(dir, 'junit.xml');
  writeFileSync(junit, 'old');
  // The JUnit file is far larger than one 512-byte block: its write fails with EFBIG.
  const r = await hvemu([...TINY, '--junit', junit], { fileSizeBlocks: 1 });
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /4 cells: 4 as expected, 0 unexpected/);
  t.regex(r.stderr, /hvemu: could not write --junit \S+junit\.xml: EFBIG/);
  t.notRegex(r.stderr, NO_STACK);
  t.is(readFileSync(junit, 'utf8'), 'old', 'the old file, never a partial new one');
  t.deepEqual(readdirSync(dir), ['junit.xml']);
});

test.serial('--dry-run: the flags are checked, the cells of the shard listed, nothing runs', async (t) => {
  const r = await hvemu([...TINY, '--shard', '2/3', '--dry-run', '--json', '--out', '/nonexistent/part.json']);
  t.is(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout) as { dryRun: boolean; matrixCells: number; shard: { index: number; count: number }; cells: { scenario: string; variant: string; seed: number }[] };
  t.true(j.dryRun);
  t.is(j.matrixCells, 4);
  t.deepEqual(j.cells, [{ scenario: 'pi-sb-notification', variant: 'buggy', seed: 2 }]);
  t.notRegex(r.stderr, /: running \(Ctrl-C/);
  const bad = await hvemu([...TINY, '--shard', '4/3', '--dry-run']);
  t.is(bad.code, 2);
  t.regex(bad.stderr, /invalid --shard/);
});
