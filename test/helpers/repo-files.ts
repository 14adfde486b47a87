/**
 * Repository files for the repo tests (run from dist/test/repo, so the root is three levels up).
 */
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Absolute path of the repository root. */
export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** Every .ts file below `dir` (relative to the root), as root-relative paths. */
export function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const f of readdirSync(join(ROOT, dir))) {
    const p = join(dir, f);
    if (statSync(join(ROOT, p)).isDirectory()) out.push(...tsFiles(p));
    else if (f.endsWith('.ts')) out.push(p);
  }
  return out;
}
