/**
 * Keeps the architecture honest: who may import whom, and that only the access layer touches
 * Atomics or raw views of machine memory (the controlled runtime of a later issue depends on it).
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { ROOT, tsFiles as files } from '../helpers/repo-files.js';

/**
 * The layer of a src file: its first directory under src/, or the file itself. KVM's vendor
 * parts (src/kvm/vmx/, src/kvm/svm/ and the registry src/kvm/vendors.ts) are a layer of their
 * own above the hardware models (src/hw/), which sit above generic KVM (src/kvm/*.ts): the CPU
 * and firmware see KVM only through the kvm_x86_ops seam and the request/mode words, while
 * vmx.ko / kvm-amd.ko call into the hardware (VMLAUNCH, VMRUN, SEAMCALL, doorbell writes).
 */
function layer(file: string): string {
  const parts = relative('src', file).split('/');
  if (parts[0] === 'kvm' && (parts.length > 2 || parts[1] === 'vendors.ts')) return 'kvm-vendor';
  return parts.length > 1 ? parts[0]! : parts[0]!.replace(/\.ts$/, '');
}

/** Who may import whom (lower layers never import higher ones). */
export const ALLOWED: Record<string, string[]> = {
  util: [],
  errors: [],
  mem: ['util', 'errors'],
  sync: ['mem', 'util', 'errors'],
  apic: ['mem', 'util', 'errors'],
  trace: ['mem', 'util', 'errors'],
  host: ['mem', 'sync', 'trace', 'util', 'errors'],
  kvm: ['mem', 'sync', 'apic', 'trace', 'host', 'util', 'errors'],
  guest: ['kvm', 'util'],
  hw: ['mem', 'sync', 'apic', 'kvm', 'trace', 'host', 'util', 'errors'],
  'kvm-vendor': ['mem', 'sync', 'apic', 'kvm', 'hw', 'trace', 'host', 'util', 'errors'],
  actors: ['mem', 'sync', 'kvm', 'trace', 'host', 'util', 'errors'],
  invariants: ['mem', 'apic', 'kvm', 'trace', 'host', 'errors'],
  runtime: ['mem', 'sync', 'apic', 'kvm', 'trace', 'host', 'guest', 'hw', 'kvm-vendor', 'actors', 'invariants', 'util', 'errors'],
  scenarios: ['mem', 'sync', 'apic', 'kvm', 'trace', 'host', 'invariants', 'runtime', 'hw', 'kvm-vendor', 'util', 'errors'],
  cli: ['runtime', 'scenarios', 'guest', 'kvm', 'host', 'trace', 'invariants', 'errors'],
  index: ['*'],
  'fast-check': ['scenarios', 'runtime', 'errors'],
};

function imports(file: string): string[] {
  const src = readFileSync(join(ROOT, file), 'utf8');
  return [...src.matchAll(/^\s*(?:import|export)\b[^'"]*?from\s+'([^']+)'/gm)].map((m) => m[1]!);
}

const SRC = files('src');

/** Source text without comments. */
function code(file: string): string {
  return readFileSync(join(ROOT, file), 'utf8')
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .replace(/\/\/.*$/gm, '');
}

test('every src layer imports only the layers below it', (t) => {
  const bad: string[] = [];
  for (const f of SRC) {
    const from = layer(f);
    const allowed = ALLOWED[from];
    if (!allowed) {
      bad.push(`${f}: layer "${from}" is not in the layering table`);
      continue;
    }
    for (const spec of imports(f)) {
      if (!spec.startsWith('.')) continue;
      const target = layer(relative(ROOT, join(ROOT, f, '..', spec)).replace(/\.js$/, '.ts'));
      if (target === from || allowed.includes('*') || allowed.includes(target)) continue;
      bad.push(`${f} imports ${spec} (layer ${from} may not import ${target})`);
    }
  }
  t.deepEqual(bad, []);
});

test('only the access layer (src/mem/access.ts, its controlled half src/mem/controlled.ts, src/mem/ring.ts) touches Atomics', (t) => {
  const bad = [...SRC, ...files('workers')].filter((f) => !['src/mem/access.ts', 'src/mem/controlled.ts', 'src/mem/ring.ts'].includes(f) && /\bAtomics\./.test(code(f)));
  t.deepEqual(bad, []);
});

test('only src/mem builds typed views of a SharedArrayBuffer', (t) => {
  const bad = SRC.filter((f) => !f.startsWith('src/mem/') && /new\s+(?:Big)?(?:Int|Uint|Float)\w*Array\(\s*[\w.]*sab\b/.test(readFileSync(join(ROOT, f), 'utf8')));
  t.deepEqual(bad, []);
});

test('only src/runtime and workers/ use node:worker_threads; workers/ import only src/runtime or src/scenarios', (t) => {
  const bad: string[] = [];
  for (const f of SRC) if (!f.startsWith('src/runtime/') && imports(f).includes('node:worker_threads')) bad.push(f);
  for (const f of files('workers')) for (const spec of imports(f)) if (spec.startsWith('.') && !/^\.\.\/src\/(runtime|scenarios)\//.test(spec)) bad.push(`${f} imports ${spec}`);
  t.deepEqual(bad, []);
});

test('the layering check can fail (it sees a forbidden import)', (t) => {
  t.false(ALLOWED.mem!.includes('kvm'));
  t.true(imports('src/kvm/x86.ts').some((s) => s.includes('../apic/')));
});
