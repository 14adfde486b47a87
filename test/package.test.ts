/**
 * The package as a user gets it: `npm pack` (of the build `npm test` just made), installed into a
 * fresh project from the tarball, and README's library examples run from there — `import … from
 * 'hvemu'` resolved through node_modules, the worker files found beside the installed code.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const EXAMPLES = fileURLToPath(new URL('../examples/', import.meta.url));
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

test.serial('npm pack: the tarball installs into a fresh project and README\'s examples run from it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'hvemu-pack-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // --ignore-scripts: no prepack rebuild of dist/ while other test files run from it.
  const { stdout: packed } = await run(npm, ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], { cwd: ROOT, timeout: 120_000 });
  const info = JSON.parse(packed) as { filename: string; files: { path: string }[] }[];
  const files = new Set(info[0]!.files.map((f) => f.path));
  t.true(files.has('LICENSE'), 'LICENSE is in the tarball');
  t.true(files.has('dist/src/index.js') && files.has('dist/workers/scenario-worker.js'), 'the compiled library and its workers');
  // Source maps point at ../../src/*.ts: those sources are shipped.
  const maps = [...files].filter((f) => f.endsWith('.js.map'));
  t.true(maps.length > 0);
  for (const m of maps) t.true(files.has(m.replace(/^dist\//, '').replace(/\.js\.map$/, '.ts')), `${m} points at a shipped source`);
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true, type: 'module' }));
  await run(npm, ['install', '--prefer-offline', '--no-audit', '--no-fund', join(dir, info[0]!.filename)], { cwd: dir, timeout: 180_000 });
  for (const ex of readdirSync(EXAMPLES).filter((f) => f.endsWith('.js'))) copyFileSync(join(EXAMPLES, ex), join(dir, ex));
  const storm = await run(process.execPath, [join(dir, '01-ipi-storm.js')], { cwd: dir, timeout: 120_000 });
  t.regex(storm.stdout, /every interrupt accounted for/);
  const ctl = await run(process.execPath, [join(dir, '02-controlled-race.js')], { cwd: dir, timeout: 120_000 });
  t.regex(ctl.stdout, /replayed: same round, invariant and trace digest/);
  // A scenario of the user's own (README's example), loaded by the worker threads from the
  // consumer's module: the buggy patch breaks the invariant, the fixed code holds.
  const own = await run(process.execPath, [join(dir, '03-own-scenario.js')], { cwd: dir, timeout: 180_000 });
  t.regex(own.stdout, /^buggy: apicSlotStaysDeleted broken/m);
  t.regex(own.stdout, /^fixed: held over 40 schedules/m);
});
