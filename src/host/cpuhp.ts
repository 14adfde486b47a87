/**
 * CPU hotplug as kernel/cpu.c runs it: per-CPU online/active masks and hotplug state, the
 * hotplug lock (cpus_read_lock / cpus_write_lock), cpuhp states with callbacks (startup in
 * ascending state order when a CPU comes up, teardown in descending order when it goes down,
 * rollback on failure), cpuhp_setup_state running the startup callback on every CPU already
 * past the state, the package topology, and the cross-CPU calls (on_each_cpu,
 * smp_call_function_single, smp_call_on_cpu) that run code on another CPU.
 *
 * A CPU of the modelled host is not a thread: whoever runs code "on CPU c" (a cpuhp callback, an
 * IPI handler, a task scheduled there) takes c's execution lock for as long as that code runs
 * with interrupts off ({@link onCpu}), so two pieces of code never run on one CPU at once.
 *
 * Per-CPU line ({@link CPUHP_CPU}, one 64-byte line per CPU, {@link PER_CPU_WORDS} apart):
 * ```
 *  +0 ONLINE  cpu_online_mask bit      +1 ACTIVE  cpu_active_mask bit
 *  +2 STATE   per_cpu(cpuhp_state).state (the last state this CPU reached)
 *  +3 PACKAGE topology_physical_package_id   +4 PRESENT cpu_present_mask bit
 *  +8 EXEC_LOCK (2 words) the CPU's interrupts-off execution (emulator)
 * ```
 * Global area ({@link CPUHP_GLOBAL}): cpu_hotplug_lock (a line), cpuhp_state_mutex, and one word
 * per state naming the installed callbacks (0 = none).
 */
import type { Access } from '../mem/access.js';
import type { Addr } from '../mem/layout.js';
import { downRead, downWrite, mutexLock, mutexUnlock, spinLock, spinUnlock, upRead, upWrite, wordAt } from '../sync/index.js';
import { EmuError, badParam } from '../errors.js';
import { ERRNO } from './errno.js';

/** Words between two CPUs' lines in every host per-CPU table (one 64-byte line per CPU). */
export const PER_CPU_WORDS = 16;
/** Most CPUs a host model supports (masks are 32-bit words). */
export const MAX_HOST_CPUS = 31;

/**
 * The hotplug states modelled, in the order of include/linux/cpuhotplug.h (numbers compacted):
 * a CPU comes up through them in ascending order and goes down in descending order.
 * @kvm include/linux/cpuhotplug.h enum cpuhp_state (CPUHP_OFFLINE, CPUHP_BRINGUP_CPU, CPUHP_AP_ONLINE_IDLE, CPUHP_AP_KVM_ONLINE, CPUHP_AP_ONLINE_DYN, CPUHP_AP_ACTIVE, CPUHP_ONLINE)
 */
export const CPUHP = {
  OFFLINE: 0,
  /** The control CPU kicks the AP (INIT-SIPI). */
  BRINGUP_CPU: 1,
  /** The AP runs: start_secondary() sets it in cpu_online_mask (set_cpu_online). */
  AP_ONLINE_IDLE: 2,
  /** KVM: "kvm/cpu:online" (VMXON on the way up, VMXOFF on the way down). */
  AP_KVM_ONLINE: 3,
  /** First dynamically allocated state ("kvm/cpu/tdx:online" takes one). */
  AP_ONLINE_DYN: 4,
  /** Last dynamically allocated state. */
  AP_ONLINE_DYN_END: 7,
  /** sched_cpu_activate: tasks may run here from now on (cpu_active_mask). */
  AP_ACTIVE: 8,
  ONLINE: 9,
} as const;
const NR_STATES = CPUHP.ONLINE + 1;

/** Word offsets in a CPU's hotplug line. */
export const CPUHP_CPU = { ONLINE: 0, ACTIVE: 1, STATE: 2, PACKAGE: 3, PRESENT: 4, EXEC_LOCK: 8 } as const;
/** Word offsets of the global hotplug words: the hotplug lock's line, the state mutex, the state table. */
export const CPUHP_GLOBAL = { HOTPLUG_LOCK: 0, STATE_MUTEX: 16, STATES: 32 } as const;
/** Words of the global hotplug area. */
export const CPUHP_GLOBAL_WORDS = CPUHP_GLOBAL.STATES + PER_CPU_WORDS;

