/**
 * Raw baseline worker: bare Atomics on a SharedArrayBuffer, no emulator. The bench is outside
 * the access-layer rule, so this file uses `Atomics` directly.
 *
 * A worker is persistent: it serves one task per message and answers `{ done: index }`.
 * Task protocol (word offsets in {@link RAW}):
 *   1. increment READY, then sleep on START until it turns non-zero (or STOP does);
 *   2. run the loop until STOP turns non-zero, publishing its counters on its own 64-byte line;
 *   3. post `{ done }`.
 */
import { parentPort } from 'node:worker_threads';
import { RAW, type RawTask } from './raw-protocol.js';

if (!parentPort) throw new Error('raw-worker.js must run as a worker thread');
const port = parentPort;

port.on('message', (task: RawTask) => {
  const m = new Int32Array(task.sab);
  Atomics.add(m, RAW.READY, 1);
  while (Atomics.load(m, RAW.START) === 0 && Atomics.load(m, RAW.STOP) === 0) Atomics.wait(m, RAW.START, 0, 100);
  if (task.kind === 'pingpong') pingPong(m, task.index);
  else channel(m, task.index, task.n, task.seed);
  port.postMessage({ done: task.index });
});

/**
 * Spin ping-pong on one word: the pinger (index 0) writes odd values and waits for the next
 * even one; the ponger (index 1) answers each odd value with the next even value.
 */
function pingPong(m: Int32Array, index: number): void {
  const cnt = RAW.counters(index);
  let v = 0;
  let rt = 0;
  let spins = 0;
  if (index === 0) {
    outer: while (true) {
      Atomics.store(m, RAW.PINGPONG, (v + 1) | 0);
      const want = (v + 2) | 0;
      while (Atomics.load(m, RAW.PINGPONG) !== want) {
        if ((++spins & 1023) === 0 && Atomics.load(m, RAW.STOP) !== 0) break outer;
      }
      v = want;
      rt++;
      m[cnt] = rt;
      if ((rt & 1023) === 0 && Atomics.load(m, RAW.STOP) !== 0) break;
    }
  } else {
    outer: while (true) {
      const want = (v + 1) | 0;
      while (Atomics.load(m, RAW.PINGPONG) !== want) {
        if ((++spins & 1023) === 0 && Atomics.load(m, RAW.STOP) !== 0) break outer;
      }
      v = (v + 2) | 0;
      Atomics.store(m, RAW.PINGPONG, v);
    }
  }
}

/**
 * Raw interrupt channel: each iteration ORs a random bit (of 32) into a random other worker's
 * inbox word, then drains its own inbox with an exchange and counts the bits as delivered.
 */
function channel(m: Int32Array, index: number, n: number, seed: number): void {
  const cnt = RAW.counters(index);
  const own = RAW.inbox(index);
  let x = (seed ^ Math.imul(index + 1, 0x9e3779b1)) | 0 || 1;
  let sent = 0;
  let delivered = 0;
  let coalesced = 0;
  const others = n - 1;
  while (true) {
    for (let k = 0; k < 256; k++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      let dest = Math.floor(((x >>> 0) * others) / 4294967296);
      if (dest >= index) dest++;
      const bit = 1 << (x & 31);
      if ((Atomics.or(m, RAW.inbox(dest), bit) & bit) !== 0) coalesced++;
      sent++;
      const got = Atomics.exchange(m, own, 0);
      if (got !== 0) delivered += popcount(got);
    }
    m[cnt + RAW.C_DELIVERED] = delivered;
    m[cnt + RAW.C_SENT] = sent;
    m[cnt + RAW.C_COALESCED] = coalesced;
    if (Atomics.load(m, RAW.STOP) !== 0) break;
  }
}

function popcount(v: number): number {
  v = v - ((v >>> 1) & 0x55555555);
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return (Math.imul((v + (v >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24) & 0xff;
}
