import test from 'ava';
import { APIC_IRR, APIC_ISR, APIC_TMR } from '../../src/mem/apicdef.js';
import { VCPU } from '../../src/mem/layout.js';
import { apicClearIrr, apicFindHighestIrr, apicFindHighestIsr, apicFindHighestVector, apicSearchIrr, apicTestVector, kvmLapicSetIrr } from '../../src/apic/index.js';
import { machine, setIrr, setIsr } from './machine.js';

test('apicFindHighestVector scans words 7 -> 0 and takes the highest bit', (t) => {
  const acc = machine();
  t.is(apicFindHighestVector(acc, 0, APIC_IRR), -1, 'empty');
  setIrr(acc, 0, 0x21, 0x3f);
  t.is(apicFindHighestVector(acc, 0, APIC_IRR), 0x3f, 'bit 31 of word 1');
  setIrr(acc, 0, 0x40);
  t.is(apicFindHighestVector(acc, 0, APIC_IRR), 0x40, 'bit 0 of word 2 beats word 1');
  setIrr(acc, 0, 0xff);
  t.is(apicFindHighestVector(acc, 0, APIC_IRR), 0xff, 'bit 31 of word 7 (sign bit of the stored int32)');
});

test('apicFindHighestVector works on ISR and TMR, per vCPU', (t) => {
  const acc = machine();
  setIsr(acc, 3, 0x91, 0x30);
  acc.setBit(acc.layout.apicBitmapWord(3, APIC_TMR, 5), 2, 'test');
  t.is(apicFindHighestIsr(acc, 3), 0x91);
  t.is(apicFindHighestVector(acc, 3, APIC_TMR), 5 * 32 + 2);
  t.is(apicFindHighestIsr(acc, 2), -1);
});

test('kvmLapicSetIrr sets the IRR bit and irr_pending; apicClearIrr clears it', (t) => {
  const acc = machine();
  kvmLapicSetIrr(acc, 1, 0x66);
  t.true(apicTestVector(acc, 1, APIC_IRR, 0x66, 'test'));
  t.is(acc.peek(acc.layout.vcpu(1, VCPU.IRR_PENDING)), 1);
  apicClearIrr(acc, 1, 0x66);
  t.false(apicTestVector(acc, 1, APIC_IRR, 0x66, 'test'));
});

test('apicClearIrr (no APICv) re-derives irr_pending from what is left in IRR', (t) => {
  const acc = machine();
  setIrr(acc, 0, 0x50, 0x60);
  apicClearIrr(acc, 0, 0x60);
  t.is(acc.peek(acc.layout.vcpu(0, VCPU.IRR_PENDING)), 1, 'still 0x50');
  apicClearIrr(acc, 0, 0x50);
  t.is(acc.peek(acc.layout.vcpu(0, VCPU.IRR_PENDING)), 0, 'IRR empty');
});

test('apicFindHighestIrr honours the irr_pending hint; apicSearchIrr does not', (t) => {
  const acc = machine();
  setIrr(acc, 0, 0x70);
  acc.poke(acc.layout.vcpu(0, VCPU.IRR_PENDING), 0);
  t.is(apicFindHighestIrr(acc, 0), -1);
  t.is(apicSearchIrr(acc, 0), 0x70);
});

test('vectors outside 0..255 are rejected', (t) => {
  const acc = machine();
  t.throws(() => kvmLapicSetIrr(acc, 0, 256), { message: /outside 0..255/ });
  t.throws(() => kvmLapicSetIrr(acc, 0, -1));
  t.is(apicFindHighestVector(acc, 0, APIC_ISR), -1);
});
