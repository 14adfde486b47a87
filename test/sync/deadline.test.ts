import test from 'ava';
import { downRead, mutexLock, spinLock } from '../../src/sync/index.js';
import { ACTOR, ActorStatus, VM } from '../../src/mem/layout.js';
import { Access } from '../../src/mem/access.js';
import type { EmuErrorCode } from '../../src/errors.js';
import { runWorkers } from '../helpers/run-workers.js';
import { testMachine, until } from '../helpers/machine.js';
import { S, type SyncOp, type WorkerOutcome } from '../helpers/sync-protocol.js';

function expectError(t: import('ava').ExecutionContext, o: WorkerOutcome | undefined, code: EmuErrorCode, ...patterns: RegExp[]): void {
  t.truthy(o);
  if (!o) return;
  t.false(o.ok, 'the blocked worker must not complete');
  if (o.ok) return;
  t.is(o.error.code, code);
  for (const p of patterns) t.regex(o.error.message, p);
}

test.serial('spinlock held forever by main: the waiter gets EMU_ERR_DEADLINE naming itself and the holder', async (t) => {
  const { mem, main, sc } = testMachine();
  spinLock(main, sc(S.LOCK), 'lock:test');
  const [o] = await runWorkers(mem, [{ actor: 3, op: 'spin-lock', iterations: 1, deadlineMs: 200 }]);
  expectError(t, o, 'EMU_ERR_DEADLINE', /^vcpu3 stuck/, /spinlock lock:test held by main/);
});

test.serial('mutex held forever by another worker\'s actor: deadline names waiter and holder', async (t) => {
  const { mem, main, sc } = testMachine();
  // Hold it as vcpu2 (through an Access for actor 2 on this thread), wait as vcpu0.
  const holder = new Access(mem, { actor: 2, name: 'vcpu2' });
  mutexLock(holder, sc(S.LOCK), 'test_mutex');
  const [o] = await runWorkers(mem, [{ actor: 0, op: 'mutex-lock', iterations: 1, deadlineMs: 200 }]);
  expectError(t, o, 'EMU_ERR_DEADLINE', /^vcpu0 stuck/, /test_mutex held by vcpu2/);
  t.is(main.peek(sc(S.LOCK)), 2, 'the waiter left the mutex marked contended');
});

test.serial('rwsem held for read: a writer gets EMU_ERR_DEADLINE and withdraws, readers can enter again', async (t) => {
  const { mem, main, sc } = testMachine();
  downRead(main, sc(S.RWSEM), 'test_rwsem');
  const [o] = await runWorkers(mem, [{ actor: 1, op: 'down-write', iterations: 1, deadlineMs: 200 }]);
  expectError(t, o, 'EMU_ERR_DEADLINE', /^vcpu1 stuck/, /test_rwsem held for read by 1 reader\(s\), 1 writer\(s\) waiting/);
  t.is(main.peek(sc(S.RWSEM)), 1, 'only the main reader remains, the waiting writer withdrew');
  const [r] = await runWorkers(mem, [{ actor: 1, op: 'down-read', iterations: 1, deadlineMs: 2_000 }]);
  t.true(r?.ok);
});

test.serial('a doorbell nobody rings: EMU_ERR_DEADLINE naming what was awaited', async (t) => {
  const { mem } = testMachine();
  const [o] = await runWorkers(mem, [{ actor: 0, op: 'doorbell-wait', iterations: 1, deadlineMs: 200 }]);
  expectError(t, o, 'EMU_ERR_DEADLINE', /^vcpu0 stuck/, /a doorbell nobody rings/);
});

const blockers: Array<[SyncOp, (m: ReturnType<typeof testMachine>) => void]> = [
  ['spin-lock', (m) => spinLock(m.main, m.sc(S.LOCK), 'lock:test')],
  ['mutex-lock', (m) => mutexLock(m.main, m.sc(S.LOCK), 'test_mutex')],
  ['down-write', (m) => downRead(m.main, m.sc(S.RWSEM), 'test_rwsem')],
  ['doorbell-wait', () => undefined],
];

for (const [op, hold] of blockers) {
  test.serial(`setting VM.ABORT makes a waiter blocked in ${op} throw EMU_ERR_ABORTED`, async (t) => {
    const m = testMachine();
    hold(m);
    const L = m.mem.layout;
    const run = runWorkers(m.mem, [{ actor: 2, op, iterations: 1, deadlineMs: 60_000 }]);
    // Handshake: the worker publishes BLOCKED in its actor region once it sleeps.
    await until(() => m.main.peek(L.actor(2, ACTOR.STATUS)) === ActorStatus.BLOCKED, 'the worker to block');
    m.main.poke(L.vm(VM.ABORT), 1);
    const [o] = await run;
    expectError(t, o, 'EMU_ERR_ABORTED', /^vcpu2: run aborted while waiting for/);
  });
}
