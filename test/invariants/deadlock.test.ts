/**
 * The deadlock finding names its wait-for cycle (lockdep's circular-dependency report), from the
 * `waitsFor` edges the wait primitives put in their errors.
 */
import test from 'ava';
import { deadlockViolation, findWaitCycle, type StuckActor } from '../../src/invariants/deadlock.js';

function stuck(name: string, what: string, waitsFor?: string[]): StuckActor {
  return { name, error: { code: 'EMU_ERR_DEADLINE', message: `${name} stuck waiting for ${what}`, detail: { what, ...(waitsFor ? { waitsFor } : {}) } } };
}

test('an ABBA between a mutex and an SRCU grace period is found and named in wait-for order', (t) => {
  const actors = [stuck('vmm', 'synchronize_srcu(kvm->srcu); readers inside: vcpu0', ['vcpu0']), stuck('vcpu0', 'slots_lock held by vmm', ['vmm']), stuck('vcpu1', 'the end of a round')];
  t.deepEqual(findWaitCycle(actors), ['vmm', 'vcpu0', 'vmm']);
  const v = deadlockViolation(actors);
  t.is(v.invariant, 'noDeadlock');
  t.is(v.message, 'ABBA deadlock: vmm → vcpu0 → vmm: vmm waits for synchronize_srcu(kvm->srcu); readers inside: vcpu0; vcpu0 waits for slots_lock held by vmm');
  t.deepEqual(v.deadlock.cycle, ['vmm', 'vcpu0', 'vmm']);
  t.is(v.deadlock.waits.length, 3);
});

test('a self-deadlock is a cycle of one; a longer cycle is named by its length', (t) => {
  t.regex(deadlockViolation([stuck('vcpu2', 'synchronize_srcu(kvm->srcu)', ['vcpu2'])]).message, /^self-deadlock: vcpu2 → vcpu2: /);
  const three = [stuck('a', 'x held by b', ['b']), stuck('b', 'y held by c', ['c']), stuck('c', 'z held by a', ['a'])];
  t.regex(deadlockViolation(three).message, /^circular wait of 3: a → b → c → a: /);
});

test('no cycle (a waiter whose holder is not stuck, or no edges): every wait is listed, cycle null', (t) => {
  const v = deadlockViolation([stuck('vcpu0', 'slots_lock held by vmm', ['vmm'])], ['vmm (running) waiting on nothing']);
  t.is(v.deadlock.cycle, null);
  t.is(v.message, 'vcpu0 stuck waiting for slots_lock held by vmm; vmm (running) waiting on nothing');
});
