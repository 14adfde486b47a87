import test from 'ava';
import { MutexState, mutexIsLocked, mutexLock, mutexOwner, mutexTryLock, mutexUnlock } from '../../src/sync/index.js';
import { EmuError } from '../../src/errors.js';
import { expectOk, runWorkers } from '../helpers/run-workers.js';
import { testMachine } from '../helpers/machine.js';
import { S } from '../helpers/sync-protocol.js';

const N = 4;
const K = 20_000;

test('mutex_trylock / owner / unlock on one thread', (t) => {
  const { main, sc, mem } = testMachine();
  const m = sc(S.LOCK);
  t.true(mutexTryLock(main, m, 'm'));
  t.is(main.peek(m), MutexState.LOCKED);
  t.is(mutexOwner(main, m), mem.layout.mainActor);
  t.false(mutexTryLock(main, m, 'm'));
  t.true(mutexIsLocked(main, m, 'm'));
  mutexUnlock(main, m, 'm');
  t.is(main.peek(m), MutexState.UNLOCKED);
  t.is(mutexOwner(main, m), -1);
});

test('recursive mutex_lock is reported at once; unlock by a non-owner throws and keeps the lock', (t) => {
  const { main, sc } = testMachine();
  const m = sc(S.LOCK);
  mutexLock(main, m, 'slots_lock');
  const e = t.throws(() => mutexLock(main, m, 'slots_lock'), { instanceOf: EmuError });
  t.is(e?.code, 'EMU_ERR_DEADLINE');
  t.regex(e?.message ?? '', /recursive locking of slots_lock/);
  mutexUnlock(main, m, 'slots_lock');
  const e2 = t.throws(() => mutexUnlock(main, m, 'slots_lock'), { instanceOf: EmuError });
  t.is(e2?.code, 'EMU_ERR_INTERNAL');
});

test.serial(`mutex: ${N} workers x ${K} non-atomic increments under the mutex are exact`, async (t) => {
  const { mem, main, sc } = testMachine();
  expectOk(await runWorkers(mem, Array.from({ length: N }, (_, actor) => ({ actor, op: 'mutex-inc' as const, iterations: K }))));
  t.is(main.peek(sc(S.COUNTER)), N * K);
  t.is(main.peek(sc(S.LOCK)), MutexState.UNLOCKED);
});
