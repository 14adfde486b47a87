/**
 * The campaign examples (examples/k8s/indexed-job.yaml, examples/ci/github-actions-matrix.yml)
 * parse as YAML, and the hvemu commands in them are ones the CLI accepts: each campaign command
 * runs with --dry-run (every flag checked, nothing run) for every index of the Job or the
 * matrix, and the shards it names are disjoint and cover the matrix; the merge command passes the
 * CLI's argument parser.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { buildProgram } from '../../src/cli/main.js';
import { ROOT } from '../helpers/repo-files.js';

const run = promisify(execFile);
const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

/** Every document of a YAML file (a syntax error fails the test). */
function yamlDocs(file: string): Record<string, unknown>[] {
  const docs = parseAllDocuments(readFileSync(join(ROOT, file), 'utf8'));
  const out: Record<string, unknown>[] = [];
  for (const d of Array.isArray(docs) ? docs : [docs]) {
    if (d.errors.length > 0) throw new Error(`${file}: ${d.errors.map((e) => e.message).join('; ')}`);
    out.push(d.toJS() as Record<string, unknown>);
  }
  return out;
}

interface DryRun {
  dryRun: boolean;
  matrixCells: number;
  shard: { index: number; count: number } | null;
  cells: { scenario: string; variant: string; seed: number }[];
}

/**
 * Run a shell script in which command `fn` is the built CLI with --dry-run --json appended (a
 * shell function; `shift` drops the script path of `node dist/src/cli/main.js …`).
 */
async function dryRun(script: string, fn: 'hvemu' | 'node', env: Record<string, string>): Promise<DryRun> {
  // A dry run exits 0 or 2; any other status is moved out of the way of the scripts' own `exit 1 is a finding` handling.
  const shim = `${fn}() { ${fn === 'node' ? 'shift; ' : ''}"${process.execPath}" "${CLI}" "$@" --dry-run --json || return $((100 + $?)); }\n`;
  const { stdout, stderr } = await run('/bin/sh', ['-c', shim + script], { cwd: ROOT, env: { ...process.env, ...env }, maxBuffer: 64 << 20 });
  try {
    return JSON.parse(stdout) as DryRun;
  } catch {
    throw new Error(`the dry run printed no JSON; stderr:\n${stderr}`);
  }
}

/** The shards' cells are disjoint and together the whole matrix. */
function coversMatrix(t: import('ava').ExecutionContext, parts: DryRun[], n: number): void {
  t.is(parts.length, n);
  t.deepEqual(parts.map((p) => p.shard?.index).sort((a, b) => (a ?? 0) - (b ?? 0)), Array.from({ length: n }, (_, i) => i + 1));
  t.true(parts.every((p) => p.dryRun && p.shard?.count === n));
  const ids = parts.flatMap((p) => p.cells.map((c) => `${c.scenario}/${c.variant}#${c.seed}`));
  t.is(new Set(ids).size, ids.length, 'disjoint');
  t.is(ids.length, parts[0]!.matrixCells, 'together the whole matrix');
}

test.serial('examples/k8s/indexed-job.yaml: an Indexed Job whose pods run shards 1..N of one campaign', async (t) => {
  const docs = yamlDocs('examples/k8s/indexed-job.yaml');
  const job = docs.find((d) => d.kind === 'Job') as { apiVersion: string; spec: { completionMode: string; completions: number; parallelism: number; template: { spec: { restartPolicy: string; containers: { name: string; command: string[]; args: string[]; volumeMounts: { name: string; mountPath: string }[] }[]; volumes: { name: string; persistentVolumeClaim?: { claimName: string } }[] } } } };
  t.truthy(job);
  t.is(job.apiVersion, 'batch/v1');
  t.is(job.spec.completionMode, 'Indexed');
  const n = job.spec.completions;
  t.true(Number.isInteger(n) && n > 1);
  t.is(job.spec.template.spec.restartPolicy, 'Never');
  const c = job.spec.template.spec.containers[0]!;
  t.deepEqual(c.command, ['/bin/sh', '-c']);
  const script = c.args[0]!;
  t.regex(script, /^hvemu campaign /);
  t.true(script.includes(`--shard $((JOB_COMPLETION_INDEX+1))/${n}`), `the script shards by the completion index into ${n}`);
  // The volume the parts go to is mounted and claimed by the PVC of the same file.
  const pvc = docs.find((d) => d.kind === 'PersistentVolumeClaim') as { metadata: { name: string } };
  const vol = job.spec.template.spec.volumes.find((v) => v.name === c.volumeMounts[0]!.name);
  t.is(vol?.persistentVolumeClaim?.claimName, pvc.metadata.name);
  t.true(script.includes(`--out ${c.volumeMounts[0]!.mountPath}/`));
  const parts: DryRun[] = [];
  for (let i = 0; i < n; i++) parts.push(await dryRun(script, 'hvemu', { JOB_COMPLETION_INDEX: String(i) }));
  coversMatrix(t, parts, n);
});

test.serial('examples/ci/github-actions-matrix.yml: a matrix job per shard, then a merge job', async (t) => {
  const [wf] = yamlDocs('examples/ci/github-actions-matrix.yml') as { jobs: Record<string, { needs?: string; strategy?: { matrix: { shard: number[] } }; steps: { run?: string }[] }> }[];
  const shardJob = wf!.jobs.shard!;
  const shards = shardJob.strategy!.matrix.shard;
  const n = shards.length;
  t.deepEqual(shards, Array.from({ length: n }, (_, i) => i + 1));
  const campaign = shardJob.steps.map((s) => s.run ?? '').find((r) => r.includes(' campaign '))!;
  t.regex(campaign, /^node dist\/src\/cli\/main\.js campaign /);
  t.true(campaign.includes(`--shard \${{ matrix.shard }}/${n}`));
  const parts: DryRun[] = [];
  for (const s of shards) parts.push(await dryRun(campaign.replaceAll('${{ matrix.shard }}', String(s)), 'node', {}));
  coversMatrix(t, parts, n);
  // The merge job takes every part.
  t.is(wf!.jobs.merge!.needs, 'shard');
  const merge = wf!.jobs.merge!.steps.map((s) => s.run ?? '').find((r) => r.includes(' merge '))!;
  const argv = merge.trim().split(/\s+/);
  t.deepEqual(argv.slice(0, 3), ['node', 'dist/src/cli/main.js', 'merge']);
  const cmd = buildProgram().commands.find((c) => c.name() === 'merge')!;
  const parsed = cmd.parseOptions(argv.slice(3));
  t.deepEqual(parsed.unknown, [], 'every flag of the merge step is one hvemu merge knows');
  t.deepEqual(parsed.operands.filter((o) => o.endsWith('.json')), shards.map((s) => `part-${s}.json`));
});
