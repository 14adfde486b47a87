import test from 'ava';
import type { ExecutionContext } from 'ava';
import { APIC_EOI, APIC_ICR, APIC_ID, APIC_IRR, APIC_ISR, APIC_LVTT, APIC_PROCPRI, APIC_SELF_IPI, APIC_TASKPRI, APIC_TMR, APIC_LVT_MASKED } from '../../src/mem/apicdef.js';
import { EmuError } from '../../src/errors.js';
import { apicTestVector, kvmApicAckInterrupt, kvmApicSwEnabled, kvmLapicGetReg, kvmX2apicMsrRead, kvmX2apicMsrWrite, offsetToX2apicMsr, x2apicMsrToOffset } from '../../src/apic/index.js';
import { machine, setIrr } from './machine.js';

function assertGp(t: ExecutionContext, fn: () => unknown, msr: number): void {
  const err = t.throws(fn, { instanceOf: EmuError });
  t.is(err?.code, 'EMU_ERR_GP');
  t.is(err?.detail?.['msr'], msr);
}

test('x2APIC MSR <-> offset: ID 0x802, TPR 0x808, EOI 0x80B, ICR 0x830, SELF_IPI 0x83F', (t) => {
  const pairs: [number, number][] = [
    [0x802, APIC_ID],
    [0x808, APIC_TASKPRI],
    [0x80b, APIC_EOI],
    [0x830, APIC_ICR],
    [0x83f, APIC_SELF_IPI],
  ];
  for (const [msr, off] of pairs) {
    t.is(x2apicMsrToOffset(msr), off);
    t.is(offsetToX2apicMsr(off), msr);
  }
});

test('x2APIC MSR <-> offset: ISR 0x810-0x817, TMR 0x818-0x81F, IRR 0x820-0x827 (one MSR per word)', (t) => {
  for (let i = 0; i < 8; i++) {
    t.is(x2apicMsrToOffset(0x810 + i), APIC_ISR + 0x10 * i);
    t.is(x2apicMsrToOffset(0x818 + i), APIC_TMR + 0x10 * i);
    t.is(x2apicMsrToOffset(0x820 + i), APIC_IRR + 0x10 * i);
    t.is(offsetToX2apicMsr(APIC_IRR + 0x10 * i), 0x820 + i);
  }
});

test('MSRs outside 0x800-0x8FF and unaligned offsets are bad parameters', (t) => {
  t.throws(() => x2apicMsrToOffset(0x7ff), { message: /outside the x2APIC range/ });
  t.throws(() => x2apicMsrToOffset(0x900));
  t.throws(() => offsetToX2apicMsr(0x84));
});

test('IRR words read through their MSRs', (t) => {
  const acc = machine({ x2apic: true });
  setIrr(acc, 0, 0x41, 0xff);
  t.deepEqual(kvmX2apicMsrRead(acc, 0, 0x822), { lo: 0x2, hi: 0 });
  t.deepEqual(kvmX2apicMsrRead(acc, 0, 0x827), { lo: 0x8000_0000, hi: 0 });
  t.deepEqual(kvmX2apicMsrRead(acc, 3, 0x802), { lo: 3, hi: 0 }, 'x2APIC ID = vCPU index');
});

test('ICR is one 64-bit MSR: the write returns the IPI and reads back 64 bits', (t) => {
  const acc = machine({ x2apic: true });
  const r = kvmX2apicMsrWrite(acc, 1, 0x830, 0x0000_40f1, 0x0000_0003);
  t.deepEqual(r, { kind: 'ipi', icr: { vector: 0xf1, deliveryMode: 'fixed', destMode: 'physical', level: true, triggerMode: 'edge', shorthand: 'none', dest: 3 } });
  t.deepEqual(kvmX2apicMsrRead(acc, 1, 0x830), { lo: 0x40f1, hi: 3 });
});

test('ICR write clears the busy bit (12)', (t) => {
  const acc = machine({ x2apic: true });
  kvmX2apicMsrWrite(acc, 0, 0x830, 0x10f1, 0);
  t.is(kvmX2apicMsrRead(acc, 0, 0x830).lo, 0xf1);
});

test('SELF_IPI produces a fixed edge IPI to self with the vector in 7:0', (t) => {
  const acc = machine({ x2apic: true });
  const r = kvmX2apicMsrWrite(acc, 2, 0x83f, 0x5d, 0);
  t.deepEqual(r, { kind: 'ipi', icr: { vector: 0x5d, deliveryMode: 'fixed', destMode: 'physical', level: false, triggerMode: 'edge', shorthand: 'self', dest: 0 } });
});

