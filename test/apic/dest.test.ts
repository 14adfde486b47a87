import test from 'ava';
import { APIC_DFR, APIC_LDR } from '../../src/mem/apicdef.js';
import { VCPU } from '../../src/mem/layout.js';
import { apicDestinations, kvmApicCalcX2apicLdr, kvmApicMatchDest, kvmLapicRegWrite, kvmVectorToIndex, type LapicIrq } from '../../src/apic/index.js';
import { machine } from './machine.js';

type Dest = Pick<LapicIrq, 'shorthand' | 'dest' | 'destMode'>;
const phys = (dest: number): Dest => ({ shorthand: 'none', destMode: 'physical', dest });
const logical = (dest: number): Dest => ({ shorthand: 'none', destMode: 'logical', dest });

test('shorthand self targets only the sender', (t) => {
  const acc = machine();
  t.deepEqual(apicDestinations(acc, 2, { shorthand: 'self', destMode: 'physical', dest: 0 }, 4, false), [2]);
});

test('shorthand all-including-self targets every vCPU', (t) => {
  const acc = machine();
  t.deepEqual(apicDestinations(acc, 2, { shorthand: 'all-including-self', destMode: 'physical', dest: 0 }, 4, false), [0, 1, 2, 3]);
});

test('shorthand all-excluding-self targets every vCPU but the sender', (t) => {
  const acc = machine();
  t.deepEqual(apicDestinations(acc, 2, { shorthand: 'all-excluding-self', destMode: 'physical', dest: 0 }, 4, false), [0, 1, 3]);
});

test('shorthands ignore the destination field', (t) => {
  t.deepEqual(apicDestinations(undefined, 1, { shorthand: 'self', destMode: 'logical', dest: 3 }, 4, true), [1]);
});

test('physical destination matches the APIC ID (xAPIC ID in bits 31:24, x2APIC full ID)', (t) => {
  t.deepEqual(apicDestinations(machine(), 0, phys(3), 4, false), [3]);
  t.deepEqual(apicDestinations(machine({ x2apic: true }), 0, phys(1), 4, true), [1]);
  t.deepEqual(apicDestinations(undefined, 0, phys(2), 4, true), [2], 'without an Access: ID = vCPU index');
  t.deepEqual(apicDestinations(machine(), 0, phys(9), 4, false), [], 'no such APIC');
});

test('physical broadcast: 0xFF in xAPIC, 0xFFFFFFFF in x2APIC', (t) => {
  t.deepEqual(apicDestinations(machine(), 1, phys(0xff), 4, false), [0, 1, 2, 3]);
  t.deepEqual(apicDestinations(machine({ x2apic: true }), 1, phys(0xffffffff), 4, true), [0, 1, 2, 3]);
  t.deepEqual(apicDestinations(machine({ x2apic: true }), 1, phys(0xff), 4, true), [], '0xFF is an ordinary ID in x2APIC');
});

test('x2APIC LDR = cluster (id >> 4) << 16 | 1 << (id & 0xF)', (t) => {
  t.is(kvmApicCalcX2apicLdr(0), 0x0000_0001);
  t.is(kvmApicCalcX2apicLdr(5), 0x0000_0020);
  t.is(kvmApicCalcX2apicLdr(17), 0x0001_0002);
  t.is(kvmApicCalcX2apicLdr(0x123), 0x0012_0008);
});

test('x2APIC logical cluster mode: same cluster and intersecting bitmap', (t) => {
  const acc = machine({ x2apic: true, vcpus: 20 });
  t.deepEqual(apicDestinations(acc, 0, logical(0x0000_0006), 20, true), [1, 2], 'cluster 0, bits 1 and 2');
  t.deepEqual(apicDestinations(acc, 0, logical(0x0001_0009), 20, true), [16, 19], 'cluster 1, bits 0 and 3');
  t.deepEqual(apicDestinations(acc, 0, logical(0x0002_0001), 20, true), [], 'cluster 2 is empty');
  t.deepEqual(apicDestinations(acc, 0, logical(0x0001_0000), 20, true), [], 'empty bitmap');
  t.deepEqual(apicDestinations(undefined, 0, logical(0x0001_0002), 20, true), [17], 'derived LDR without an Access');
  t.deepEqual(apicDestinations(acc, 0, logical(0xffffffff), 20, true).length, 20, 'logical broadcast');
});

test('xAPIC logical flat mode matches LDR[31:24] against the 8-bit bitmap', (t) => {
  const acc = machine();
  for (let v = 0; v < 4; v++) kvmLapicRegWrite(acc, v, APIC_LDR, (1 << v) << 24);
  t.deepEqual(apicDestinations(acc, 0, logical(0x0a), 4, false), [1, 3]);
});

test('xAPIC logical cluster mode matches the high nibble and intersects the low nibble', (t) => {
  const acc = machine();
  const ids = [0x11, 0x12, 0x21, 0x24];
  ids.forEach((id, v) => {
    kvmLapicRegWrite(acc, v, APIC_DFR, 0x0fffffff);
    kvmLapicRegWrite(acc, v, APIC_LDR, id << 24);
  });
  t.deepEqual(apicDestinations(acc, 0, logical(0x13), 4, false), [0, 1]);
  t.deepEqual(apicDestinations(acc, 0, logical(0x24), 4, false), [3]);
});

test('xAPIC logical mode without an Access is refused', (t) => {
  t.throws(() => apicDestinations(undefined, 0, logical(1), 4, false), { message: /need an Access/ });
});

test('hardware-disabled APICs are not destinations', (t) => {
  const acc = machine();
  acc.poke(acc.layout.vcpu(3, VCPU.APIC_BASE), 0);
  t.deepEqual(apicDestinations(acc, 0, phys(0xff), 4, false), [0, 1, 2]);
});

test('kvmApicMatchDest: a non-IPI source (-1) matches no self shorthand', (t) => {
  t.false(kvmApicMatchDest(undefined, 0, -1, 'self', 0, 'physical', true));
  t.true(kvmApicMatchDest(undefined, 0, -1, 'all-excluding-self', 0, 'physical', true));
});

test('lowest-priority vector hashing picks the (vector mod n)-th candidate', (t) => {
  t.is(kvmVectorToIndex(0x31, [0, 2, 3]), 2);
  t.is(kvmVectorToIndex(0x30, [0, 2, 3]), 0);
  t.is(kvmVectorToIndex(0x30, []), -1);
});
