import test from 'ava';
import { Access, createMachineMemory } from '../../src/mem/access.js';
import { VCPU } from '../../src/mem/layout.js';
import {
  APIC_DFR,
  APIC_ID,
  APIC_IRR,
  APIC_LDR,
  APIC_LVR,
  APIC_PROCPRI,
  APIC_SPIV,
  APIC_TASKPRI,
  APIC_VERSION_KVM,
  APIC_LVT_MASKED,
} from '../../src/mem/apicdef.js';
import { APIC_LVTS, apicFindHighestVector, apicSoftwareEnable, kvmApicSwEnabled, kvmLapicGetBase, kvmLapicGetReg, kvmLapicReset, kvmLapicSetIrr } from '../../src/apic/index.js';

function fresh(): Access {
  return new Access(createMachineMemory({ vcpus: 4, pcpus: 2 }), { actor: 0, name: 'test' });
}

test('reset (xAPIC, BSP): APIC_BASE, ID << 24, version, masked LVTs, flat DFR, SPIV 0xFF', (t) => {
  const acc = fresh();
  kvmLapicReset(acc, 0, { x2apic: false, bsp: true });
  kvmLapicReset(acc, 2, { x2apic: false, bsp: false });
  t.is(kvmLapicGetBase(acc, 0), (0xfee00000 | 0x800 | 0x100) >>> 0);
  t.is(kvmLapicGetBase(acc, 2), (0xfee00000 | 0x800) >>> 0);
  t.is(kvmLapicGetReg(acc, 2, APIC_ID, 'test'), 0x0200_0000);
  t.is(kvmLapicGetReg(acc, 2, APIC_LVR, 'test'), APIC_VERSION_KVM);
  for (const lvt of APIC_LVTS) t.is(kvmLapicGetReg(acc, 2, lvt, 'test'), APIC_LVT_MASKED);
  t.is(kvmLapicGetReg(acc, 2, APIC_DFR, 'test'), 0xffffffff);
  t.is(kvmLapicGetReg(acc, 2, APIC_SPIV, 'test'), 0xff);
  t.is(kvmLapicGetReg(acc, 2, APIC_LDR, 'test'), 0);
  t.false(kvmApicSwEnabled(acc, 2), 'software-disabled at reset');
});

test('reset (x2APIC): EXTD set, ID = vCPU index, LDR derived', (t) => {
  const acc = fresh();
  kvmLapicReset(acc, 3, { x2apic: true, bsp: false });
  t.is(kvmLapicGetBase(acc, 3), (0xfee00000 | 0x800 | 0x400) >>> 0);
  t.is(kvmLapicGetReg(acc, 3, APIC_ID, 'test'), 3);
  t.is(kvmLapicGetReg(acc, 3, APIC_LDR, 'test'), 1 << 3);
});

test('reset clears IRR/ISR/TMR, TPR and PPR', (t) => {
  const acc = fresh();
  kvmLapicReset(acc, 1, { x2apic: false, bsp: false });
  kvmLapicSetIrr(acc, 1, 0x77);
  acc.writeOnce(acc.layout.apicReg(1, APIC_TASKPRI), 0x40, 'test');
  acc.writeOnce(acc.layout.apicReg(1, APIC_PROCPRI), 0x40, 'test');
  kvmLapicReset(acc, 1, { x2apic: false, bsp: false });
  t.is(apicFindHighestVector(acc, 1, APIC_IRR), -1);
  t.is(kvmLapicGetReg(acc, 1, APIC_TASKPRI, 'test'), 0);
  t.is(kvmLapicGetReg(acc, 1, APIC_PROCPRI, 'test'), 0);
  t.is(acc.peek(acc.layout.vcpu(1, VCPU.IRR_PENDING)), 1, 'irr_pending set by kvm_apic_update_apicv');
});

test('apicSoftwareEnable sets SPIV bit 8 and the spurious vector', (t) => {
  const acc = fresh();
  kvmLapicReset(acc, 0, { x2apic: false, bsp: true });
  apicSoftwareEnable(acc, 0, 0xef);
  t.true(kvmApicSwEnabled(acc, 0));
  t.is(kvmLapicGetReg(acc, 0, APIC_SPIV, 'test'), 0x1ef);
});