/**
 * Where the hotplug state of a host lives: the per-CPU lines and the global area.
 * @kvm kernel/cpu.c cpuhp_state (per CPU), cpu_hotplug_lock, cpuhp_state_mutex, cpuhp_hp_states
 */
export interface CpuhpPlaces {
  readonly nrCpus: number;
  /** Line of CPU 0 ({@link CPUHP_CPU}); CPU c's line is {@link PER_CPU_WORDS} * c further. */
  readonly cpu: Addr;
  /** The global area ({@link CPUHP_GLOBAL}). */
  readonly global: Addr;
}

/**
 * One cpuhp state's callbacks, as registered with cpuhp_setup_state: each gets the CPU and runs on
 * it; a non-zero return (a negated errno) fails the transition.
 * @kvm include/linux/cpuhotplug.h struct cpuhp_step (startup.single, teardown.single)
 */
export interface CpuhpStep {
  readonly name: string;
  readonly startup?: (cpu: number) => number;
  readonly teardown?: (cpu: number) => number;
}

/**
 * The callbacks every actor knows, by id (the kernel's text: the same in every actor). A state's
 * word in the global area holds the id of the callbacks installed there.
 * @emulator
 */
export type CpuhpCallbacks = ReadonlyMap<number, CpuhpStep>;

/**
 * Check and name where a host's hotplug state lives (per-CPU lines at `cpu`, global area at
 * `global`). Throws EMU_ERR_BAD_PARAM naming `nrCpus` when out of range.
 * @emulator
 */
export function cpuhpPlaces(nrCpus: number, cpu: Addr, global: Addr): CpuhpPlaces {
  if (!Number.isInteger(nrCpus) || nrCpus < 1 || nrCpus > MAX_HOST_CPUS) throw badParam('nrCpus', `${nrCpus} (must be an integer in 1..${MAX_HOST_CPUS})`);
  return { nrCpus, cpu, global };
}

/**
 * Word `field` of CPU `cpu` in a per-CPU table whose CPU 0 line starts at `base`.
 * @emulator
 */
export function perCpuWord(base: Addr, cpu: number, field: number): Addr {
  return (base + cpu * PER_CPU_WORDS + field) as Addr;
}

function cpuWord(pl: CpuhpPlaces, cpu: number, field: number): Addr {
  return perCpuWord(pl.cpu, cpu, field);
}

function stateWord(pl: CpuhpPlaces, state: number): Addr {
  return wordAt(pl.global, CPUHP_GLOBAL.STATES + state);
}

/**
 * The host as booted: every CPU present and online, in its package, at CPUHP_ONLINE, and no
 * hotplug callbacks installed.
 * @kvm kernel/cpu.c bringup_nonboot_cpus (all present CPUs brought to CPUHP_ONLINE at boot)
 */
export function cpuhpBoot(acc: Access, pl: CpuhpPlaces, packageOf: (cpu: number) => number): void {
  for (let c = 0; c < pl.nrCpus; c++) {
    acc.writeOnce(cpuWord(pl, c, CPUHP_CPU.PRESENT), 1, 'cpuhp:boot');
    acc.writeOnce(cpuWord(pl, c, CPUHP_CPU.PACKAGE), packageOf(c), 'cpuhp:boot');
    acc.writeOnce(cpuWord(pl, c, CPUHP_CPU.ONLINE), 1, 'cpuhp:boot');
    acc.writeOnce(cpuWord(pl, c, CPUHP_CPU.ACTIVE), 1, 'cpuhp:boot');
    acc.writeOnce(cpuWord(pl, c, CPUHP_CPU.STATE), CPUHP.ONLINE, 'cpuhp:boot');
  }
  for (let s = 0; s < NR_STATES; s++) acc.writeOnce(stateWord(pl, s), 0, 'cpuhp:boot');
}

