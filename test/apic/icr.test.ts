import test from 'ava';
import { DELIVERY_MODES, SHORTHANDS, decodeIcr, encodeIcr } from '../../src/apic/index.js';

test('ICR decode: every delivery mode from bits 10:8', (t) => {
  DELIVERY_MODES.forEach((mode, i) => {
    t.is(decodeIcr((i << 8) | 0x30, 0, false).deliveryMode, mode);
  });
  t.deepEqual([...DELIVERY_MODES], ['fixed', 'lowest', 'smi', 'remrd', 'nmi', 'init', 'startup', 'extint']);
});

test('ICR decode: destination mode bit 11', (t) => {
  t.is(decodeIcr(0x0030, 0, false).destMode, 'physical');
  t.is(decodeIcr(0x0830, 0, false).destMode, 'logical');
});

test('ICR decode: all four shorthands from bits 19:18', (t) => {
  t.is(decodeIcr(0x00000, 0, true).shorthand, 'none');
  t.is(decodeIcr(0x40000, 0, true).shorthand, 'self');
  t.is(decodeIcr(0x80000, 0, true).shorthand, 'all-including-self');
  t.is(decodeIcr(0xc0000, 0, true).shorthand, 'all-excluding-self');
});

test('ICR decode: vector, level bit 14, trigger bit 15', (t) => {
  const icr = decodeIcr(0xc4fd, 0, false);
  t.is(icr.vector, 0xfd);
  t.true(icr.level);
  t.is(icr.triggerMode, 'level');
  t.is(icr.deliveryMode, 'nmi');
  const edge = decodeIcr(0x00fd, 0, false);
  t.false(edge.level);
  t.is(edge.triggerMode, 'edge');
});

test('ICR decode: xAPIC destination is ICR2[31:24], x2APIC destination is bits 63:32', (t) => {
  t.is(decodeIcr(0x30, 0x0300_0000, false).dest, 3);
  t.is(decodeIcr(0x30, 0xff00_0000, false).dest, 0xff);
  t.is(decodeIcr(0x30, 0x1234_5678, true).dest, 0x1234_5678);
  t.is(decodeIcr(0x30, 0xffff_ffff, true).dest, 0xffff_ffff);
});

test('encodeIcr is the inverse of decodeIcr', (t) => {
  for (const x2apic of [false, true]) {
    for (const deliveryMode of DELIVERY_MODES) {
      for (const shorthand of SHORTHANDS) {
        const icr = { vector: 0xa7, deliveryMode, destMode: 'logical', level: true, triggerMode: 'level', shorthand, dest: x2apic ? 0x20004 : 0x42 } as const;
        const { lo, hi } = encodeIcr(icr, x2apic);
        t.deepEqual(decodeIcr(lo, hi, x2apic), icr);
      }
    }
  }
});

test('encodeIcr defaults: fixed, physical, edge, no shorthand, dest 0', (t) => {
  t.deepEqual(encodeIcr({ vector: 0x31 }, false), { lo: 0x31, hi: 0 });
  t.deepEqual(encodeIcr({ vector: 0x31, dest: 2 }, false), { lo: 0x31, hi: 0x0200_0000 });
});
