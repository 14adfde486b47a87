/**
 * Documentation habits: every export carries TSDoc; modelled kernel functions name their kernel
 * symbol with @kvm; README keeps its two set-up commands and CI runs README's test command.
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, tsFiles as files } from '../helpers/repo-files.js';

const EXPORT = /^export\s+(?:async\s+)?(?:function|const|class|interface|type|abstract\s+class)\s+(\w+)/;

/** The TSDoc block right above line i, or undefined. */
function docAbove(lines: string[], i: number): string | undefined {
  let j = i - 1;
  if (j < 0 || !lines[j]!.trim().endsWith('*/')) return undefined;
  const end = j;
  while (j >= 0 && !lines[j]!.trim().startsWith('/**')) j--;
  return j < 0 ? undefined : lines.slice(j, end + 1).join('\n');
}

test('every exported declaration in src/ has a TSDoc comment', (t) => {
  const missing: string[] = [];
  for (const f of files('src')) {
    const lines = readFileSync(join(ROOT, f), 'utf8').split('\n');
    lines.forEach((line, i) => {
      const m = EXPORT.exec(line);
      if (m && !docAbove(lines, i)) missing.push(`${f}:${i + 1} ${m[1]}`);
    });
  }
  t.deepEqual(missing, []);
});

test('exported functions of apic/, kvm/ and hw/ name what they model (@kvm, @sdm, @apm) or say they are @emulator-only', (t) => {
  const missing: string[] = [];
  for (const f of files('src').filter((f) => /^src\/(apic|kvm|hw)\//.test(f))) {
    const lines = readFileSync(join(ROOT, f), 'utf8').split('\n');
    lines.forEach((line, i) => {
      const m = /^export function (\w+)/.exec(line);
      if (m && !/@(kvm|sdm|apm|emulator)\b/.test(docAbove(lines, i) ?? '')) missing.push(`${f}:${i + 1} ${m[1]}`);
    });
  }
  t.deepEqual(missing, []);
});

test('README gives the two set-up commands and CI runs exactly npm ci + npm test', (t) => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  t.regex(readme, /npm ci && npm start/);
  t.regex(readme, /npm ci && npm test/);
  const ci = readFileSync(join(ROOT, '.ci/run'), 'utf8');
  t.regex(ci, /^npm ci$/m);
  t.regex(ci, /^npm test$/m);
});

test('no TODO, FIXME or stub markers in shipped code', (t) => {
  const bad = [...files('src'), ...files('workers')].filter((f) => /\b(TODO|FIXME|XXX)\b|not implemented/.test(readFileSync(join(ROOT, f), 'utf8')));
  t.deepEqual(bad, []);
});
