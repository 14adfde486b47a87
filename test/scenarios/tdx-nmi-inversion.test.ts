/**
 * tdx-nmi-inversion: in the buggy variant an NMI that arrives during SEAM root really gets
 * handled before the NMI that exited the TD (and that one is then reported unknown); the fixed
 * variant never does; the checkers see bad states and accept good ones.
 * Here only what is deterministic runs; the buggy variants' free-mode reachability depends on
 * the host's timing and is in test/stress/tdx-nmi-inversion.test.ts (`npm run test:stress`).
 */
import test from 'ava';
import { runRace } from '../../src/scenarios/runner.js';
import { closeSharedPool } from '../../src/runtime/pool.js';
import { nmiHandledInArrivalOrder, nmiNoUnknownWithSource, type NmiInvocation, type NmiRound } from '../../src/invariants/nmi.js';

test.after.always(async () => {
  await closeSharedPool();
});

test.serial('fixed: 2000 rounds, NMIs handled in arrival order and never reported unknown', async (t) => {
  const r = await runRace('tdx-nmi-inversion', { variant: 'fixed', iterations: 2000, seed: 7 });
  t.is(r.failure, null);
  t.is(r.first, null);
  t.is(r.violations, 0);
  t.is(r.iterations, 2000);
});

test.serial('fixed with four sources: 2000 rounds, no violation', async (t) => {
  const r = await runRace('tdx-nmi-inversion', { variant: 'fixed', iterations: 2000, seed: 11, vcpus: 5 });
  t.is(r.failure, null);
  t.is(r.first, null);
  t.is(r.iterations, 2000);
});

/** A handler invocation (defaults: one NMI, handled through the host IDT). */
function inv(over: Partial<NmiInvocation>): NmiInvocation {
  return { first: 1, last: 1, sourceBits: 1 << 3, entry: 'host-idt', ip: 0x1100, handled: 1, b2b: false, outcome: 'handled', ...over };
}

/** Seed 002's bad interleaving: X (#1, source 0) exits the TD, X+1 (#2, source 1) is delivered at SEAMRET first. */
const inverted: NmiRound = {
  pcpu: 0,
  arrivals: [
    { seq: 1, source: 0 },
    { seq: 2, source: 1 },
  ],
  invocations: [
    inv({ first: 2, last: 2, sourceBits: 1 << 4, entry: 'host-idt', ip: 0x1200, handled: 2 }),
    inv({ first: 1, last: 1, sourceBits: 1 << 3, entry: 'kvm-exit', ip: 0x1400, handled: 0, outcome: 'unknown' }),
  ],
};

test('checkers: the inverted order and the unknown NMI with a source are violations', (t) => {
  const order = nmiHandledInArrivalOrder(inverted);
  t.is(order.length, 1);
  t.regex(order[0]?.message ?? '', /NMI #2 \[source vector 4\] \(delivered through the host IDT\) ran before the handler for NMI #1 \[source vector 3\]/);
  const unknown = nmiNoUnknownWithSource(inverted);
  t.is(unknown.length, 1);
  t.regex(unknown[0]?.message ?? '', /#1 from source 0/);
});

test('checkers: an invocation overlapping an earlier range is out of order; an unknown b2b NMI with a source is flagged', (t) => {
  const r: NmiRound = {
    pcpu: 0,
    arrivals: [1, 2, 3].map((seq) => ({ seq, source: 0 })),
    invocations: [inv({ first: 1, last: 2 }), inv({ first: 2, last: 3 })],
  };
  t.is(nmiHandledInArrivalOrder(r).length, 1);
  const b2b: NmiRound = { ...r, invocations: [inv({ first: 1, last: 1, handled: 1 }), inv({ first: 2, last: 3, handled: 0, b2b: true, outcome: 'unknown' })] };
  t.is(nmiNoUnknownWithSource(b2b).length, 1);
});

test('checkers accept the fixed interleaving (X by KVM, then X+1 back-to-back and swallowed) and a sourceless unknown NMI', (t) => {
  const fixed: NmiRound = {
    pcpu: 0,
    arrivals: inverted.arrivals,
    invocations: [
      inv({ first: 1, last: 1, sourceBits: 1 << 3, entry: 'kvm-exit', ip: 0x1400, handled: 2 }),
      inv({ first: 2, last: 2, sourceBits: 1 << 4, entry: 'host-idt', ip: 0x1400, handled: 0, b2b: true, outcome: 'swallowed' }),
    ],
  };
  t.deepEqual([...nmiHandledInArrivalOrder(fixed), ...nmiNoUnknownWithSource(fixed)], []);
  const sourceless: NmiRound = {
    pcpu: 0,
    arrivals: [{ seq: 1, source: -1 }],
    invocations: [inv({ sourceBits: 1, handled: 0, outcome: 'unknown' })],
  };
  t.deepEqual([...nmiHandledInArrivalOrder(sourceless), ...nmiNoUnknownWithSource(sourceless)], []);
  t.deepEqual(nmiHandledInArrivalOrder({ pcpu: 0, arrivals: [], invocations: [] }), []);
});
