import test from 'ava';
import { PID, PI_DESC_BYTES, VCPU, VM, SRCU_CTR, assertLayout, createLayout, type RegionInfo } from '../../src/mem/layout.js';
import { APIC_ID, APIC_IRR, APIC_TASKPRI } from '../../src/mem/apicdef.js';
import { EmuError } from '../../src/errors.js';

const cfgs = [
  { vcpus: 1, pcpus: 1 },
  { vcpus: 4, pcpus: 2, extraActors: 3 },
  { vcpus: 7, pcpus: 3, ringRecords: 64, scratchWords: 100 },
  { vcpus: 256, pcpus: 2, ringRecords: 16, scratchWords: 0 },
];

for (const cfg of cfgs) {
  test(`regions aligned, inside the buffer and disjoint: ${JSON.stringify(cfg)}`, (t) => {
    const L = createLayout(cfg);
    const want: Record<string, number> = { 'apic-page': 4096, 'pi-desc': 64, vcpu: 64, pcpu: 64, srcu: 64, actor: 64, ring: 64, vm: 64, scratch: 64 };
    for (const r of L.regions) {
      t.is(r.base % r.align, 0, `${r.name} base aligned`);
      t.is(r.stride % r.align, 0, `${r.name} stride aligned`);
      t.true(r.stride >= r.bytes);
      const a = want[r.name];
      if (a !== undefined) t.true(r.align >= a, `${r.name} aligned to at least ${a}`);
      t.true(r.base + r.stride * r.count <= L.totalBytes);
    }
    const spans = L.regions.map((r) => [r.base, r.base + r.stride * r.count] as const).sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < spans.length; i++) t.true(spans[i]![0] >= spans[i - 1]![1], 'no overlap');
    t.is(L.actors, cfg.vcpus + cfg.pcpus + (cfg.extraActors ?? 0) + 1);
    t.is(L.mainActor, L.actors - 1);
    t.is(L.region('apic-page').count, cfg.vcpus);
    t.is(L.region('pi-desc').count, cfg.vcpus);
    t.is(L.region('srcu').count, L.actors);
    // Every vCPU's APIC page and PID sit on their architectural alignment.
    for (const v of [0, cfg.vcpus - 1]) {
      t.is((L.apicReg(v, 0) * 4) % 4096, 0);
      t.is((L.pid(v, PID.PIR) * 4) % 64, 0);
    }
  });
}

test('VM-wide words each own a 64-byte line; line words address inside it', (t) => {
  const L = createLayout({ vcpus: 2, pcpus: 1 });
  const lines = new Set<number>();
  for (const f of Object.values(VM)) {
    const a = L.vm(f);
    t.is((a * 4) % 64, 0);
    lines.add(a);
  }
  t.is(lines.size, Object.values(VM).length);
  t.is(L.vm(VM.KVM_SRCU, 15) - L.vm(VM.KVM_SRCU), 15);
  t.is((L.srcu(3, SRCU_CTR.UNLOCKS1) - L.srcu(3, SRCU_CTR.LOCKS0)) * 4, 12);
});

test('assertLayout throws EMU_ERR_LAYOUT on an overlapping table', (t) => {
  const regions: RegionInfo[] = [
    { name: 'a', count: 2, bytes: 64, stride: 64, align: 64, base: 0 },
    { name: 'b', count: 1, bytes: 64, stride: 64, align: 64, base: 64 },
  ];
  const e = t.throws(() => assertLayout({ regions, totalBytes: 4096 }), { instanceOf: EmuError });
  t.is(e?.code, 'EMU_ERR_LAYOUT');
  t.regex(e?.message ?? '', /a and b overlap/);
  const misaligned: RegionInfo[] = [{ name: 'c', count: 1, bytes: 64, stride: 64, align: 64, base: 32 }];
  t.is(t.throws(() => assertLayout({ regions: misaligned, totalBytes: 4096 }), { instanceOf: EmuError })?.code, 'EMU_ERR_LAYOUT');
  const past: RegionInfo[] = [{ name: 'd', count: 2, bytes: 64, stride: 64, align: 64, base: 0 }];
  t.is(t.throws(() => assertLayout({ regions: past, totalBytes: 100 }), { instanceOf: EmuError })?.code, 'EMU_ERR_LAYOUT');
  t.notThrows(() => assertLayout({ regions: [regions[0]!], totalBytes: 4096 }));
});

for (const [param, cfg] of [
  ['vcpus', { vcpus: 0, pcpus: 1 }],
  ['vcpus', { vcpus: 257, pcpus: 1 }],
  ['vcpus', { vcpus: 1.5, pcpus: 1 }],
  ['pcpus', { vcpus: 1, pcpus: 0 }],
  ['ringRecords', { vcpus: 1, pcpus: 1, ringRecords: 100 }],
  ['extraActors', { vcpus: 1, pcpus: 1, extraActors: -1 }],
] as const) {
  test(`bad parameter ${JSON.stringify(cfg)} throws EMU_ERR_BAD_PARAM naming ${param}`, (t) => {
    const e = t.throws(() => createLayout(cfg), { instanceOf: EmuError });
    t.is(e?.code, 'EMU_ERR_BAD_PARAM');
    t.is(e?.detail?.['param'], param);
    t.true(e?.message.includes(param));
  });
}

test('APIC register addresses follow the architectural offsets', (t) => {
  const L = createLayout({ vcpus: 3, pcpus: 1 });
  for (let v = 0; v < 3; v++) {
    const base = L.apicReg(v, 0);
    t.is(L.apicReg(v, 0x200) - base, 0x200 / 4);
    t.is(L.apicReg(v, APIC_ID) - base, APIC_ID / 4);
    t.is(L.apicReg(v, APIC_TASKPRI) - base, APIC_TASKPRI / 4);
    t.is((L.apicBitmapWord(v, APIC_IRR, 7) - base) * 4, 0x270);
    t.is((L.apicBitmapWord(v, APIC_IRR, 0) - base) * 4, 0x200);
    if (v > 0) t.is((base - L.apicReg(v - 1, 0)) * 4, 4096);
  }
});

test('posted-interrupt descriptor words: PIR 0..7 then CONTROL at byte 32, NDST at 36', (t) => {
  const L = createLayout({ vcpus: 2, pcpus: 1 });
  for (let v = 0; v < 2; v++) {
    const base = L.pid(v, PID.PIR);
    for (let i = 0; i < 8; i++) t.is((L.pid(v, PID.PIR, i) - base) * 4, i * 4);
    t.is((L.pid(v, PID.CONTROL) - base) * 4, 32);
    t.is((L.pid(v, PID.NDST) - base) * 4, 36);
  }
  t.is((L.pid(1, PID.PIR) - L.pid(0, PID.PIR)) * 4, PI_DESC_BYTES);
  t.is((L.vcpu(1, VCPU.MODE) - L.vcpu(0, VCPU.MODE)) * 4, 128, 'two lines per vCPU: control words, then NMI state and exit information');
});
