/**
 * bench/README.md is written by two benchmarks: `npm run bench` (IPI path) and
 * `npm run bench:races` (race catalogue). Each owns one marked section, so neither erases the
 * other's figures.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';

const open = (name: string) => `<!-- section:${name} -->`;
const close = (name: string) => `<!-- /section:${name} -->`;

/** Replace (or append) section `name` of the file at `path` with `body`. */
export function writeSection(path: string, name: string, body: string): void {
  const text = existsSync(path) ? readFileSync(path, 'utf8') : '';
  const block = `${open(name)}\n${body.trimEnd()}\n${close(name)}\n`;
  const a = text.indexOf(open(name));
  const b = text.indexOf(close(name));
  let out: string;
  if (a >= 0 && b > a) out = text.slice(0, a) + block + text.slice(b + close(name).length + 1);
  else out = (text.trimEnd() ? text.trimEnd() + '\n\n' : '') + block;
  writeFileSync(path, out);
}
