/**
 * The race catalogue stays consistent: registry ⇄ folders ⇄ README table ⇄ scenario READMEs.
 */
import test from 'ava';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../helpers/repo-files.js';
import { SCENARIOS } from '../../src/scenarios/index.js';

const dirs = readdirSync(join(ROOT, 'src/scenarios')).filter((d) => statSync(join(ROOT, 'src/scenarios', d)).isDirectory());

test('every scenario folder is registered and every registered scenario has a folder', (t) => {
  t.deepEqual([...dirs].sort(), SCENARIOS.map((s) => s.id).sort());
});

test('README has one catalogue row per scenario', (t) => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const rows = [...readme.matchAll(/^\| `([a-z0-9-]+)` \|/gm)].map((m) => m[1]);
  t.deepEqual([...rows].sort(), SCENARIOS.map((s) => s.id).sort());
});

test('each scenario has a README with its seed, an interleaving, the differing step and a litmus result line', (t) => {
  for (const s of SCENARIOS) {
    const p = join(ROOT, 'src/scenarios', s.id, 'README.md');
    t.true(existsSync(p), `${s.id}: README.md missing`);
    const md = readFileSync(p, 'utf8');
    t.true(md.includes(s.seedFile), `${s.id}: README does not name its seed ${s.seedFile}`);
    t.regex(md, /CPU ?0|CPU0/, `${s.id}: no CPU-column interleaving`);
    t.regex(md, /one step that differs/i, `${s.id}: no differing step`);
    t.regex(md, /Result — .*buggy.*: Sometimes .* fixed: Never/, `${s.id}: no litmus result line`);
    for (const inv of s.invariants) t.true(md.includes(inv.name), `${s.id}: README does not name invariant ${inv.name}`);
  }
});

test('variant names follow the contract (buggy, buggy-<what>, fixed, or <what> for another variant that holds) and exactly one fixed', (t) => {
  for (const s of SCENARIOS) {
    for (const v of s.variants) {
      t.regex(v.name, /^[a-z0-9]+(-[a-z0-9]+)*$/, `${s.id}: ${v.name}`);
      t.is(/^buggy(-|$)/.test(v.name), v.buggy, `${s.id}/${v.name}: a variant is called buggy exactly when it is buggy`);
    }
    t.is(s.variants.filter((v) => v.name === 'fixed').length, 1, s.id);
    for (const v of s.variants.filter((x) => x.buggy)) t.true(v.differs.length > 0, `${s.id}/${v.name}: differs is empty`);
  }
});
