/**
 * Host contention probe: how much CPU other processes (and the hypervisor, as steal time) took
 * while one repetition ran. On a shared 2-core machine, one extra busy thread can put both
 * spinning baseline workers on the same core, and a spin ping-pong then waits a whole time
 * slice per round trip (thousands of times slower): such a repetition measures the neighbours,
 * not the code. Linux only (/proc/stat); elsewhere the probe reports null (never contended).
 *
 * external CPU = (host busy time - this process's CPU time) + steal time, in cores.
 */
import { readFileSync } from 'node:fs';

/** Linux USER_HZ: /proc/stat counts in 1/100 s on every mainstream architecture. */
const USER_HZ = 100;

interface HostTimes {
  busyMs: number;
  stealMs: number;
}

function hostTimes(): HostTimes | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '';
    if (!line.startsWith('cpu ')) return undefined;
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = f;
    return { busyMs: ((user + nice + system + irq + softirq) * 1000) / USER_HZ, stealMs: (steal * 1000) / USER_HZ };
  } catch {
    return undefined;
  }
}

/** What a probe measured over one repetition. */
export interface HostLoad {
  wallMs: number;
  /** CPU of this process (all threads), in cores. */
  ownCores: number;
  /** CPU of other processes plus steal, in cores; null where /proc/stat is missing. */
  externalCores: number | null;
}

/** Start a probe; call the returned function when the repetition ends. */
export function probeHostLoad(): () => HostLoad {
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  const h0 = hostTimes();
  return () => {
    const wallMs = performance.now() - t0;
    const c = process.cpuUsage(c0);
    const ownMs = (c.user + c.system) / 1000;
    const h1 = hostTimes();
    let externalCores: number | null = null;
    if (h0 && h1 && wallMs > 0) {
      const ext = Math.max(0, h1.busyMs - h0.busyMs - ownMs) + (h1.stealMs - h0.stealMs);
      externalCores = ext / wallMs;
    }
    return { wallMs, ownCores: ownMs / wallMs, externalCores };
  };
}

/**
 * Wait until other processes use at most `cores` cores over a `windowMs` window, for at most
 * `maxMs`. Returns the time waited (ms) and whether the host became quiet. Resolves at once
 * (quiet) where /proc/stat is missing.
 */
export async function waitForQuietHost(cores: number, maxMs: number, windowMs = 250): Promise<{ waitedMs: number; quiet: boolean }> {
  const t0 = performance.now();
  while (true) {
    const end = probeHostLoad();
    await new Promise((r) => setTimeout(r, windowMs));
    const l = end();
    if (l.externalCores === null || l.externalCores <= cores) return { waitedMs: performance.now() - t0, quiet: true };
    if (performance.now() - t0 >= maxMs) return { waitedMs: performance.now() - t0, quiet: false };
  }
}
