/**
 * The pure invariant checkers on hand-made data: they find what they are meant to find.
 */
import test from 'ava';
import { aggregateCounters } from '../../src/invariants/accounting.js';
import { attachEvents, isQuiescent, noLostInterrupt, noSleepingWithPending } from '../../src/invariants/checks.js';
import type { MachineSnapshot, VcpuSnapshot } from '../../src/invariants/snapshot.js';
import type { ActorCounters } from '../../src/kvm/stats.js';
import type { HvEvent } from '../../src/trace/events.js';

function counters(name: string, cells: [kind: 'sent' | 'coalesced' | 'delivered', vcpu: number, vector: number, n: number][]): ActorCounters {
  const c: ActorCounters = { actor: 0, name, sent: new Uint32Array(512), coalesced: new Uint32Array(512), delivered: new Uint32Array(512), misc: { vmexits: 1 } };
  for (const [k, v, vec, n] of cells) c[k][v * 256 + vec]! += n;
  return c;
}

function vcpu(v: number, over: Partial<VcpuSnapshot> = {}): VcpuSnapshot {
  const z = () => [0, 0, 0, 0, 0, 0, 0, 0];
  return { vcpu: v, mode: 0, requests: 0, cpu: 0, waitTask: 1, taskState: 1, blocking: 1, apicvActive: 1, rvi: 0, svi: 0, pir: z(), on: false, sn: false, nv: 0xf2, ndst: 0, irr: z(), isr: z(), tpr: 0, ppr: 0, timerDeadline: 0, avicEntry: 0, loadedOn: -1, ...over };
}

test('accounting balances sent = delivered + coalesced and sums misc counters', (t) => {
  const a = aggregateCounters([counters('vcpu0', [['sent', 1, 0x40, 5]]), counters('vcpu1', [['delivered', 1, 0x40, 4], ['coalesced', 1, 0x40, 1]])], 2);
  t.deepEqual(a.totals, { sent: 5, coalesced: 1, delivered: 4, lost: 0 });
  t.deepEqual(a.unbalanced, []);
  t.is(a.misc.vmexits, 2);
  t.deepEqual(noLostInterrupt(a, undefined), []);
});

test('a lost interrupt is reported with vCPU, vector and where it sits', (t) => {
  const a = aggregateCounters([counters('vcpu0', [['sent', 1, 0x41, 3], ['delivered', 1, 0x41, 2]])], 2);
  const pir = [0, 0, 1 << 1, 0, 0, 0, 0, 0];
  const snap: MachineSnapshot = { runState: 2, apicvInhibitReasons: 0, vcpus: [vcpu(0), vcpu(1, { pir, on: false })], pcpus: [] };
  const v = noLostInterrupt(a, snap);
  t.is(v.length, 1);
  t.is(v[0]!.vcpu, 1);
  t.is(v[0]!.vector, 0x41);
  t.regex(v[0]!.message, /sent 3, delivered 2, coalesced 0 \(1 lost\); now in PIR \(ON=0\)/);
});

test('a sleeping vCPU with a pending PIR vector breaks lost-wake-up freedom; quiescence sees it', (t) => {
  const quiet: MachineSnapshot = { runState: 2, apicvInhibitReasons: 0, vcpus: [vcpu(0), vcpu(1)], pcpus: [] };
  t.true(isQuiescent(quiet));
  t.deepEqual(noSleepingWithPending(quiet), []);
  const stuck: MachineSnapshot = { runState: 2, apicvInhibitReasons: 0, vcpus: [vcpu(0), vcpu(1, { pir: [0, 0, 0, 0, 0, 0, 1, 0], on: true })], pcpus: [] };
  t.false(isQuiescent(stuck));
  const v = noSleepingWithPending(stuck);
  t.is(v.length, 1);
  t.regex(v[0]!.message, /vcpu1 sleeps in HLT with vectors 0xc0 pending \(ON=1\)/);
});

test('attachEvents keeps the last events of the violating vCPU and vector, oldest first', (t) => {
  const ev = (type: string, actor: string, a: number, b: number, ts: number): HvEvent => ({ type, actor, a, b, t: ts, extra: 0 });
  const recent = [ev('pi:pir-set', 'vcpu0', 1, 0x41, 1), ev('pi:pir-set', 'vcpu0', 2, 0x41, 2), ev('vcpu:mode', 'vcpu1', 1, 1, 3), ev('pi:on-set', 'vcpu0', 1, 0x41, 4)];
  const [v] = attachEvents([{ invariant: 'noLostInterrupt', message: 'm', vcpu: 1, vector: 0x41 }], recent);
  t.deepEqual(
    v!.events!.map((e) => e.t),
    [1, 3, 4],
  );
});