/**
 * cpu_online(cpu).
 * @kvm include/linux/cpumask.h cpu_online
 */
export function cpuOnline(acc: Access, pl: CpuhpPlaces, cpu: number): boolean {
  return acc.readOnce(cpuWord(pl, cpu, CPUHP_CPU.ONLINE), 'cpuhp:online-read') !== 0;
}

/**
 * cpu_active(cpu): the scheduler may run tasks there.
 * @kvm include/linux/cpumask.h cpu_active
 */
export function cpuActive(acc: Access, pl: CpuhpPlaces, cpu: number): boolean {
  return acc.readOnce(cpuWord(pl, cpu, CPUHP_CPU.ACTIVE), 'cpuhp:active-read') !== 0;
}

/**
 * The hotplug state the CPU has reached.
 * @kvm kernel/cpu.c per_cpu(cpuhp_state, cpu).state
 */
export function cpuhpCpuState(acc: Access, pl: CpuhpPlaces, cpu: number): number {
  return acc.readOnce(cpuWord(pl, cpu, CPUHP_CPU.STATE), 'cpuhp:state-read');
}

/**
 * The CPU's physical package (fixed at boot).
 * @kvm arch/x86/include/asm/topology.h topology_physical_package_id
 */
export function topologyPhysicalPackageId(acc: Access, pl: CpuhpPlaces, cpu: number): number {
  return acc.readOnce(cpuWord(pl, cpu, CPUHP_CPU.PACKAGE), 'cpuhp:package-read');
}

/**
 * The online CPUs now, in CPU order (a racy walk of the mask unless the hotplug lock is held).
 * @kvm include/linux/cpumask.h for_each_online_cpu
 */
export function onlineCpus(acc: Access, pl: CpuhpPlaces): number[] {
  const out: number[] = [];
  for (let c = 0; c < pl.nrCpus; c++) if (cpuOnline(acc, pl, c)) out.push(c);
  return out;
}

/**
 * Run `fn` as code executing on `cpu` with interrupts disabled: at most one such piece of code
 * runs on a CPU at a time (the CPU's execution lock is held around it). Not re-entrant.
 * @emulator
 */
export function onCpu<T>(acc: Access, pl: CpuhpPlaces, cpu: number, fn: () => T): T {
  const lock = cpuWord(pl, cpu, CPUHP_CPU.EXEC_LOCK);
  spinLock(acc, lock, 'cpu:irq-off');
  try {
    return fn();
  } finally {
    spinUnlock(acc, lock, 'cpu:irq-off');
  }
}

/**
 * Run `fn` on `cpu` through an IPI and wait for it: -ENXIO if the CPU is not online (checked on
 * the target, which services IPIs only while online), else fn's result.
 * @kvm kernel/smp.c smp_call_function_single (smp_call_on_cpu has the same contract)
 */
export function smpCallFunctionSingle(acc: Access, pl: CpuhpPlaces, cpu: number, fn: () => number): number {
  return onCpu(acc, pl, cpu, () => (cpuOnline(acc, pl, cpu) ? fn() : -ERRNO.ENXIO));
}

/**
 * Run `fn` on every online CPU (one at a time, each on its CPU) and wait.
 * @kvm kernel/smp.c on_each_cpu
 */
export function onEachCpu(acc: Access, pl: CpuhpPlaces, fn: (cpu: number) => void): void {
  for (let c = 0; c < pl.nrCpus; c++) {
    if (cpuOnline(acc, pl, c)) {
      smpCallFunctionSingle(acc, pl, c, () => {
        fn(c);
        return 0;
      });
    }
  }
}

const HOTPLUG_LOCK = 'cpu_hotplug_lock';

/**
 * Take the hotplug lock for read: no CPU comes or goes until cpus_read_unlock.
 * @kvm kernel/cpu.c cpus_read_lock
 */
export function cpusReadLock(acc: Access, pl: CpuhpPlaces): void {
  downRead(acc, wordAt(pl.global, CPUHP_GLOBAL.HOTPLUG_LOCK), HOTPLUG_LOCK);
}

