import test from 'ava';
import { SRCU_GP, kvmSrcu, srcuGpSeq, srcuHeldBy, srcuReadLock, srcuReadUnlock, srcuReadersActive, synchronizeSrcu, wordAt } from '../../src/sync/index.js';
import { SRCU_HDR } from '../../src/mem/layout.js';
import { EmuError } from '../../src/errors.js';
import { expectOk, runWorkers } from '../helpers/run-workers.js';
import { testMachine } from '../helpers/machine.js';
import { SRCU_TEST_READERS } from '../helpers/sync-protocol.js';

test('srcu read lock/unlock bookkeeping and a grace period with no readers', (t) => {
  const { main, mem } = testMachine();
  const s = kvmSrcu(mem.layout);
  t.false(srcuReadersActive(main, s));
  const idx = srcuReadLock(main, s);
  t.is(idx, 0);
  t.true(srcuReadersActive(main, s));
  t.is(srcuHeldBy(main, s, main.actor, 0), 1);
  srcuReadUnlock(main, s, idx);
  t.false(srcuReadersActive(main, s));
  synchronizeSrcu(main, s);
  t.is(srcuGpSeq(main, s), 1);
  t.is(main.peek(wordAt(s.hdr, SRCU_HDR.CTR_IDX)), 1, 'one flip per grace period');
  t.is(main.peek(wordAt(s.hdr, SRCU_HDR.GP_STATE)), SRCU_GP.IDLE);
  synchronizeSrcu(main, s);
  t.is(srcuGpSeq(main, s), 2);
  t.is(main.peek(wordAt(s.hdr, SRCU_HDR.CTR_IDX)), 0);
});

test('synchronize_srcu inside its own read section is reported as a self-deadlock', (t) => {
  const { main, mem } = testMachine();
  const s = kvmSrcu(mem.layout);
  const idx = srcuReadLock(main, s);
  const e = t.throws(() => synchronizeSrcu(main, s), { instanceOf: EmuError });
  t.is(e?.code, 'EMU_ERR_DEADLINE');
  t.regex(e?.message ?? '', /synchronize_srcu\(kvm->srcu\) waiting for readers of idx 0/);
  t.regex(e?.message ?? '', /main itself holds an SRCU read lock on idx 0/);
  t.is(e?.detail?.['selfDeadlock'], true);
  srcuReadUnlock(main, s, idx);
  synchronizeSrcu(main, s);
  t.is(srcuGpSeq(main, s), 1);
});

test.serial('srcu self-deadlock on a worker thread: EMU_ERR_DEADLINE naming the worker', async (t) => {
  const { mem } = testMachine();
  const [o] = await runWorkers(mem, [{ actor: 2, op: 'srcu-self-deadlock', iterations: 1, deadlineMs: 5_000 }]);
  t.false(o?.ok);
  if (o && !o.ok) {
    t.is(o.error.code, 'EMU_ERR_DEADLINE');
    t.regex(o.error.message, /vcpu2 itself holds an SRCU read lock/);
  }
});

test.serial('synchronize_srcu blocked by another actor\'s reader: deadline names the reader', async (t) => {
  const { mem, main } = testMachine();
  const s = kvmSrcu(mem.layout);
  const idx = srcuReadLock(main, s);
  const [o] = await runWorkers(mem, [{ actor: 1, op: 'srcu-sync', iterations: 1, deadlineMs: 200 }]);
  srcuReadUnlock(main, s, idx);
  t.false(o?.ok);
  if (o && !o.ok) {
    t.is(o.error.code, 'EMU_ERR_DEADLINE');
    t.regex(o.error.message, /^vcpu1 stuck/);
    t.regex(o.error.message, /synchronize_srcu\(kvm->srcu\) waiting for readers of idx 0 \(SCAN2\); readers inside: main/);
  }
  t.is(main.peek(wordAt(s.hdr, SRCU_HDR.GP_MUTEX)), 0, 'the GP mutex was released on the error path');
});

test.serial('srcu: grace periods advance under 3 continuous readers and no reader uses a freed slot', async (t) => {
  const { mem, main } = testMachine();
  const s = kvmSrcu(mem.layout);
  const GPS = 200;
  const readers = Array.from({ length: SRCU_TEST_READERS }, (_, i) => i + 1).map((actor) => ({ actor, op: 'srcu-reader' as const, iterations: 100_000_000 }));
  const out = expectOk(await runWorkers(mem, [{ actor: 0, op: 'srcu-writer', iterations: GPS }, ...readers]));
  const [w, ...rs] = out;
  t.is(w?.['gps'], GPS);
  t.is(w?.['violations'], 0);
  t.is(srcuGpSeq(main, s), GPS);
  for (const r of rs) {
    t.is(r['violations'], 0);
    t.true((r['reads'] ?? 0) > 0);
  }
  t.log(`reads during ${GPS} grace periods: ${rs.map((r) => r['reads']).join(', ')}`);
  t.false(srcuReadersActive(main, s));
});
