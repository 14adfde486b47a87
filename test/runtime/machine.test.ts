/**
 * End-to-end runs on real worker threads: the posted-interrupt path under contention, the
 * warm pool, failure reports and bad input. Assertions are on counts and behaviour only.
 */
import test from 'ava';
import { Machine } from '../../src/runtime/machine.js';
import { ActorPool, closeSharedPool, sharedPool } from '../../src/runtime/pool.js';
import { EmuError } from '../../src/errors.js';

test.after.always(async () => {
  await closeSharedPool();
});

const storm = { kind: 'ipi-storm' as const, storm: { burst: 8, vectorLo: 0x40, vectorHi: 0xdf } };

// Runs are bounded by a count of interrupts sent (`sends`), never by how much a busy host manages
// in a fixed time; `seconds` is only the cap that catches a run making no progress.
const SENDS = 4000;

test.serial('IPI storm on 4 vCPUs / 2 pCPUs: every interrupt sent is delivered or coalesced', async (t) => {
  const r = await Machine.create({ vcpus: 4, pcpus: 2 }).run({ sends: SENDS, seed: 11, workload: storm }).result;
  t.falsy(r.failure, r.failure?.message);
  t.true(r.quiescent);
  t.deepEqual(r.violations, []);
  t.true(r.accounting.totals.sent >= SENDS, `sent ${r.accounting.totals.sent}`);
  t.is(r.accounting.totals.lost, 0);
  t.is(r.accounting.totals.sent, r.accounting.totals.delivered + r.accounting.totals.coalesced);
  for (const v of r.accounting.perVcpu) t.true(v.delivered > 0, `vcpu${v.vcpu} received nothing`);
  // The path really ran: notifications in guest mode and wake-ups of halted vCPUs both happened.
  t.true((r.accounting.misc.hwPiProcessed ?? 0) + (r.accounting.misc.pirSyncs ?? 0) > 0);
  t.true((r.accounting.misc.wakeups ?? 0) > 0);
  t.true(r.ok);
});

test.serial('two vCPUs that halt together are woken by their LAPIC timer (the idle tick)', async (t) => {
  const r = await Machine.create({ vcpus: 2, pcpus: 2 })
    .run({ sends: SENDS, seed: 5, workload: { kind: 'ipi-storm', storm: { burst: 8, vectorLo: 0x40, vectorHi: 0xdf, haltTimerUs: 200 } } })
    .result;
  t.true(r.ok, r.failure?.message ?? JSON.stringify(r.violations));
  const timer = r.accounting.perVector.find((v) => v.vector === 0xec);
  t.true((timer?.delivered ?? 0) > 0, 'timer interrupts delivered');
  t.is(r.accounting.totals.lost, 0);
});

test.serial('pure storm (no HLT) with 16 vCPUs on 2 pCPUs completes with nothing lost', async (t) => {
  const r = await Machine.create({ vcpus: 16, pcpus: 2 })
    .run({ sends: 5 * SENDS, seed: 3, workload: { kind: 'ipi-storm', storm: { burst: 0, vectorLo: 0x20, vectorHi: 0xef } } })
    .result;
  t.falsy(r.failure, r.failure?.message);
  t.true(r.quiescent);
  t.is(r.accounting.totals.lost, 0);
  t.true(r.accounting.totals.sent >= 5 * SENDS);
  t.true(r.accounting.totals.delivered > 0);
  t.true((r.accounting.misc.preemptions ?? 0) > 0, 'vCPUs time-shared their pCPUs');
});

test.serial('ping-pong counts round trips through the posted-interrupt path', async (t) => {
  const r = await Machine.create({ vcpus: 2, pcpus: 2 })
    .run({ sends: 100, workload: { kind: 'ping-pong', pinger: 0, ponger: 1, pingVector: 0x40, pongVector: 0x41, spin: true } })
    .result;
  t.true(r.ok, r.failure?.message);
  t.true((r.figures.roundTrips ?? 0) > 10);
  const pongs = r.accounting.perVector.find((v) => v.vector === 0x41);
  t.truthy(pongs);
  t.true(Math.abs((pongs?.delivered ?? 0) - (r.figures.roundTrips ?? 0)) <= 1);
});