/**
 * Release the read side of the hotplug lock.
 * @kvm kernel/cpu.c cpus_read_unlock
 */
export function cpusReadUnlock(acc: Access, pl: CpuhpPlaces): void {
  upRead(acc, wordAt(pl.global, CPUHP_GLOBAL.HOTPLUG_LOCK), HOTPLUG_LOCK);
}

/**
 * Run `fn` with the hotplug lock held for read (cpus_read_lock(); fn(); cpus_read_unlock()).
 * @kvm kernel/cpu.c cpus_read_lock / cpus_read_unlock
 */
export function withCpusReadLock<T>(acc: Access, pl: CpuhpPlaces, fn: () => T): T {
  cpusReadLock(acc, pl);
  try {
    return fn();
  } finally {
    cpusReadUnlock(acc, pl);
  }
}

/**
 * Take the hotplug lock for write (a CPU transition in progress).
 * @kvm kernel/cpu.c cpus_write_lock
 */
export function cpusWriteLock(acc: Access, pl: CpuhpPlaces): void {
  downWrite(acc, wordAt(pl.global, CPUHP_GLOBAL.HOTPLUG_LOCK), HOTPLUG_LOCK);
}

/**
 * Release the write side of the hotplug lock.
 * @kvm kernel/cpu.c cpus_write_unlock
 */
export function cpusWriteUnlock(acc: Access, pl: CpuhpPlaces): void {
  upWrite(acc, wordAt(pl.global, CPUHP_GLOBAL.HOTPLUG_LOCK), HOTPLUG_LOCK);
}

/** Run the startup (bringup) or teardown callback installed at `state` on `cpu`; 0 if none. */
function invokeCallback(acc: Access, pl: CpuhpPlaces, cbs: CpuhpCallbacks, cpu: number, state: number, bringup: boolean): number {
  const id = acc.readOnce(stateWord(pl, state), 'cpuhp:callbacks-read');
  if (id === 0) return 0;
  const step = cbs.get(id);
  if (!step) throw new EmuError('EMU_ERR_INTERNAL', `${acc.name}: cpuhp state ${state} names callbacks #${id}, which this actor does not know`, { actor: acc.name });
  const fn = bringup ? step.startup : step.teardown;
  if (!fn) return 0;
  return onCpu(acc, pl, cpu, () => fn(cpu));
}

/**
 * Install callbacks `id` at `state` and, with `invoke`, run the startup callback on every CPU that
 * has already reached the state; the caller holds the hotplug lock. For CPUHP_AP_ONLINE_DYN the
 * first free dynamic state is allocated and returned; otherwise 0 is returned. If the startup
 * callback fails on a CPU, the teardown callback runs on the CPUs done before it and the state is
 * left empty; the error is returned.
 * @kvm kernel/cpu.c __cpuhp_setup_state_cpuslocked (cpuhp_issue_call, cpuhp_rollback_install)
 */
export function cpuhpSetupStateCpuslocked(acc: Access, pl: CpuhpPlaces, state: number, id: number, cbs: CpuhpCallbacks, invoke = true): number {
  const mutex = wordAt(pl.global, CPUHP_GLOBAL.STATE_MUTEX);
  mutexLock(acc, mutex, 'cpuhp_state_mutex');
  try {
    let st = state;
    if (state === CPUHP.AP_ONLINE_DYN) {
      st = -1;
      for (let s = CPUHP.AP_ONLINE_DYN; s <= CPUHP.AP_ONLINE_DYN_END && st < 0; s++) if (acc.readOnce(stateWord(pl, s), 'cpuhp:dyn-alloc') === 0) st = s;
      if (st < 0) return -ERRNO.EBUSY;
    } else if (acc.readOnce(stateWord(pl, st), 'cpuhp:callbacks-read') !== 0) {
      return -ERRNO.EBUSY;
    }
    acc.writeOnce(stateWord(pl, st), id, 'cpuhp:callbacks-store');
    if (invoke) {
      for (let c = 0; c < pl.nrCpus; c++) {
        if (cpuhpCpuState(acc, pl, c) < st) continue;
        const r = invokeCallback(acc, pl, cbs, c, st, true);
        if (r !== 0) {
          for (let d = 0; d < c; d++) if (cpuhpCpuState(acc, pl, d) >= st) invokeCallback(acc, pl, cbs, d, st, false);
          acc.writeOnce(stateWord(pl, st), 0, 'cpuhp:callbacks-store');
          return r;
        }
      }
    }
    return state === CPUHP.AP_ONLINE_DYN ? st : 0;
  } finally {
    mutexUnlock(acc, mutex, 'cpuhp_state_mutex');
  }
}

