/**
 * Every example in examples/ runs to completion (as README shows them), in a child process.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const dir = fileURLToPath(new URL('../examples/', import.meta.url));
const examples = readdirSync(dir).filter((f) => f.endsWith('.js'));

test('there are examples', (t) => {
  t.true(examples.length > 0);
});

for (const f of examples) {
  test.serial(`example ${f} runs and reports every interrupt accounted for`, async (t) => {
    const { stdout } = await run(process.execPath, [dir + f], { timeout: 60_000 });
    t.regex(stdout, /lost 0/);
    t.regex(stdout, /every interrupt accounted for/);
  });
}
