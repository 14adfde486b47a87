/**
 * Output files: the path check that runs before any work, the atomic writer (temp file in the
 * same directory + rename) and the streaming msgpack event writer built on the same rule — the
 * target is the old file or the whole new one, and no temp file is left behind.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { outputPathProblem, writeFileAtomic } from '../../src/util/output-file.js';
import { MsgpackEventWriter, readEventsMsgpack } from '../../src/trace/msgpack.js';
import { checkOutputPath } from '../../src/trace/output-path.js';
import { EmuError } from '../../src/errors.js';
import type { HvEvent } from '../../src/trace/events.js';

const OUTPUT_FILE_JS = fileURLToPath(new URL('../../src/util/output-file.js', import.meta.url));

const scratch = () => mkdtempSync(join(tmpdir(), 'hvemu-atomic-'));
const event = (i: number): HvEvent => ({ type: 'apic:ipi-sent', actor: `vcpu${i % 4}`, a: i % 4, b: 0xec, t: i, extra: 0 });

test('outputPathProblem: a missing directory, a directory, a non-regular file, an empty path; fine for a new or existing file', (t) => {
  const dir = scratch();
  t.is(outputPathProblem(join(dir, 'nope', 'x.json')), `directory ${join(dir, 'nope')} does not exist`);
  t.is(outputPathProblem(dir), `${dir} is a directory`);
  t.is(outputPathProblem(`${dir}/`), `${dir}/ names a directory, not a file`);
  t.is(outputPathProblem('/dev/null'), '/dev/null is not a regular file');
  t.is(outputPathProblem(''), 'empty path');
  writeFileSync(join(dir, 'f'), 'x');
  t.is(outputPathProblem(join(dir, 'f', 'x.json')), `${join(dir, 'f')} is not a directory`);
  t.is(outputPathProblem(join(dir, 'new.json')), undefined);
  t.is(outputPathProblem(join(dir, 'f')), undefined);
});

test('checkOutputPath throws EMU_ERR_BAD_PARAM naming the flag', (t) => {
  const e = t.throws(() => checkOutputPath('--trace', '/nonexistent-hvemu/dir/x.json'));
  t.true(e instanceof EmuError);
  t.is((e as EmuError).code, 'EMU_ERR_BAD_PARAM');
  t.is(e?.message, 'invalid --trace: directory /nonexistent-hvemu/dir does not exist');
});

test('writeFileAtomic writes the whole file, keeps the mode of the file it replaces, follows a symlink, leaves no temp file', (t) => {
  const dir = scratch();
  const file = join(dir, 'out.json');
  writeFileAtomic(file, 'first');
  t.is(readFileSync(file, 'utf8'), 'first');
  chmodSync(file, 0o640);
  writeFileAtomic(file, new TextEncoder().encode('second'));
  t.is(readFileSync(file, 'utf8'), 'second');
  t.is(statSync(file).mode & 0o777, 0o640);
  symlinkSync(file, join(dir, 'link.json'));
  writeFileAtomic(join(dir, 'link.json'), 'third');
  t.is(readFileSync(file, 'utf8'), 'third', 'the symlink target is replaced, the link stays');
  t.deepEqual(readdirSync(dir).sort(), ['link.json', 'out.json']);
});

test('writeFileAtomic: a failed rename throws, leaves the target as it was and removes the temp file', (t) => {
  const dir = scratch();
  const target = join(dir, 'busy');
  mkdirSync(target);
  writeFileSync(join(target, 'inside'), 'keep');
  t.throws(() => writeFileAtomic(target, 'new'));
  t.is(readFileSync(join(target, 'inside'), 'utf8'), 'keep');
  t.deepEqual(readdirSync(dir), ['busy'], 'no temp file left');
});

test('writeFileAtomic: a write that fails part-way (EFBIG) never leaves a partial file at the target, nor a temp file', (t) => {
  const dir = scratch();
  const file = join(dir, 'out.json');
  writeFileSync(file, 'old');
  // A child limited to 2 blocks of file size writes 1 MiB: the write fails part-way through.
  const script = `import { writeFileAtomic } from ${JSON.stringify(OUTPUT_FILE_JS)};
try { writeFileAtomic(process.argv[1], 'x'.repeat(1 << 20)); console.log('written'); } catch (e) { console.log(e.code); }`;
  const r = spawnSync('/bin/sh', ['-c', `trap '' XFSZ; ulimit -f 2; exec "$0" "$@"`, process.execPath, '--input-type=module', '-e', script, file], { encoding: 'utf8' });
  t.is(r.status, 0, r.stderr);
  t.is(r.stdout.trim(), 'EFBIG');
  t.is(readFileSync(file, 'utf8'), 'old', 'the target is the old file, not a partial new one');
  t.deepEqual(readdirSync(dir), ['out.json'], 'no temp file left');
});

test('MsgpackEventWriter: events go to a temp file that close() renames; the target never holds a partial file', async (t) => {
  const dir = scratch();
  const file = join(dir, 'events.msgpack');
  writeFileSync(file, 'old');
  const w = new MsgpackEventWriter(file, 16);
  for (let i = 0; i < 100; i++) w.write(event(i));
  // The stream opens its temp file asynchronously.
  while (!existsSync(w.tempPath)) await new Promise((r) => setImmediate(r));
  t.is(readFileSync(file, 'utf8'), 'old', 'until close() the target is untouched');
  t.deepEqual(readdirSync(dir).sort(), ['events.msgpack', w.tempPath.slice(dir.length + 1)].sort());
  t.regex(w.tempPath, /events\.msgpack\.tmp-\d+-[0-9a-f]+$/);
  t.is(await w.close(), 100);
  const back = await readEventsMsgpack(file);
  t.is(back.length, 100);
  t.deepEqual(back[42], event(42));
  t.deepEqual(readdirSync(dir), ['events.msgpack'], 'no temp file left');
});

test('MsgpackEventWriter: a failed close rejects and removes the temp file; abort() removes it too', async (t) => {
  const dir = scratch();
  const file = join(dir, 'events.msgpack');
  const w = new MsgpackEventWriter(file);
  w.write(event(1));
  // The target turns into a non-empty directory during the run: the final rename fails.
  mkdirSync(file);
  writeFileSync(join(file, 'inside'), 'keep');
  await t.throwsAsync(() => w.close());
  t.deepEqual(readdirSync(dir), ['events.msgpack'], 'no temp file left');
  t.is(readFileSync(join(file, 'inside'), 'utf8'), 'keep');
  const file2 = join(dir, 'other.msgpack');
  const w2 = new MsgpackEventWriter(file2);
  w2.write(event(2));
  w2.abort();
  t.deepEqual(readdirSync(dir), ['events.msgpack'], 'abort() leaves nothing');
  await t.throwsAsync(() => w2.close());
});

test('MsgpackEventWriter: a directory that does not exist is an error from close(), not an unhandled error event', async (t) => {
  const w = new MsgpackEventWriter(join(scratch(), 'missing', 'events.msgpack'));
  w.write(event(1));
  const e = await t.throwsAsync(() => w.close());
  t.is((e as NodeJS.ErrnoException | undefined)?.code, 'ENOENT');
});