/**
 * cpuhp_setup_state: take the hotplug lock for read around {@link cpuhpSetupStateCpuslocked}.
 * @kvm include/linux/cpuhotplug.h cpuhp_setup_state (__cpuhp_setup_state: cpus_read_lock)
 */
export function cpuhpSetupState(acc: Access, pl: CpuhpPlaces, state: number, id: number, cbs: CpuhpCallbacks): number {
  cpusReadLock(acc, pl);
  try {
    return cpuhpSetupStateCpuslocked(acc, pl, state, id, cbs, true);
  } finally {
    cpusReadUnlock(acc, pl);
  }
}

/**
 * Install callbacks without running them on the CPUs already online.
 * @kvm include/linux/cpuhotplug.h cpuhp_setup_state_nocalls
 */
export function cpuhpSetupStateNocalls(acc: Access, pl: CpuhpPlaces, state: number, id: number, cbs: CpuhpCallbacks): number {
  cpusReadLock(acc, pl);
  try {
    return cpuhpSetupStateCpuslocked(acc, pl, state, id, cbs, false);
  } finally {
    cpusReadUnlock(acc, pl);
  }
}

/**
 * Remove the callbacks at `state` (caller holds the hotplug lock); with `invoke`, first run the
 * teardown callback on every CPU that has reached the state.
 * @kvm kernel/cpu.c __cpuhp_remove_state_cpuslocked
 */
export function cpuhpRemoveStateCpuslocked(acc: Access, pl: CpuhpPlaces, state: number, cbs: CpuhpCallbacks, invoke = true): void {
  const mutex = wordAt(pl.global, CPUHP_GLOBAL.STATE_MUTEX);
  mutexLock(acc, mutex, 'cpuhp_state_mutex');
  try {
    if (invoke) for (let c = 0; c < pl.nrCpus; c++) if (cpuhpCpuState(acc, pl, c) >= state) invokeCallback(acc, pl, cbs, c, state, false);
    acc.writeOnce(stateWord(pl, state), 0, 'cpuhp:callbacks-store');
  } finally {
    mutexUnlock(acc, mutex, 'cpuhp_state_mutex');
  }
}

/**
 * cpuhp_remove_state: teardown on every CPU at the state, under the hotplug lock.
 * @kvm include/linux/cpuhotplug.h cpuhp_remove_state
 */
export function cpuhpRemoveState(acc: Access, pl: CpuhpPlaces, state: number, cbs: CpuhpCallbacks): void {
  cpusReadLock(acc, pl);
  try {
    cpuhpRemoveStateCpuslocked(acc, pl, state, cbs, true);
  } finally {
    cpusReadUnlock(acc, pl);
  }
}

/** One state of a CPU coming up; the hotplug lock is held for write. */
function stepUp(acc: Access, pl: CpuhpPlaces, cbs: CpuhpCallbacks, cpu: number, st: number): number {
  if (st === CPUHP.AP_ONLINE_IDLE) {
    onCpu(acc, pl, cpu, () => acc.writeOnce(cpuWord(pl, cpu, CPUHP_CPU.ONLINE), 1, 'cpuhp:set-online'));
    return 0;
  }
  if (st === CPUHP.AP_ACTIVE) {
    onCpu(acc, pl, cpu, () => acc.writeOnce(cpuWord(pl, cpu, CPUHP_CPU.ACTIVE), 1, 'cpuhp:set-active'));
    return 0;
  }
  if (st >= CPUHP.AP_KVM_ONLINE && st <= CPUHP.AP_ONLINE_DYN_END) return invokeCallback(acc, pl, cbs, cpu, st, true);
  return 0;
}

