/**
 * Every example in examples/ runs to completion (as README shows them), in a child process.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const dir = fileURLToPath(new URL('../examples/', import.meta.url));
const examples = readdirSync(dir).filter((f) => f.endsWith('.js'));

test('there are examples', (t) => {
  t.true(examples.length > 0);
});

/** What each example must print (an example without an entry fails the suite). */
const EXPECT: Record<string, RegExp[]> = {
  '01-ipi-storm.js': [/lost 0/, /every interrupt accounted for/],
  '02-controlled-race.js': [/piNoStrandedAtEntry in round 0/, /replay token: hv1\./, /replayed: same round, invariant and trace digest/],
  '03-own-scenario.js': [/^buggy: apicSlotStaysDeleted broken/m, /^fixed: held over 40 schedules/m],
};

test('README shows the own-scenario example verbatim, and it is under 60 lines', (t) => {
  const src = readFileSync(fileURLToPath(new URL('../../examples/03-own-scenario.ts', import.meta.url)), 'utf8');
  const readme = readFileSync(fileURLToPath(new URL('../../README.md', import.meta.url)), 'utf8');
  t.true(src.split('\n').length <= 60);
  t.true(readme.includes('```ts\n' + src + '```'), 'README.md carries examples/03-own-scenario.ts in a ts code block, unchanged');
});

for (const f of examples) {
  test.serial(`example ${f} runs and prints what README says`, async (t) => {
    const expect = EXPECT[f];
    t.truthy(expect, `${f} has no expectations in test/examples.test.ts`);
    const { stdout } = await run(process.execPath, [dir + f], { timeout: 120_000 });
    for (const re of expect ?? []) t.regex(stdout, re);
  });
}
