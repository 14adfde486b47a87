/**
 * pCPU hotplug in a running machine: cpu_down drains the pCPU (its vCPUs migrate at their next
 * scheduling point), the last active pCPU is refused with -EBUSY, cpu_up brings it back; nothing
 * is lost meanwhile, for every vendor.
 */
import test from 'ava';
import { Machine } from '../../src/runtime/machine.js';
import { closeSharedPool } from '../../src/runtime/pool.js';
import { Access, createMachineMemory } from '../../src/mem/access.js';
import { PCPU } from '../../src/mem/layout.js';
import { cpuActive, cpuDown, cpuOnline, cpuUp, selectFallbackRq } from '../../src/actors/hotplug.js';
import { VENDORS } from '../../src/kvm/vendors.js';
import type { EmuError } from '../../src/errors.js';

test.after.always(async () => {
  await closeSharedPool();
});

function machineMem(pcpus: number): Access {
  const mem = createMachineMemory({ vcpus: 2, pcpus });
  const acc = new Access(mem, { actor: mem.layout.mainActor, name: 'main', deadlineMs: 500 });
  for (let p = 0; p < pcpus; p++) {
    acc.writeOnce(mem.layout.pcpu(p, PCPU.ONLINE), 1, 't');
    acc.writeOnce(mem.layout.pcpu(p, PCPU.ACTIVE), 1, 't');
    acc.writeOnce(mem.layout.pcpu(p, PCPU.CURRENT_VCPU), -1, 't');
  }
  return acc;
}

test('cpu_down / cpu_up on an idle machine: fallback placement, callbacks in order, -EBUSY for the last pCPU', (t) => {
  const acc = machineMem(3);
  const calls: string[] = [];
  t.true(cpuDown(acc, 1, { teardown: (p) => calls.push(`down${p}`) }));
  t.false(cpuOnline(acc, 1));
  t.false(cpuActive(acc, 1));
  t.is(selectFallbackRq(acc, 1), 2, 'a task preferring pCPU 1 runs on the next active pCPU');
  t.false(cpuDown(acc, 1), 'already offline');
  t.true(cpuDown(acc, 2));
  const e = t.throws(() => cpuDown(acc, 0)) as EmuError;
  t.is(e.code, 'EMU_ERR_EBUSY');
  t.true(cpuActive(acc, 0), 'a refused offline leaves the pCPU active');
  t.true(cpuUp(acc, 1, { startup: (p) => calls.push(`up${p}`) }));
  t.true(cpuActive(acc, 1));
  t.deepEqual(calls, ['down1', 'up1']);
  t.is((t.throws(() => cpuDown(acc, 7)) as EmuError).code, 'EMU_ERR_BAD_PARAM');
});

test('a refusing teardown callback (e.g. TDX: last CPU of a package) keeps the pCPU online and active', (t) => {
  const acc = machineMem(2);
  t.throws(() =>
    cpuDown(acc, 1, {
      teardown: () => {
        throw new Error('-EBUSY from the TDX offline callback');
      },
    }),
  );
  t.true(cpuOnline(acc, 1));
  t.true(cpuActive(acc, 1));
});

for (const vendor of VENDORS) {
  test.serial(`${vendor}: offline pCPU 1 mid-storm, vCPUs migrate, nothing lost; online again`, async (t) => {
    const h = Machine.create({ vendor, vcpus: 4, pcpus: 2 }).run({ seconds: 30, seed: 9 });
    await new Promise<void>((resolve) => {
      const sub = h.progress$.subscribe(() => {
        sub.unsubscribe();
        resolve();
      });
    });
    t.true(await h.setPcpuOnline(1, false));
    const snap = h.snapshot();
    t.false(snap.pcpus[1]!.online);
    t.false(snap.pcpus[1]!.active);
    t.is(snap.pcpus[1]!.currentVcpu, -1, 'no vCPU runs on the offline pCPU');
    t.true(snap.vcpus.every((v) => v.loadedOn !== 1));
    await t.throwsAsync(h.setPcpuOnline(0, false), { code: 'EMU_ERR_EBUSY' } as never);
    t.false(await h.setPcpuOnline(1, false), 'already offline');
    // Stay offline until vCPUs 1 and 3 (homed on pCPU 1) have been loaded on pCPU 0 (vcpu->cpu),
    // however busy the host is; the run is long enough and is stopped once that is seen.
    await new Promise<void>((resolve) => {
      const sub = h.progress$.subscribe({
        next: () => {
          const s = h.snapshot();
          if (s.vcpus[1]!.cpu !== 0 || s.vcpus[3]!.cpu !== 0) return;
          sub.unsubscribe();
          resolve();
        },
        // The run ended first: the assertions below report it.
        complete: resolve,
      });
    });
    t.true(h.snapshot().vcpus.every((v) => v.loadedOn !== 1));
    t.true(await h.setPcpuOnline(1, true));
    h.stop();
    const r = await h.result;
    t.true(r.ok, r.failure?.message ?? JSON.stringify(r.violations.slice(0, 2)));
    t.is(r.accounting.totals.lost, 0);
    t.true((r.accounting.misc.migrations ?? 0) >= 2, 'the vCPUs homed on pCPU 1 moved away');
  });
}

test.serial('TDX machine: offline runs the cpuhp teardown (tdx_offline_cpu, VMXOFF); online runs VMXON and LP.INIT; the last CPU of a package is refused while the TD holds its key', async (t) => {
  const h = Machine.create({ vendor: 'tdx', vcpus: 4, pcpus: 3, packages: 2 }).run({ seconds: 120, seed: 4 });
  await new Promise<void>((resolve) => {
    const sub = h.progress$.subscribe(() => {
      sub.unsubscribe();
      resolve();
    });
  });
  const s0 = h.snapshot();
  t.deepEqual(s0.hostVirt, { kvmUsageCount: 2, tdxModuleStatus: 'INITIALIZED', nrConfiguredHkid: 1 });
  t.true(s0.pcpus.every((p) => p.host?.virt?.vmxe === true && p.host.virt.lpInitialized));
  // Packages: {0, 1} and {2}. pCPU 2 is the only CPU of package 1.
  await t.throwsAsync(h.setPcpuOnline(2, false), { code: 'EMU_ERR_EBUSY', message: /tdx_offline_cpu refused with -EBUSY/ } as never);
  t.true(h.snapshot().pcpus[2]!.active, 'a refused offline leaves the pCPU active');
  t.true(await h.setPcpuOnline(1, false));
  const s1 = h.snapshot();
  t.false(s1.pcpus[1]!.host!.virt!.vmxe, 'KVM offline callback: VMXOFF');
  t.true(s1.pcpus[1]!.host!.virt!.lpInitialized, 'LP.INIT is sticky in the module');
  t.true(await h.setPcpuOnline(1, true));
  t.true(h.snapshot().pcpus[1]!.host!.virt!.vmxe, 'online: VMXON again');
  h.stop();
  const r = await h.result;
  t.true(r.ok, r.failure?.message ?? JSON.stringify(r.violations.slice(0, 2)));
  t.is(r.accounting.totals.lost, 0);
});
