import test from 'ava';
import { APIC_ESR, APIC_IRR, APIC_SPIV, APIC_TMR } from '../../src/mem/apicdef.js';
import { APIC_ESR_RECVILL, apicTestVector, kvmApicAcceptIrq, kvmLapicGetReg, kvmLapicRegWrite, type LapicIrq } from '../../src/apic/index.js';
import { machine, recordingOps } from './machine.js';

function irq(over: Partial<LapicIrq>): LapicIrq {
  return { vector: 0x50, deliveryMode: 'fixed', destMode: 'physical', level: true, triggerMode: 'edge', shorthand: 'none', dest: 0, ...over };
}

test('fixed edge interrupt is delivered through the vendor hook', (t) => {
  const acc = machine();
  const { ops, calls } = recordingOps(acc, 1);
  t.is(kvmApicAcceptIrq(acc, 1, irq({ vector: 0x50 }), ops), 'delivered');
  t.deepEqual(calls, [{ op: 'deliver', vector: 0x50, trigger: 'edge' }]);
  t.true(apicTestVector(acc, 1, APIC_IRR, 0x50, 'test'));
});

test('level-triggered acceptance sets TMR[vector]', (t) => {
  const acc = machine();
  const { ops } = recordingOps(acc, 0);
  kvmApicAcceptIrq(acc, 0, irq({ vector: 0x66, triggerMode: 'level' }), ops);
  t.true(apicTestVector(acc, 0, APIC_TMR, 0x66, 'test'));
});

test('edge-triggered acceptance clears a stale TMR[vector]', (t) => {
  const acc = machine();
  const { ops } = recordingOps(acc, 0);
  kvmApicAcceptIrq(acc, 0, irq({ vector: 0x66, triggerMode: 'level' }), ops);
  kvmApicAcceptIrq(acc, 0, irq({ vector: 0x66, triggerMode: 'edge' }), ops);
  t.false(apicTestVector(acc, 0, APIC_TMR, 0x66, 'test'));
});

test('level-triggered deassert is ignored', (t) => {
  const acc = machine();
  const { ops, calls } = recordingOps(acc, 0);
  t.is(kvmApicAcceptIrq(acc, 0, irq({ triggerMode: 'level', level: false }), ops), 'ignored-deassert');
  t.deepEqual(calls, []);
});

test('a software-disabled APIC drops fixed and lowest-priority interrupts', (t) => {
  const acc = machine({ enable: false });
  const { ops, calls } = recordingOps(acc, 2);
  t.is(kvmApicAcceptIrq(acc, 2, irq({}), ops), 'dropped-disabled');
  t.is(kvmApicAcceptIrq(acc, 2, irq({ deliveryMode: 'lowest' }), ops), 'dropped-disabled');
  t.deepEqual(calls, []);
  t.false(apicTestVector(acc, 2, APIC_IRR, 0x50, 'test'));
});

test('software disable after enable drops again (SPIV bit 8 cleared)', (t) => {
  const acc = machine();
  kvmLapicRegWrite(acc, 0, APIC_SPIV, 0xff);
  const { ops } = recordingOps(acc, 0);
  t.is(kvmApicAcceptIrq(acc, 0, irq({}), ops), 'dropped-disabled');
});

test('NMI, INIT and SIPI reach a software-disabled APIC', (t) => {
  const acc = machine({ enable: false });
  const { ops, calls } = recordingOps(acc, 1);
  t.is(kvmApicAcceptIrq(acc, 1, irq({ deliveryMode: 'nmi', vector: 0 }), ops), 'delivered');
  t.is(kvmApicAcceptIrq(acc, 1, irq({ deliveryMode: 'init', vector: 0, triggerMode: 'level', level: true }), ops), 'delivered');
  t.is(kvmApicAcceptIrq(acc, 1, irq({ deliveryMode: 'init', vector: 0, triggerMode: 'level', level: false }), ops), 'ignored-deassert');
  t.is(kvmApicAcceptIrq(acc, 1, irq({ deliveryMode: 'startup', vector: 0x9a }), ops), 'delivered');
  t.deepEqual(calls, [{ op: 'nmi' }, { op: 'init' }, { op: 'sipi', vector: 0x9a }]);
});

test('vectors 0-15 are not delivered and set ESR receive-illegal-vector', (t) => {
  const acc = machine();
  const { ops, calls } = recordingOps(acc, 0);
  for (const vector of [0, 2, 15]) {
    t.is(kvmApicAcceptIrq(acc, 0, irq({ vector }), ops), 'illegal-vector');
  }
  t.is(kvmApicAcceptIrq(acc, 0, irq({ vector: 3, deliveryMode: 'lowest' }), ops), 'illegal-vector');
  t.deepEqual(calls, []);
  t.is(kvmLapicGetReg(acc, 0, APIC_ESR, 'test') & APIC_ESR_RECVILL, APIC_ESR_RECVILL);
  t.is(kvmApicAcceptIrq(acc, 0, irq({ vector: 16 }), ops), 'delivered', 'vector 16 is the first legal one');
});

test('SMI, remote read and ExtINT are not modelled', (t) => {
  const acc = machine();
  const { ops, calls } = recordingOps(acc, 0);
  for (const deliveryMode of ['smi', 'remrd', 'extint'] as const) {
    t.is(kvmApicAcceptIrq(acc, 0, irq({ deliveryMode }), ops), 'ignored-mode');
  }
  t.deepEqual(calls, []);
});
