/**
 * Output files that never lose a result: every path is checked before a run starts
 * ({@link outputPathProblem}), and every file is written to a temp file in the same directory
 * and renamed over the target ({@link writeFileAtomic}), so the target is either the old file
 * or the whole new one, never a partial write.
 */
import { randomBytes } from 'node:crypto';
import { accessSync, constants, closeSync, fchmodSync, fsyncSync, openSync, realpathSync, renameSync, statSync, unlinkSync, writeFileSync, type Stats } from 'node:fs';
import { dirname, resolve, sep } from 'node:path';

/** `statSync`, or the error's code (ENOENT, ENOTDIR, EACCES, ...). */
function statOrCode(file: string): Stats | string {
  try {
    return statSync(file);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code ?? String(e);
  }
}

function accessible(file: string, mode: number): boolean {
  try {
    accessSync(file, mode);
    return true;
  } catch {
    return false;
  }
}

/**
 * Why `file` cannot be written atomically, or undefined if it can: checked before any work, so
 * a bad path never costs a run. Its directory must exist and be writable (the temp file and the
 * rename happen there); the file, if it exists, must be a writable regular file.
 */
export function outputPathProblem(file: string): string | undefined {
  if (file.length === 0) return 'empty path';
  if (file.endsWith(sep) || file.endsWith('/')) return `${file} names a directory, not a file`;
  const st = statOrCode(file);
  let dir = dirname(file);
  if (typeof st !== 'string') {
    if (st.isDirectory()) return `${file} is a directory`;
    // Replacing a device or a FIFO by a rename would be wrong (as root: /dev/null itself).
    if (!st.isFile()) return `${file} is not a regular file`;
    if (!accessible(file, constants.W_OK)) return `${file} is not writable`;
    // The temp file goes next to the real file when `file` is a symlink.
    dir = dirname(realpathSync(file));
  } else if (st !== 'ENOENT' && st !== 'ENOTDIR') {
    return `${file} cannot be checked (${st})`;
  }
  const ds = statOrCode(dir);
  if (ds === 'ENOENT') return `directory ${dir} does not exist`;
  if (ds === 'ENOTDIR') return `directory ${dir} does not exist (a component of it is not a directory)`;
  if (typeof ds === 'string') return `directory ${dir} cannot be checked (${ds})`;
  if (!ds.isDirectory()) return `${dir} is not a directory`;
  if (!accessible(dir, constants.W_OK | constants.X_OK)) return `directory ${dir} is not writable`;
  return undefined;
}

/** The file a write to `file` really replaces: the target of a symlink, else `file` itself. */
export function resolveOutputTarget(file: string): string {
  try {
    return realpathSync(file);
  } catch {
    return resolve(file);
  }
}

/** A fresh temp path next to `target`: `<target>.tmp-<pid>-<random>`. */
export function tempPathFor(target: string): string {
  return `${target}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
}

/** Temp files still open for writing; removed at process exit if nobody renamed them. */
const liveTemps = new Set<string>();
let exitHookInstalled = false;

/**
 * Track a temp file that a streaming writer fills: if the process exits before
 * {@link releaseTemp} (a crash, a forced Ctrl-C), the temp file is removed, not left behind.
 */
export function trackTemp(tmp: string): void {
  liveTemps.add(tmp);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const t of liveTemps) removeQuietly(t);
    });
  }
}

/** The temp file was renamed or removed: stop tracking it. */
export function releaseTemp(tmp: string): void {
  liveTemps.delete(tmp);
}

/** Remove a file, ignoring every error (a temp file that may or may not exist). */
export function removeQuietly(file: string): void {
  try {
    unlinkSync(file);
  } catch {
    // already gone, or its directory is
  }
}

/**
 * Write `data` to `file` atomically: a temp file in the same directory (same mode as the file it
 * replaces), fsync, rename. On any failure the temp file is removed, the target is left as it
 * was, and the error is thrown.
 */
export function writeFileAtomic(file: string, data: string | Uint8Array): void {
  const target = resolveOutputTarget(file);
  const tmp = tempPathFor(target);
  let mode: number | undefined;
  try {
    mode = statSync(target).mode & 0o7777;
  } catch {
    // a new file: default mode
  }
  let fd: number | undefined;
  try {
    fd = openSync(tmp, 'wx', 0o666);
    if (mode !== undefined) fchmodSync(fd, mode);
    writeFileSync(fd, data);
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, target);
  } catch (e) {
    if (fd !== undefined) {
      try {
        closeSync(fd);
      } catch {
        // the write error is the one to report
      }
    }
    removeQuietly(tmp);
    throw e;
  }
}
