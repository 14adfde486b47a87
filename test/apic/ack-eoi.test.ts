import test from 'ava';
import { APIC_IRR, APIC_ISR, APIC_PROCPRI, APIC_TMR } from '../../src/mem/apicdef.js';
import { apicEoiIsLevel, apicSetEoi, apicSetEoiEx, apicTestVector, kvmApicAckInterrupt, kvmApicHasInterrupt, kvmLapicGetReg, apicSetVector } from '../../src/apic/index.js';
import { machine, setIrr } from './machine.js';

test('ack moves the vector from IRR to ISR and raises PPR to its class', (t) => {
  const acc = machine();
  setIrr(acc, 0, 0x7b);
  const vec = kvmApicHasInterrupt(acc, 0);
  t.is(vec, 0x7b);
  kvmApicAckInterrupt(acc, 0, vec);
  t.false(apicTestVector(acc, 0, APIC_IRR, 0x7b, 'test'));
  t.true(apicTestVector(acc, 0, APIC_ISR, 0x7b, 'test'));
  t.is(kvmLapicGetReg(acc, 0, APIC_PROCPRI, 'test'), 0x70);
  t.is(kvmApicHasInterrupt(acc, 0), -1);
});

test('EOI clears the highest ISR bit (two in service) and lowers PPR', (t) => {
  const acc = machine();
  setIrr(acc, 1, 0x40);
  kvmApicAckInterrupt(acc, 1, 0x40);
  setIrr(acc, 1, 0x90);
  kvmApicAckInterrupt(acc, 1, 0x90);
  t.is(kvmLapicGetReg(acc, 1, APIC_PROCPRI, 'test'), 0x90);
  t.is(apicSetEoi(acc, 1), 0x90);
  t.false(apicTestVector(acc, 1, APIC_ISR, 0x90, 'test'));
  t.true(apicTestVector(acc, 1, APIC_ISR, 0x40, 'test'), 'the lower vector stays in service');
  t.is(kvmLapicGetReg(acc, 1, APIC_PROCPRI, 'test'), 0x40);
  t.is(apicSetEoi(acc, 1), 0x40);
  t.is(kvmLapicGetReg(acc, 1, APIC_PROCPRI, 'test'), 0);
});

test('EOI with nothing in service returns -1', (t) => {
  const acc = machine();
  t.is(apicSetEoi(acc, 0), -1);
  t.deepEqual(apicSetEoiEx(acc, 0), { vector: -1, level: false });
});

test('EOI reports the trigger mode from TMR', (t) => {
  const acc = machine();
  apicSetVector(acc, 0, APIC_TMR, 0x61, 'test');
  setIrr(acc, 0, 0x61);
  kvmApicAckInterrupt(acc, 0, 0x61);
  t.deepEqual(apicSetEoiEx(acc, 0), { vector: 0x61, level: true });
  t.true(apicEoiIsLevel(acc, 0, 0x61));
  setIrr(acc, 0, 0x62);
  kvmApicAckInterrupt(acc, 0, 0x62);
  t.deepEqual(apicSetEoiEx(acc, 0), { vector: 0x62, level: false });
});
