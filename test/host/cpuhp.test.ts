/**
 * CPU hotplug (kernel/cpu.c model): callbacks in state order, cpuhp_setup_state on the CPUs
 * already up, rollback when a callback fails, dynamic states, cross-CPU calls to offline CPUs,
 * and the emergency-disable hook of the VMX state.
 */
import test from 'ava';
import { Access, createMachineMemory } from '../../src/mem/access.js';
import type { Addr } from '../../src/mem/layout.js';
import {
  CPUHP,
  PER_CPU_WORDS,
  CPUHP_GLOBAL_WORDS,
  cpuActive,
  cpuDown,
  cpuOnline,
  cpuUp,
  cpuhpBoot,
  cpuhpCpuState,
  cpuhpPlaces,
  cpuhpRemoveState,
  cpuhpSetupState,
  cpuhpSetupStateNocalls,
  onEachCpu,
  onlineCpus,
  smpCallFunctionSingle,
  topologyPhysicalPackageId,
  type CpuhpCallbacks,
  type CpuhpPlaces,
} from '../../src/host/cpuhp.js';
import { ERRNO, errnoName } from '../../src/host/errno.js';
import {
  cpuEmergencyRegisterVirtCallback,
  cpuInVmxOperation,
  cr4SetVmxe,
  nmiShootdownCpus,
  virtCpuBoot,
  vmxoff,
  vmxon,
  type VirtCpuPlaces,
} from '../../src/host/virt-cpu.js';
import { EmuError } from '../../src/errors.js';

const N = 4;

function host(): { acc: Access; pl: CpuhpPlaces; virt: VirtCpuPlaces } {
  const words = CPUHP_GLOBAL_WORDS + 3 * N * PER_CPU_WORDS + 16;
  const mem = createMachineMemory({ vcpus: 1, pcpus: 1, scratchWords: words });
  const acc = new Access(mem, { actor: mem.layout.mainActor, name: 'main' });
  const at = (i: number) => mem.layout.scratch(i) as Addr;
  const pl = cpuhpPlaces(N, at(CPUHP_GLOBAL_WORDS), at(0));
  const virt = { nrCpus: N, cpu: at(CPUHP_GLOBAL_WORDS + N * PER_CPU_WORDS), global: at(CPUHP_GLOBAL_WORDS + 2 * N * PER_CPU_WORDS) };
  cpuhpBoot(acc, pl, (c) => (c < N / 2 ? 0 : 1));
  virtCpuBoot(acc, virt);
  return { acc, pl, virt };
}

/** Callbacks that log "<name>+<cpu>" / "<name>-<cpu>" and fail where told. */
function logging(log: string[], fail: { up?: [number, number]; down?: [number, number] } = {}): CpuhpCallbacks {
  const step = (id: number, name: string) => ({
    name,
    startup: (cpu: number) => {
      log.push(`${name}+${cpu}`);
      return fail.up && fail.up[0] === id && fail.up[1] === cpu ? -ERRNO.EIO : 0;
    },
    teardown: (cpu: number) => {
      log.push(`${name}-${cpu}`);
      return fail.down && fail.down[0] === id && fail.down[1] === cpu ? -ERRNO.EBUSY : 0;
    },
  });
  return new Map([
    [1, step(1, 'kvm')],
    [2, step(2, 'dyn')],
  ]);
}

test('boot: every CPU online, active, at CPUHP_ONLINE, in its package', (t) => {
  const { acc, pl } = host();
  t.deepEqual(onlineCpus(acc, pl), [0, 1, 2, 3]);
  t.true(cpuActive(acc, pl, 3));
  t.is(cpuhpCpuState(acc, pl, 2), CPUHP.ONLINE);
  t.is(topologyPhysicalPackageId(acc, pl, 1), 0);
  t.is(topologyPhysicalPackageId(acc, pl, 2), 1);
});

test('cpuhp_setup_state runs startup on every online CPU; a dynamic state gets the first free slot', (t) => {
  const { acc, pl } = host();
  const log: string[] = [];
  const cbs = logging(log);
  t.is(cpuhpSetupState(acc, pl, CPUHP.AP_KVM_ONLINE, 1, cbs), 0);
  t.deepEqual(log.splice(0), ['kvm+0', 'kvm+1', 'kvm+2', 'kvm+3']);
  t.is(cpuhpSetupState(acc, pl, CPUHP.AP_ONLINE_DYN, 2, cbs), CPUHP.AP_ONLINE_DYN);
  t.is(cpuhpSetupStateNocalls(acc, pl, CPUHP.AP_ONLINE_DYN, 2, cbs), CPUHP.AP_ONLINE_DYN + 1, 'second dynamic state, no calls');
  t.deepEqual(log.splice(0), ['dyn+0', 'dyn+1', 'dyn+2', 'dyn+3']);
  t.is(cpuhpSetupState(acc, pl, CPUHP.AP_KVM_ONLINE, 1, cbs), -ERRNO.EBUSY, 'a static state is taken once');
});

