/**
 * `hvemu list` fits the terminal: with $COLUMNS (or a TTY's width) every line fits, long cells
 * wrap, narrow terminals drop the seed column; `--json` keeps every detail.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

function list(env: Record<string, string>): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [CLI, 'list'], { env: { ...process.env, ...env }, timeout: 60_000 }, (e, stdout) => (e ? reject(e) : resolve(stdout)));
  });
}

for (const columns of [60, 80, 120, 200]) {
  test(`COLUMNS=${columns}: every line of list fits`, async (t) => {
    const lines = (await list({ COLUMNS: String(columns) })).trimEnd().split('\n');
    t.true(lines.length > 12);
    const widest = Math.max(...lines.map((l) => [...l].length));
    t.true(widest <= columns, `widest line ${widest} > ${columns}`);
    t.is(/\bseed\s*│\s*$/.test(lines[1]!), columns >= 110, 'the seed column only when there is room');
  });
}
