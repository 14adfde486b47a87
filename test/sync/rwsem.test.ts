import test from 'ava';
import { downRead, downReadTrylock, downWrite, downWriteTrylock, downgradeWrite, rwsemOwner, rwsemReaders, upRead, upWrite } from '../../src/sync/index.js';
import { EmuError } from '../../src/errors.js';
import { expectOk, runWorkers } from '../helpers/run-workers.js';
import { testMachine } from '../helpers/machine.js';
import { S } from '../helpers/sync-protocol.js';

test('rwsem trylocks, downgrade and owner on one thread', (t) => {
  const { main, sc, mem } = testMachine();
  const sem = sc(S.RWSEM);
  t.true(downReadTrylock(main, sem));
  t.true(downReadTrylock(main, sem));
  t.is(rwsemReaders(main, sem), 2);
  t.false(downWriteTrylock(main, sem));
  upRead(main, sem);
  upRead(main, sem);
  t.true(downWriteTrylock(main, sem));
  t.is(rwsemOwner(main, sem), mem.layout.mainActor);
  t.false(downReadTrylock(main, sem));
  downgradeWrite(main, sem);
  t.is(rwsemOwner(main, sem), -1);
  t.is(rwsemReaders(main, sem), 1);
  t.true(downReadTrylock(main, sem));
  upRead(main, sem);
  upRead(main, sem);
  downWrite(main, sem);
  upWrite(main, sem);
  downRead(main, sem);
  upRead(main, sem);
  t.is(main.peek(sem), 0);
});

test('down_read while holding the write side is reported at once', (t) => {
  const { main, sc } = testMachine();
  const sem = sc(S.RWSEM);
  downWrite(main, sem, 'apicv_update_lock');
  const e = t.throws(() => downRead(main, sem, 'apicv_update_lock'), { instanceOf: EmuError });
  t.is(e?.code, 'EMU_ERR_DEADLINE');
  t.regex(e?.message ?? '', /apicv_update_lock/);
  upWrite(main, sem, 'apicv_update_lock');
  t.throws(() => upWrite(main, sem, 'apicv_update_lock'), { instanceOf: EmuError });
});

test.serial('rwsem: 2 writers exact, 2 continuous readers never see a torn write, writers not starved', async (t) => {
  const { mem, main, sc } = testMachine();
  const K = 3_000;
  const readers = [2, 3].map((actor) => ({ actor, op: 'rwsem-reader' as const, iterations: 50_000_000, params: { writers: 2 } }));
  const writers = [0, 1].map((actor) => ({ actor, op: 'rwsem-writer' as const, iterations: K }));
  const out = expectOk(await runWorkers(mem, [...writers, ...readers]));
  t.is(main.peek(sc(S.COUNTER)), 2 * K);
  const rs = out.slice(2);
  for (const r of rs) {
    t.is(r['torn'], 0);
    t.true((r['reads'] ?? 0) > 0);
    // The readers were still reading when the writers finished: writers got through a continuous stream.
    t.is(r['sawWritersDone'], 1);
  }
  t.log(`reads: ${rs.map((r) => r['reads']).join(', ')}`);
  t.is(main.peek(sc(S.RWSEM)), 0);
});