test('EOI written with 0 retires the highest in-service vector', (t) => {
  const acc = machine({ x2apic: true });
  setIrr(acc, 0, 0x81);
  kvmApicAckInterrupt(acc, 0, 0x81);
  t.deepEqual(kvmX2apicMsrWrite(acc, 0, 0x80b, 0, 0), { kind: 'eoi', eoi: { vector: 0x81, level: false } });
  t.false(apicTestVector(acc, 0, APIC_ISR, 0x81, 'test'));
});

test('TPR write through MSR 0x808 updates PPR', (t) => {
  const acc = machine({ x2apic: true });
  t.deepEqual(kvmX2apicMsrWrite(acc, 0, 0x808, 0x3c, 0), { kind: 'tpr', ppr: 0x3c, needEvent: false });
  t.is(kvmLapicGetReg(acc, 0, APIC_PROCPRI, 'test'), 0x3c);
  t.deepEqual(kvmX2apicMsrRead(acc, 0, 0x80a), { lo: 0x3c, hi: 0 });
});

test('SPIV write enables the APIC; clearing bit 8 disables it and masks every LVT', (t) => {
  const acc = machine({ x2apic: true, enable: false });
  kvmX2apicMsrWrite(acc, 0, 0x80f, 0x1ff, 0);
  t.true(kvmApicSwEnabled(acc, 0));
  kvmX2apicMsrWrite(acc, 0, 0x832, 0x20040, 0);
  t.is(kvmLapicGetReg(acc, 0, APIC_LVTT, 'test'), 0x20040, 'periodic timer, vector 0x40, unmasked');
  kvmX2apicMsrWrite(acc, 0, 0x80f, 0xff, 0);
  t.false(kvmApicSwEnabled(acc, 0));
  t.is(kvmLapicGetReg(acc, 0, APIC_LVTT, 'test'), 0x20040 | APIC_LVT_MASKED);
});

test('#GP: EOI written with a non-zero value', (t) => {
  const acc = machine({ x2apic: true });
  assertGp(t, () => kvmX2apicMsrWrite(acc, 0, 0x80b, 1, 0), 0x80b);
});

test('#GP: writes to read-only registers (ID, VER, PPR, LDR, ISR, TMR, IRR, TMCCT)', (t) => {
  const acc = machine({ x2apic: true });
  for (const msr of [0x802, 0x803, 0x80a, 0x80d, 0x810, 0x817, 0x818, 0x820, 0x827, 0x839]) assertGp(t, () => kvmX2apicMsrWrite(acc, 0, msr, 0, 0), msr);
});

test('#GP: registers absent in x2APIC (APR 0x809, DFR 0x80E, ICR2 0x831), read or written', (t) => {
  const acc = machine({ x2apic: true });
  for (const msr of [0x809, 0x80e, 0x831]) {
    assertGp(t, () => kvmX2apicMsrWrite(acc, 0, msr, 0, 0), msr);
    assertGp(t, () => kvmX2apicMsrRead(acc, 0, msr), msr);
  }
});

test('#GP: reading the write-only EOI and SELF_IPI', (t) => {
  const acc = machine({ x2apic: true });
  assertGp(t, () => kvmX2apicMsrRead(acc, 0, 0x80b), 0x80b);
  assertGp(t, () => kvmX2apicMsrRead(acc, 0, 0x83f), 0x83f);
});

test('#GP: ICR reserved bits 31:20, 17:16 and 13', (t) => {
  const acc = machine({ x2apic: true });
  for (const bit of [31, 20, 17, 16, 13]) assertGp(t, () => kvmX2apicMsrWrite(acc, 0, 0x830, 0x30 | (1 << bit), 0), 0x830);
});

test('#GP: bits 63:32 set on a non-ICR register; SELF_IPI bits 31:8', (t) => {
  const acc = machine({ x2apic: true });
  assertGp(t, () => kvmX2apicMsrWrite(acc, 0, 0x808, 0, 1), 0x808);
  assertGp(t, () => kvmX2apicMsrWrite(acc, 0, 0x83f, 0x100, 0), 0x83f);
});

test('#GP: x2APIC MSRs while the APIC is in xAPIC mode', (t) => {
  const acc = machine({ x2apic: false });
  assertGp(t, () => kvmX2apicMsrRead(acc, 0, 0x802), 0x802);
  assertGp(t, () => kvmX2apicMsrWrite(acc, 0, 0x808, 0, 0), 0x808);
});
