/**
 * One machine: a race scenario drives the machine's own KVM, hardware, sync and APIC code. A
 * scenario module holds its topology, guest programs, pacing, invariant checks and variants; it
 * defines no copy of a mechanism (no kernel symbol of its own, no locked read-modify-write or
 * barrier of its own) and its buggy variants are patches on the shared code, so nothing in a
 * scenario switches on the variant.
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, tsFiles } from '../helpers/repo-files.js';

const SCENARIO_MODULES = tsFiles('src/scenarios').filter((f) => /^src\/scenarios\/[^/]+\/scenario\.ts$/.test(f));

/** Source without comments and string literals (so prose and labels do not count). */
function code(file: string): string {
  return readFileSync(join(ROOT, file), 'utf8')
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .replace(/\/\/.*$/gm, '')
    .replace(/'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*"|`(?:[^`\\]|\\.)*`/g, "''");
}

/** Access-layer operations that make a mechanism: locked RMWs, barriers, futex waits/wakes. */
const MECHANISM_OPS = /\.\s*(testAndSetBit|testAndClearBit|cmpxchg|xchg|atomicAnd|atomicOr|atomicAdd|smpMb|storeRelease|loadAcquire|notify|wait)\s*\(/g;

test('there are scenario modules to check', (t) => {
  t.true(SCENARIO_MODULES.length >= 12);
});

test('no scenario module models a kernel or hardware symbol of its own (no @kvm/@sdm/@apm in its TSDoc)', (t) => {
  const bad: string[] = [];
  for (const f of SCENARIO_MODULES) {
    readFileSync(join(ROOT, f), 'utf8')
      .split('\n')
      .forEach((line, i) => {
        if (/^\s*\*\s*@(kvm|sdm|apm)\b/.test(line)) bad.push(`${f}:${i + 1}: ${line.trim()}`);
      });
  }
  t.deepEqual(bad, []);
});

test('no scenario module performs locked read-modify-writes, barriers or futex operations itself (those are the machine’s)', (t) => {
  const bad: string[] = [];
  for (const f of SCENARIO_MODULES) for (const m of code(f).matchAll(MECHANISM_OPS)) bad.push(`${f}: ${m[1]}`);
  t.deepEqual([...new Set(bad)], []);
});

test('no scenario module switches on its variant: buggy variants are patches on the shared code', (t) => {
  const bad = SCENARIO_MODULES.filter((f) => /variant\s*\.\s*(buggy|name)\b/.test(code(f)));
  t.deepEqual(bad, []);
});

test('the checks can fail: each pattern matches the code it forbids', (t) => {
  t.regex('acc.testAndSetBit(a, 1, x)', MECHANISM_OPS);
  t.regex(' * @kvm virt/kvm/kvm_main.c kvm_vcpu_wake_up', /^\s*\*\s*@(kvm|sdm|apm)\b/);
  t.regex('if (ctx.params.variant.buggy) {', /variant\s*\.\s*(buggy|name)\b/);
});

test('README names every registered patch (the catalogue of bugs as patches)', async (t) => {
  const { allPatches } = await import('../../src/kvm/patches.js');
  await import('../../src/scenarios/index.js');
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const ids = allPatches().map((p) => p.id);
  t.true(ids.length >= 20);
  t.deepEqual(ids.filter((id) => !readme.includes('`' + id + '`')), []);
});
