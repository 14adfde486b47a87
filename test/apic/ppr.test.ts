import test from 'ava';
import { APIC_PROCPRI, APIC_TASKPRI, APIC_SPIV } from '../../src/mem/apicdef.js';
import { apicSetTpr, apicUpdatePpr, computePpr, kvmApicHasInterrupt, kvmLapicGetReg, kvmLapicRegWrite } from '../../src/apic/index.js';
import { machine, setIrr, setIsr } from './machine.js';

test('computePpr: TPR class above the ISR class -> PPR = TPR (all 8 bits)', (t) => {
  t.is(computePpr(0x5a, 0x31), 0x5a);
});

test('computePpr: TPR class below the ISR class -> PPR = ISRV & 0xF0', (t) => {
  t.is(computePpr(0x2f, 0x47), 0x40);
});

test('computePpr: equal classes -> PPR = TPR', (t) => {
  t.is(computePpr(0x43, 0x4e), 0x43);
});

test('computePpr: nothing in service -> PPR = TPR', (t) => {
  t.is(computePpr(0x17, -1), 0x17);
  t.is(computePpr(0, -1), 0);
});

test('apicUpdatePpr derives PPR from TPR and the highest ISR and stores APIC_PROCPRI', (t) => {
  const acc = machine();
  setIsr(acc, 1, 0x35, 0x61);
  acc.writeOnce(acc.layout.apicReg(1, APIC_TASKPRI), 0x52, 'test');
  t.is(apicUpdatePpr(acc, 1), 0x60);
  t.is(kvmLapicGetReg(acc, 1, APIC_PROCPRI, 'test'), 0x60);
});

test('kvmApicHasInterrupt returns the highest IRR vector whose class is above PPR', (t) => {
  const acc = machine();
  setIrr(acc, 0, 0x31, 0x52, 0x41);
  apicSetTpr(acc, 0, 0x45);
  t.is(kvmApicHasInterrupt(acc, 0), 0x52);
});

test('kvmApicHasInterrupt: a highest IRR at or below the PPR class is not deliverable', (t) => {
  const acc = machine();
  setIrr(acc, 0, 0x4f, 0x21);
  apicSetTpr(acc, 0, 0x40);
  t.is(kvmApicHasInterrupt(acc, 0), -1, 'same class as PPR');
  apicSetTpr(acc, 0, 0x50);
  t.is(kvmApicHasInterrupt(acc, 0), -1, 'class below PPR');
});

test('kvmApicHasInterrupt: an in-service vector blocks its own and lower classes', (t) => {
  const acc = machine();
  setIsr(acc, 2, 0x60);
  setIrr(acc, 2, 0x65);
  t.is(kvmApicHasInterrupt(acc, 2), -1);
  setIrr(acc, 2, 0x70);
  t.is(kvmApicHasInterrupt(acc, 2), 0x70);
});

test('kvmApicHasInterrupt: a software-disabled APIC has nothing to deliver', (t) => {
  const acc = machine();
  setIrr(acc, 0, 0x80);
  t.is(kvmApicHasInterrupt(acc, 0), 0x80);
  kvmLapicRegWrite(acc, 0, APIC_SPIV, 0xff);
  t.is(kvmApicHasInterrupt(acc, 0), -1);
});

test('apicSetTpr: lowering TPR below a pending vector asks for KVM_REQ_EVENT', (t) => {
  const acc = machine();
  apicSetTpr(acc, 0, 0x90);
  setIrr(acc, 0, 0x55);
  const up = apicSetTpr(acc, 0, 0x90);
  t.false(up.needEvent, 'PPR unchanged');
  const down = apicSetTpr(acc, 0, 0x20);
  t.deepEqual(down, { ppr: 0x20, lowered: true, needEvent: true });
});