test.serial('a second run reuses the warm pool threads', async (t) => {
  const pool = await sharedPool(6);
  const m = Machine.create({ vcpus: 4, pcpus: 2 });
  await m.run({ seconds: 0.1 }).result;
  const threads = pool.liveThreads;
  const again = await sharedPool(6);
  t.is(again, pool);
  await m.run({ seconds: 0.1 }).result;
  t.is(pool.liveThreads, threads);
});

test.serial('a pool with fewer threads than actors is refused, not deadlocked', async (t) => {
  const pool = new ActorPool(3);
  try {
    const h = Machine.create({ vcpus: 4, pcpus: 2 }, { pool }).run({ seconds: 0.1 });
    const e = await t.throwsAsync(h.result);
    t.is((e as EmuError).code, 'EMU_ERR_POOL_TOO_SMALL');
    t.regex(e!.message, /needs 6 actor threads at once but the pool has 3/);
  } finally {
    await pool.destroy();
  }
});

test.serial('scripted guests: self-IPI, broadcast shorthand and physical IPIs are each delivered', async (t) => {
  // x2APIC ICR: 7:0 vector, 19:18 shorthand (01 self, 10 all incl. self); high half = destination.
  const r = await Machine.create({ vcpus: 3, pcpus: 2 })
    .run({
      seconds: 0.2,
      workload: {
        kind: 'script',
        writes: [
          [
            { msr: 0x83f, lo: 0x50, hi: 0 }, // SELF_IPI
            { msr: 0x830, lo: 0x60 | (0b10 << 18), hi: 0 }, // all including self
          ],
          [{ msr: 0x830, lo: 0x70, hi: 2 }], // vcpu1 -> vcpu2
          [],
        ],
      },
    })
    .result;
  t.true(r.ok, r.failure?.message ?? JSON.stringify(r.violations));
  const byVec = new Map(r.accounting.perVector.map((v) => [v.vector, v]));
  t.is(byVec.get(0x50)?.delivered, 1);
  t.is(byVec.get(0x60)?.delivered, 3);
  t.is(byVec.get(0x70)?.delivered, 1);
  t.is(r.figures.received, 5);
});

test.serial('a guest #GP (reserved ICR bits) ends the run with a report naming the actor', async (t) => {
  const r = await Machine.create({ vcpus: 2, pcpus: 1 })
    .run({ seconds: 1, workload: { kind: 'script', writes: [[], [{ msr: 0x830, lo: 0x40 | (1 << 13), hi: 0 }]] } })
    .result;
  t.false(r.ok);
  t.is(r.failure?.code, 'EMU_ERR_GP');
  t.is(r.failure?.actor, 'vcpu1');
  t.deepEqual(r.failure?.stuck, []);
});

test.serial('a wait past its deadline ends the run with a report naming the stuck actor', async (t) => {
  // 12 vCPUs share one pCPU; with a 5 ms deadline a vCPU queued for the pCPU gives up.
  const r = await Machine.create({ vcpus: 12, pcpus: 1 })
    .run({ seconds: 2, deadlineMs: 5, workload: { kind: 'ipi-storm', storm: { burst: 0, vectorLo: 0x40, vectorHi: 0x4f } }, loop: { sliceMs: 20 } })
    .result;
  t.false(r.ok);
  t.is(r.failure?.code, 'EMU_ERR_DEADLINE');
  t.regex(r.failure?.message ?? '', /^vcpu\d+ stuck for 5 ms waiting for pCPU 0/);
  t.regex(r.failure?.actor ?? '', /^vcpu\d+$/);
});

