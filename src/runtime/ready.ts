/**
 * The start-up handshake's wait, seen from the main thread: every actor bumps the VM's ready
 * count once it has attached to machine memory; the run starts when all have. On a busy host
 * (other jobs on every core) spawning and warming worker threads can take many seconds, so the
 * wait has no total deadline: it gives up only when no further actor became ready for
 * `stallMs` — a hang, not a slow machine. @emulator
 */

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** What {@link waitUntilReady} found. */
export interface ReadyOutcome {
  /** Actors that reported ready. */
  ready: number;
  /** Every actor reported ready. */
  all: boolean;
}

/**
 * Poll `readyCount()` until it reaches `total`, `stop()` says to give up (an actor already
 * settled), or no progress was seen for `stallMs`.
 */
export async function waitUntilReady(readyCount: () => number, total: number, stop: () => boolean, stallMs: number): Promise<ReadyOutcome> {
  let seen = readyCount();
  let stallBy = performance.now() + stallMs;
  while (seen < total && !stop()) {
    await sleep(2);
    const now = readyCount();
    if (now > seen) {
      seen = now;
      stallBy = performance.now() + stallMs;
    } else if (performance.now() > stallBy) break;
  }
  return { ready: seen, all: seen >= total };
}

/** Default stall limit of the handshake (ms): far above any start-up on a loaded 2-core host. */
export const READY_STALL_MS = 60_000;