test('cpu_down runs teardowns in descending state order, cpu_up startups in ascending order', (t) => {
  const { acc, pl } = host();
  const log: string[] = [];
  const cbs = logging(log);
  cpuhpSetupStateNocalls(acc, pl, CPUHP.AP_KVM_ONLINE, 1, cbs);
  cpuhpSetupStateNocalls(acc, pl, CPUHP.AP_ONLINE_DYN, 2, cbs);
  t.is(cpuDown(acc, pl, 2, cbs), 0);
  t.deepEqual(log.splice(0), ['dyn-2', 'kvm-2']);
  t.false(cpuOnline(acc, pl, 2));
  t.false(cpuActive(acc, pl, 2));
  t.is(cpuhpCpuState(acc, pl, 2), CPUHP.OFFLINE);
  t.is(cpuDown(acc, pl, 2, cbs), 0, 'already offline');
  t.is(cpuUp(acc, pl, 2, cbs), 0);
  t.deepEqual(log.splice(0), ['kvm+2', 'dyn+2']);
  t.true(cpuOnline(acc, pl, 2));
  t.is(cpuhpCpuState(acc, pl, 2), CPUHP.ONLINE);
});

test('a failing startup rolls the CPU back offline; a failing teardown keeps it online', (t) => {
  const { acc, pl } = host();
  const log: string[] = [];
  cpuhpSetupStateNocalls(acc, pl, CPUHP.AP_KVM_ONLINE, 1, logging(log));
  cpuhpSetupStateNocalls(acc, pl, CPUHP.AP_ONLINE_DYN, 2, logging(log));
  t.is(cpuDown(acc, pl, 3, logging(log)), 0);
  log.length = 0;
  const r = cpuUp(acc, pl, 3, logging(log, { up: [2, 3] }));
  t.is(errnoName(r), '-EIO');
  t.deepEqual(log.splice(0), ['kvm+3', 'dyn+3', 'kvm-3']);
  t.false(cpuOnline(acc, pl, 3));
  t.is(cpuhpCpuState(acc, pl, 3), CPUHP.OFFLINE);
  const d = cpuDown(acc, pl, 1, logging(log, { down: [2, 1] }));
  t.is(errnoName(d), '-EBUSY');
  t.deepEqual(log.splice(0), ['dyn-1']);
  t.true(cpuOnline(acc, pl, 1));
  t.true(cpuActive(acc, pl, 1));
  t.is(cpuhpCpuState(acc, pl, 1), CPUHP.ONLINE);
});

test('cpuhp_setup_state: a startup failing on one CPU tears the earlier CPUs down and leaves the state empty', (t) => {
  const { acc, pl } = host();
  const log: string[] = [];
  const r = cpuhpSetupState(acc, pl, CPUHP.AP_KVM_ONLINE, 1, logging(log, { up: [1, 2] }));
  t.is(r, -ERRNO.EIO);
  t.deepEqual(log.splice(0), ['kvm+0', 'kvm+1', 'kvm+2', 'kvm-0', 'kvm-1']);
  t.is(cpuhpSetupState(acc, pl, CPUHP.AP_KVM_ONLINE, 1, logging(log)), 0, 'the state is free again');
  cpuhpRemoveState(acc, pl, CPUHP.AP_KVM_ONLINE, logging(log));
  t.deepEqual(log.slice(-4), ['kvm-0', 'kvm-1', 'kvm-2', 'kvm-3']);
});

test('the last online CPU cannot go down; IPIs reach online CPUs only', (t) => {
  const { acc, pl } = host();
  const cbs: CpuhpCallbacks = new Map();
  for (const c of [1, 2, 3]) t.is(cpuDown(acc, pl, c, cbs), 0);
  t.is(cpuDown(acc, pl, 0, cbs), -ERRNO.EBUSY);
  t.is(smpCallFunctionSingle(acc, pl, 2, () => 7), -ERRNO.ENXIO);
  t.is(smpCallFunctionSingle(acc, pl, 0, () => 7), 7);
  const ran: number[] = [];
  onEachCpu(acc, pl, (c) => ran.push(c));
  t.deepEqual(ran, [0]);
});

test('VMXON needs CR4.VMXE; emergency shootdown runs the registered callback on every online CPU', (t) => {
  const { acc, pl, virt } = host();
  t.is(vmxon(acc, virt, 1), 'ud');
  for (let c = 0; c < N; c++) {
    cr4SetVmxe(acc, virt, c, true);
    t.is(vmxon(acc, virt, c), 'ok');
  }
  t.is(vmxon(acc, virt, 1), 'vmfail', 'already in VMX operation');
  const hit: number[] = [];
  nmiShootdownCpus(acc, virt, pl, 2, new Map());
  t.true(cpuInVmxOperation(acc, virt, 0), 'no callback registered: nothing happens');
  cpuEmergencyRegisterVirtCallback(acc, virt, 5);
  t.throws(() => cpuEmergencyRegisterVirtCallback(acc, virt, 6), { instanceOf: EmuError });
  nmiShootdownCpus(acc, virt, pl, 2, new Map([[5, (c: number) => {
    hit.push(c);
    vmxoff(acc, virt, c);
  }]]));
  t.deepEqual(hit, [2, 0, 1, 3], 'the crashing CPU first');
  for (let c = 0; c < N; c++) t.false(cpuInVmxOperation(acc, virt, c));
});

test('bad host sizes are EMU_ERR_BAD_PARAM naming nrCpus', (t) => {
  const e = t.throws(() => cpuhpPlaces(0, 0 as Addr, 0 as Addr), { instanceOf: EmuError });
  t.is(e?.code, 'EMU_ERR_BAD_PARAM');
  t.regex(e?.message ?? '', /nrCpus/);
});
