import test from 'ava';
import { spinIsLocked, spinLock, spinOwner, spinTryLock, spinUnlock } from '../../src/sync/index.js';
import { EmuError } from '../../src/errors.js';
import { expectOk, runWorkers } from '../helpers/run-workers.js';
import { testMachine } from '../helpers/machine.js';
import { S } from '../helpers/sync-protocol.js';

const N = 4;
const K = 20_000;

test('spin_trylock / spin_is_locked / owner / unlock on one thread', (t) => {
  const { main, sc, mem } = testMachine();
  const lock = sc(S.LOCK);
  t.false(spinIsLocked(main, lock));
  t.true(spinTryLock(main, lock));
  t.true(spinIsLocked(main, lock));
  t.is(spinOwner(main, lock), mem.layout.mainActor);
  t.false(spinTryLock(main, lock));
  spinUnlock(main, lock);
  t.false(spinIsLocked(main, lock));
  t.is(spinOwner(main, lock), -1);
});

test('recursive spin_lock is reported at once, unlock by a non-owner is an error', (t) => {
  const { main, sc } = testMachine();
  const lock = sc(S.LOCK);
  spinLock(main, lock, 'lock:test');
  const e = t.throws(() => spinLock(main, lock, 'lock:test'), { instanceOf: EmuError });
  t.is(e?.code, 'EMU_ERR_DEADLINE');
  t.regex(e?.message ?? '', /recursive locking of spinlock lock:test/);
  spinUnlock(main, lock, 'lock:test');
  const e2 = t.throws(() => spinUnlock(main, lock, 'lock:test'), { instanceOf: EmuError });
  t.is(e2?.code, 'EMU_ERR_INTERNAL');
});

test.serial(`spinlock: ${N} workers x ${K} non-atomic increments under the lock are exact`, async (t) => {
  const { mem, main, sc } = testMachine();
  const out = expectOk(await runWorkers(mem, Array.from({ length: N }, (_, actor) => ({ actor, op: 'spin-inc' as const, iterations: K }))));
  t.is(out.length, N);
  t.is(main.peek(sc(S.COUNTER)), N * K);
  t.false(spinIsLocked(main, sc(S.LOCK)));
});