test.serial('inject() raises a device interrupt from a pCPU thread over the control plane', async (t) => {
  // A long cap and an explicit stop(): the RPCs below must land inside the run however busy the host.
  const h = Machine.create({ vcpus: 2, pcpus: 2 }).run({ seconds: 120, workload: { kind: 'idle' } });
  await new Promise<void>((resolve) => {
    const sub = h.progress$.subscribe(() => {
      sub.unsubscribe();
      resolve();
    });
  });
  const snaps = await h.actorSnapshots();
  t.deepEqual(
    snaps.map((s) => s.name),
    ['vcpu0', 'vcpu1', 'pcpu0', 'pcpu1'],
  );
  const res = await h.inject(1, 0x99, 0);
  t.deepEqual(res, { accepted: true, outcome: 'delivered' });
  await t.throwsAsync(h.inject(1, 7), { message: /invalid vector: 7/ });
  await t.throwsAsync(h.inject(5, 0x40), { message: /invalid target/ });
  h.stop();
  const r = await h.result;
  t.true(r.ok, r.failure?.message);
  t.is(r.accounting.perVcpu[1]?.delivered, 1);
});

test('bad machine parameters name the parameter', (t) => {
  for (const [cfg, param] of [
    [{ vcpus: 0 }, 'vcpus'],
    [{ vcpus: 257 }, 'vcpus'],
    [{ vcpus: 2.5 }, 'vcpus'],
    [{ pcpus: 0 }, 'pcpus'],
    [{ vendor: 'svm-nope' }, 'vendor'],
    [{ vcpus: Number.NaN }, 'vcpus'],
  ] as const) {
    const e = t.throws(() => Machine.create(cfg as never));
    t.is((e as EmuError).code, 'EMU_ERR_BAD_PARAM');
    t.regex(e!.message, new RegExp(`invalid ${param}`));
  }
  const m = Machine.create({ vcpus: 2, pcpus: 1 });
  t.throws(() => m.run({ seconds: -1 }), { message: /invalid seconds/ });
  t.throws(() => m.run({ workload: { kind: 'ipi-storm', storm: { burst: 1, vectorLo: 3, vectorHi: 0x40 } } }), { message: /invalid vectorLo/ });
});

test.serial('record: every labelled access gets a unique global sequence number; widening keeps the run correct', async (t) => {
  const rec = Machine.create({ vcpus: 2, pcpus: 1 }).run({ sends: 200, record: true, workload: { kind: 'ping-pong', pinger: 0, ponger: 1, pingVector: 0x40, pongVector: 0x41, spin: false } });
  const seqs: number[] = [];
  rec.events$.subscribe((e) => {
    if (e.type === 'mem:access') seqs.push(e.t);
  });
  const r1 = await rec.result;
  t.true(r1.ok, r1.failure?.message);
  t.true(seqs.length > 100);
  t.is(new Set(seqs).size, seqs.length, 'sequence numbers are unique');
  const r2 = await Machine.create({ vcpus: 3, pcpus: 2 })
    .run({ sends: 1000, seed: 9, widen: { seed: 9, probability: 0.2, maxSpins: 200, points: ['pi:', 'vcpu:mode'] } })
    .result;
  t.true(r2.ok, r2.failure?.message ?? JSON.stringify(r2.violations));
  t.true(r2.accounting.totals.sent >= 1000);
});

test.serial('workers that die mid-run end the run with a crash report, not a hang', async (t) => {
  const pool = new ActorPool(4);
  const h = Machine.create({ vcpus: 2, pcpus: 2 }, { pool }).run({ seconds: 30 });
  await new Promise<void>((resolve) => {
    const sub = h.progress$.subscribe(() => {
      sub.unsubscribe();
      resolve();
    });
  });
  await pool.destroy(); // terminates every worker thread, as a crash would
  const r = await h.result;
  t.false(r.ok);
  t.is(r.failure?.code, 'EMU_ERR_ACTOR_CRASHED');
  t.regex(r.failure?.message ?? '', /^(vcpu|pcpu)\d: worker crashed/);
  t.true(r.elapsedMs < 30_000);
});