/** One state of a CPU going down; the hotplug lock is held for write. */
function stepDown(acc: Access, pl: CpuhpPlaces, cbs: CpuhpCallbacks, cpu: number, st: number): number {
  if (st === CPUHP.AP_ACTIVE) {
    // sched_cpu_deactivate: no new tasks; the tasks there leave before the states below run.
    onCpu(acc, pl, cpu, () => acc.writeOnce(cpuWord(pl, cpu, CPUHP_CPU.ACTIVE), 0, 'cpuhp:clear-active'));
    return 0;
  }
  if (st === CPUHP.AP_ONLINE_IDLE) {
    // take_cpu_down (CPUHP_TEARDOWN_CPU): set_cpu_online(cpu, false).
    onCpu(acc, pl, cpu, () => acc.writeOnce(cpuWord(pl, cpu, CPUHP_CPU.ONLINE), 0, 'cpuhp:clear-online'));
    return 0;
  }
  if (st >= CPUHP.AP_KVM_ONLINE && st <= CPUHP.AP_ONLINE_DYN_END) return invokeCallback(acc, pl, cbs, cpu, st, false);
  return 0;
}

function setState(acc: Access, pl: CpuhpPlaces, cpu: number, st: number): void {
  acc.writeOnce(cpuWord(pl, cpu, CPUHP_CPU.STATE), st, 'cpuhp:state-write');
}

/**
 * Bring `cpu` online: under the hotplug lock (write), run every state from CPUHP_BRINGUP_CPU up
 * to CPUHP_ONLINE; if a startup callback fails, tear the states done so far down again (the CPU
 * stays offline) and return the error. 0 if the CPU was already online.
 * @kvm kernel/cpu.c _cpu_up (cpuhp_up_callbacks, rollback via cpuhp_reset_state)
 */
export function cpuUp(acc: Access, pl: CpuhpPlaces, cpu: number, cbs: CpuhpCallbacks): number {
  cpusWriteLock(acc, pl);
  try {
    if (cpuhpCpuState(acc, pl, cpu) !== CPUHP.OFFLINE) return 0;
    for (let st = CPUHP.BRINGUP_CPU; st <= CPUHP.ONLINE; st++) {
      const r = stepUp(acc, pl, cbs, cpu, st);
      if (r !== 0) {
        for (let s = st - 1; s >= CPUHP.BRINGUP_CPU; s--) {
          stepDown(acc, pl, cbs, cpu, s);
          setState(acc, pl, cpu, s - 1);
        }
        return r;
      }
      setState(acc, pl, cpu, st);
    }
    return 0;
  } finally {
    cpusWriteUnlock(acc, pl);
  }
}

/**
 * Take `cpu` offline: under the hotplug lock (write), run every state from CPUHP_ONLINE down; if
 * a teardown callback fails (e.g. -EBUSY), bring the states already torn down back up (the CPU
 * stays online) and return the error. -EBUSY for the last online CPU; 0 if already offline.
 * @kvm kernel/cpu.c _cpu_down (cpuhp_down_callbacks, undo_cpu_down on failure)
 */
export function cpuDown(acc: Access, pl: CpuhpPlaces, cpu: number, cbs: CpuhpCallbacks): number {
  cpusWriteLock(acc, pl);
  try {
    if (cpuhpCpuState(acc, pl, cpu) !== CPUHP.ONLINE) return 0;
    if (onlineCpus(acc, pl).length <= 1) return -ERRNO.EBUSY;
    for (let st = CPUHP.ONLINE; st >= CPUHP.BRINGUP_CPU; st--) {
      const r = stepDown(acc, pl, cbs, cpu, st);
      if (r !== 0) {
        for (let s = st + 1; s <= CPUHP.ONLINE; s++) {
          stepUp(acc, pl, cbs, cpu, s);
          setState(acc, pl, cpu, s);
        }
        return r;
      }
      setState(acc, pl, cpu, st - 1);
    }
    return 0;
  } finally {
    cpusWriteUnlock(acc, pl);
  }
}
