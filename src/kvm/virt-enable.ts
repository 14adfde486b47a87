/**
 * KVM's hardware virtualization enabling (virt/kvm/kvm_main.c, arch/x86/kvm/x86.c, vmx/vmx.c):
 * kvm_usage_count under kvm_usage_lock, the CPUHP_AP_KVM_ONLINE callbacks (VMXON on a CPU coming
 * up, VMXOFF on one going down), the emergency-disable callback, kvm_rebooting and the syscore
 * shutdown hook — as in Linux 6.16, and the pre-6.10 form the TDX v19 series was written against.
 *
 * 6.16 (since "KVM: Register cpuhp and syscore callbacks when enabling hardware", 6.10):
 *   kvm_enable_virtualization: mutex(kvm_usage_lock); if (usage_count++) return;
 *     register the emergency callback; cpuhp_setup_state(CPUHP_AP_KVM_ONLINE) — which runs
 *     kvm_online_cpu on every online CPU under the hotplug lock and then on every CPU that comes
 *     up; register syscore ops; back out with -EBUSY if the system is going down.
 *   kvm_online_cpu = kvm_enable_virtualization_cpu (unconditional: callbacks exist only while
 *   usage_count > 0).
 * pre-6.10 ("v6.9"):
 *   kvm_init registers CPUHP_AP_KVM_ONLINE once (nocalls); kvm_online_cpu enables VMX on a new
 *   CPU only if kvm_usage_count > 0; every VM takes a reference (hardware_enable_all: under
 *   cpus_read_lock + kvm_lock, the first reference runs hardware_enable_nolock on each CPU).
 *
 * Per CPU ({@link KVM_VIRT_CPU}): virtualization_enabled (hardware_enabled before 6.10).
 * Global ({@link KVM_VIRT}): kvm_usage_lock (kvm_lock before 6.10), kvm_usage_count,
 * kvm_rebooting, syscore registration, system_state, enable_virt_at_load.
 */
import type { Access } from '../mem/access.js';
import type { Addr } from '../mem/layout.js';
import { mutexLock, mutexUnlock, wordAt } from '../sync/index.js';
import { EmuError } from '../errors.js';
import {
  CPUHP,
  cpuhpRemoveState,
  cpuhpSetupState,
  cpuhpSetupStateNocalls,
  cpusReadLock,
  cpusReadUnlock,
  onEachCpu,
  perCpuWord,
  type CpuhpCallbacks,
  type CpuhpPlaces,
  type CpuhpStep,
} from '../host/cpuhp.js';
import {
  cpuEmergencyRegisterVirtCallback,
  cpuEmergencyUnregisterVirtCallback,
  cr4SetVmxe,
  cr4Vmxe,
  vmclearLocalLoadedVmcss,
  vmxoff,
  vmxon,
  type VirtCpuPlaces,
} from '../host/virt-cpu.js';
import { ERRNO } from '../host/errno.js';

/** Word offsets in a CPU's KVM line. */
export const KVM_VIRT_CPU = {
  /** per_cpu(virtualization_enabled) (hardware_enabled before 6.10). */
  VIRTUALIZATION_ENABLED: 0,
} as const;
/** Word offsets of KVM's global enabling words. */
export const KVM_VIRT = {
  /** kvm_usage_lock (kvm_lock before 6.10): a mutex, two words. */
  USAGE_LOCK: 0,
  /** kvm_usage_count. */
  USAGE_COUNT: 2,
  /** kvm_rebooting: a VMX instruction faulting is expected from now on. */
  REBOOTING: 3,
  /** kvm_syscore_ops registered. */
  SYSCORE_REGISTERED: 4,
  /** system_state ({@link SystemState}). */
  SYSTEM_STATE: 5,
  /** Module parameter kvm.enable_virt_at_load. */
  ENABLE_VIRT_AT_LOAD: 6,
} as const;
/** Words of KVM's global enabling area. */
export const KVM_VIRT_WORDS = 16;

/**
 * Values of system_state that matter here.
 * @kvm include/linux/kernel.h enum system_states (SYSTEM_RUNNING, SYSTEM_HALT, SYSTEM_POWER_OFF, SYSTEM_RESTART)
 */
export const SystemState = { RUNNING: 0, HALT: 1, POWER_OFF: 2, RESTART: 3 } as const;

/** Callback id of the 6.16 "kvm/cpu:online" cpuhp state. */
export const KVM_CPUHP_ONLINE = 1;
/** Callback id of the pre-6.10 "kvm/cpu:online" state (usage-count conditional). */
export const KVM_CPUHP_ONLINE_V69 = 2;
/** Emergency callback id of vmx_emergency_disable_virtualization_cpu. */
export const VMX_EMERGENCY_CALLBACK = 1;

/**
 * Where KVM's enabling state lives, with the host's hotplug and VMX state it works on.
 * @kvm virt/kvm/kvm_main.c kvm_usage_lock, kvm_usage_count, virtualization_enabled, kvm_rebooting
 */
export interface KvmVirtPlaces {
  /** Line of CPU 0 ({@link KVM_VIRT_CPU}). */
  readonly cpu: Addr;
  /** Global words ({@link KVM_VIRT}). */
  readonly global: Addr;
  readonly cpuhp: CpuhpPlaces;
  readonly virt: VirtCpuPlaces;
}

/**
 * The vendor hooks enabling works through.
 * @kvm arch/x86/include/asm/kvm-x86-ops.h enable_virtualization_cpu, disable_virtualization_cpu, emergency_disable_virtualization_cpu
 */
export interface KvmVirtOps {
  /** Runs on `cpu`: VMXON and friends; 0 or a negated errno. */
  enableVirtualizationCpu(cpu: number): number;
  /** Runs on `cpu`: VMXOFF and friends. */
  disableVirtualizationCpu(cpu: number): void;
  /** Runs on `cpu` during an emergency reboot, possibly in NMI context. */
  emergencyDisableVirtualizationCpu(cpu: number): void;
}

function g(kvm: KvmVirtPlaces, field: number): Addr {
  return wordAt(kvm.global, field);
}

const USAGE_LOCK = 'kvm_usage_lock';

/**
 * Write KVM's module-load state: nothing enabled, usage count 0, system running.
 * @kvm virt/kvm/kvm_main.c (static initialisers of kvm_usage_count, kvm_rebooting, enable_virt_at_load)
 */
export function kvmVirtInit(acc: Access, kvm: KvmVirtPlaces, enableVirtAtLoad = true): void {
  for (let c = 0; c < kvm.cpuhp.nrCpus; c++) acc.writeOnce(perCpuWord(kvm.cpu, c, KVM_VIRT_CPU.VIRTUALIZATION_ENABLED), 0, 'kvm:init');
  acc.writeOnce(g(kvm, KVM_VIRT.USAGE_COUNT), 0, 'kvm:init');
  acc.writeOnce(g(kvm, KVM_VIRT.REBOOTING), 0, 'kvm:init');
  acc.writeOnce(g(kvm, KVM_VIRT.SYSCORE_REGISTERED), 0, 'kvm:init');
  acc.writeOnce(g(kvm, KVM_VIRT.SYSTEM_STATE), SystemState.RUNNING, 'kvm:init');
  acc.writeOnce(g(kvm, KVM_VIRT.ENABLE_VIRT_AT_LOAD), enableVirtAtLoad ? 1 : 0, 'kvm:init');
}

/**
 * kvm_usage_count (a racy read unless kvm_usage_lock is held).
 * @kvm virt/kvm/kvm_main.c kvm_usage_count
 */
export function kvmUsageCount(acc: Access, kvm: KvmVirtPlaces): number {
  return acc.readOnce(g(kvm, KVM_VIRT.USAGE_COUNT), 'kvm:usage-read');
}

/**
 * VMXON on this CPU: CR4.VMXE must not be set yet (-EBUSY: someone else owns VMX), set it, VMXON;
 * on a fault clear CR4.VMXE again and return -EFAULT.
 * @kvm arch/x86/kvm/vmx/vmx.c vmx_enable_virtualization_cpu (kvm_cpu_vmxon)
 */
export function vmxEnableVirtualizationCpu(acc: Access, kvm: KvmVirtPlaces, cpu: number): number {
  if (cr4Vmxe(acc, kvm.virt, cpu)) return -ERRNO.EBUSY;
  cr4SetVmxe(acc, kvm.virt, cpu, true);
  if (vmxon(acc, kvm.virt, cpu) !== 'ok') {
    cr4SetVmxe(acc, kvm.virt, cpu, false);
    return -ERRNO.EFAULT;
  }
  return 0;
}

/**
 * VMXOFF on this CPU: VMCLEAR the loaded VMCSs, VMXOFF (a fault is eaten), clear CR4.VMXE.
 * @kvm arch/x86/kvm/vmx/vmx.c vmx_disable_virtualization_cpu (vmclear_local_loaded_vmcss, kvm_cpu_vmxoff)
 */
export function vmxDisableVirtualizationCpu(acc: Access, kvm: KvmVirtPlaces, cpu: number): void {
  vmclearLocalLoadedVmcss(acc, kvm.virt, cpu);
  vmxoff(acc, kvm.virt, cpu);
  cr4SetVmxe(acc, kvm.virt, cpu, false);
}

/**
 * Emergency disable on this CPU: kvm_rebooting = true; if CR4.VMXE is set, VMCLEAR every loaded
 * VMCS, VMXOFF and clear CR4.VMXE (CR4.VMXE can be cleared from NMI context, set only in task
 * context, so a racing second call sees it clear and returns).
 * @kvm arch/x86/kvm/vmx/vmx.c vmx_emergency_disable_virtualization_cpu
 */
export function vmxEmergencyDisableVirtualizationCpu(acc: Access, kvm: KvmVirtPlaces, cpu: number): void {
  acc.writeOnce(g(kvm, KVM_VIRT.REBOOTING), 1, 'kvm:rebooting');
  if (!cr4Vmxe(acc, kvm.virt, cpu)) return;
  vmclearLocalLoadedVmcss(acc, kvm.virt, cpu);
  vmxoff(acc, kvm.virt, cpu);
  cr4SetVmxe(acc, kvm.virt, cpu, false);
}

/**
 * VMX's vendor hooks.
 * @kvm arch/x86/kvm/vmx/main.c vt_x86_ops (.enable_virtualization_cpu, .disable_virtualization_cpu, .emergency_disable_virtualization_cpu for a non-TDX host)
 */
export function vmxVirtOps(acc: Access, kvm: KvmVirtPlaces): KvmVirtOps {
  return {
    enableVirtualizationCpu: (cpu) => vmxEnableVirtualizationCpu(acc, kvm, cpu),
    disableVirtualizationCpu: (cpu) => vmxDisableVirtualizationCpu(acc, kvm, cpu),
    emergencyDisableVirtualizationCpu: (cpu) => vmxEmergencyDisableVirtualizationCpu(acc, kvm, cpu),
  };
}

/**
 * The emergency callbacks KVM registers, by id.
 * @kvm arch/x86/kvm/x86.c kvm_arch_enable_virtualization (registers kvm_x86_ops.emergency_disable_virtualization_cpu)
 */
export function kvmEmergencyCallbacks(ops: KvmVirtOps): ReadonlyMap<number, (cpu: number) => void> {
  return new Map([[VMX_EMERGENCY_CALLBACK, (cpu: number) => ops.emergencyDisableVirtualizationCpu(cpu)]]);
}

/**
 * Enable virtualization on this CPU once: nothing if already enabled, else the vendor hook
 * (-EIO if it fails) and mark it enabled.
 * @kvm virt/kvm/kvm_main.c kvm_enable_virtualization_cpu (hardware_enable_nolock before 6.10)
 */
export function kvmEnableVirtualizationCpu(acc: Access, kvm: KvmVirtPlaces, ops: KvmVirtOps, cpu: number): number {
  const flag = perCpuWord(kvm.cpu, cpu, KVM_VIRT_CPU.VIRTUALIZATION_ENABLED);
  if (acc.readOnce(flag, 'kvm:virt-enabled-read') !== 0) return 0;
  if (ops.enableVirtualizationCpu(cpu) !== 0) return -ERRNO.EIO;
  acc.writeOnce(flag, 1, 'kvm:virt-enabled-set');
  return 0;
}

/**
 * Disable virtualization on this CPU if KVM enabled it.
 * @kvm virt/kvm/kvm_main.c kvm_disable_virtualization_cpu (hardware_disable_nolock before 6.10)
 */
export function kvmDisableVirtualizationCpu(acc: Access, kvm: KvmVirtPlaces, ops: KvmVirtOps, cpu: number): void {
  const flag = perCpuWord(kvm.cpu, cpu, KVM_VIRT_CPU.VIRTUALIZATION_ENABLED);
  if (acc.readOnce(flag, 'kvm:virt-enabled-read') === 0) return;
  ops.disableVirtualizationCpu(cpu);
  acc.writeOnce(flag, 0, 'kvm:virt-enabled-clear');
}

/**
 * KVM's CPUHP_AP_KVM_ONLINE callbacks (6.16): enable on a CPU coming up (a failure aborts the
 * online), disable on one going down.
 * @kvm virt/kvm/kvm_main.c kvm_online_cpu / kvm_offline_cpu
 */
export function kvmCpuhpStep(acc: Access, kvm: KvmVirtPlaces, ops: KvmVirtOps): CpuhpStep {
  return {
    name: 'kvm/cpu:online',
    startup: (cpu) => kvmEnableVirtualizationCpu(acc, kvm, ops, cpu),
    teardown: (cpu) => {
      kvmDisableVirtualizationCpu(acc, kvm, ops, cpu);
      return 0;
    },
  };
}

/**
 * Take a reference on hardware virtualization: the first one registers the emergency callback and
 * the CPUHP_AP_KVM_ONLINE state (VMXON on every online CPU, under the hotplug lock, and on every
 * CPU that comes up later) and the syscore ops, then backs out with -EBUSY if the system is
 * already going down.
 * @kvm virt/kvm/kvm_main.c kvm_enable_virtualization
 */
export function kvmEnableVirtualization(acc: Access, kvm: KvmVirtPlaces, ops: KvmVirtOps, cbs: CpuhpCallbacks): number {
  const lock = g(kvm, KVM_VIRT.USAGE_LOCK);
  mutexLock(acc, lock, USAGE_LOCK);
  try {
    const count = g(kvm, KVM_VIRT.USAGE_COUNT);
    const n = acc.readOnce(count, 'kvm:usage-read');
    acc.writeOnce(count, n + 1, 'kvm:usage-inc');
    if (n > 0) return 0;
    cpuEmergencyRegisterVirtCallback(acc, kvm.virt, VMX_EMERGENCY_CALLBACK); // kvm_arch_enable_virtualization
    const r = cpuhpSetupState(acc, kvm.cpuhp, CPUHP.AP_KVM_ONLINE, KVM_CPUHP_ONLINE, cbs);
    if (r === 0) {
      acc.writeOnce(g(kvm, KVM_VIRT.SYSCORE_REGISTERED), 1, 'kvm:syscore-register');
      const st = acc.readOnce(g(kvm, KVM_VIRT.SYSTEM_STATE), 'kvm:system-state-read');
      if (st === SystemState.RUNNING) return 0;
      acc.writeOnce(g(kvm, KVM_VIRT.SYSCORE_REGISTERED), 0, 'kvm:syscore-unregister');
      cpuhpRemoveState(acc, kvm.cpuhp, CPUHP.AP_KVM_ONLINE, cbs);
    }
    cpuEmergencyUnregisterVirtCallback(acc, kvm.virt, VMX_EMERGENCY_CALLBACK);
    acc.writeOnce(count, n, 'kvm:usage-dec');
    return r !== 0 ? r : -ERRNO.EBUSY;
  } finally {
    mutexUnlock(acc, lock, USAGE_LOCK);
  }
}

/**
 * Drop a reference: the last one unregisters the syscore ops, removes CPUHP_AP_KVM_ONLINE (VMXOFF
 * on every online CPU) and unregisters the emergency callback.
 * @kvm virt/kvm/kvm_main.c kvm_disable_virtualization
 */
export function kvmDisableVirtualization(acc: Access, kvm: KvmVirtPlaces, _ops: KvmVirtOps, cbs: CpuhpCallbacks): void {
  const lock = g(kvm, KVM_VIRT.USAGE_LOCK);
  mutexLock(acc, lock, USAGE_LOCK);
  try {
    const count = g(kvm, KVM_VIRT.USAGE_COUNT);
    const n = acc.readOnce(count, 'kvm:usage-read') - 1;
    if (n < 0) throw new EmuError('EMU_ERR_INTERNAL', `${acc.name}: kvm_disable_virtualization with kvm_usage_count 0`, { actor: acc.name });
    acc.writeOnce(count, n, 'kvm:usage-dec');
    if (n > 0) return;
    acc.writeOnce(g(kvm, KVM_VIRT.SYSCORE_REGISTERED), 0, 'kvm:syscore-unregister');
    cpuhpRemoveState(acc, kvm.cpuhp, CPUHP.AP_KVM_ONLINE, cbs);
    cpuEmergencyUnregisterVirtCallback(acc, kvm.virt, VMX_EMERGENCY_CALLBACK); // kvm_arch_disable_virtualization
  } finally {
    mutexUnlock(acc, lock, USAGE_LOCK);
  }
}

/**
 * At module load: take the "at load" reference if kvm.enable_virt_at_load (the default; TDX
 * requires it).
 * @kvm virt/kvm/kvm_main.c kvm_init_virtualization
 */
export function kvmInitVirtualization(acc: Access, kvm: KvmVirtPlaces, ops: KvmVirtOps, cbs: CpuhpCallbacks): number {
  if (acc.readOnce(g(kvm, KVM_VIRT.ENABLE_VIRT_AT_LOAD), 'kvm:param-read') === 0) return 0;
  return kvmEnableVirtualization(acc, kvm, ops, cbs);
}

/**
 * syscore shutdown (reboot, kexec): kvm_rebooting = true, then disable virtualization on every
 * online CPU (for a TDX host the vendor hook first flushes the CPU's TD vCPUs). Nothing if KVM's
 * syscore ops are not registered.
 * @kvm virt/kvm/kvm_main.c kvm_shutdown
 */
export function kvmShutdown(acc: Access, kvm: KvmVirtPlaces, ops: KvmVirtOps): void {
  if (acc.readOnce(g(kvm, KVM_VIRT.SYSCORE_REGISTERED), 'kvm:syscore-read') === 0) return;
  acc.writeOnce(g(kvm, KVM_VIRT.REBOOTING), 1, 'kvm:rebooting');
  onEachCpu(acc, kvm.cpuhp, (cpu) => kvmDisableVirtualizationCpu(acc, kvm, ops, cpu));
}

// ---- pre-6.10 ("v6.9"), the kernel the TDX v19 series applied to -------------------------------

/**
 * The pre-6.10 CPUHP_AP_KVM_ONLINE callbacks: under kvm_lock, enable (or disable) virtualization
 * on the CPU only if some VM holds a reference (kvm_usage_count > 0).
 * @kvm virt/kvm/kvm_main.c kvm_online_cpu / kvm_offline_cpu (v6.9: mutex_lock(&kvm_lock); if (kvm_usage_count) ...)
 */
export function kvmCpuhpStepV69(acc: Access, kvm: KvmVirtPlaces, ops: KvmVirtOps): CpuhpStep {
  const lock = g(kvm, KVM_VIRT.USAGE_LOCK);
  const underLock = (fn: () => number): number => {
    mutexLock(acc, lock, USAGE_LOCK);
    try {
      return kvmUsageCount(acc, kvm) > 0 ? fn() : 0;
    } finally {
      mutexUnlock(acc, lock, USAGE_LOCK);
    }
  };
  return {
    name: 'kvm/cpu:online',
    startup: (cpu) => underLock(() => kvmEnableVirtualizationCpu(acc, kvm, ops, cpu)),
    teardown: (cpu) =>
      underLock(() => {
        kvmDisableVirtualizationCpu(acc, kvm, ops, cpu);
        return 0;
      }),
  };
}

/**
 * Pre-6.10 kvm_init: register CPUHP_AP_KVM_ONLINE once, without running it on the online CPUs
 * (no VM yet), and the syscore ops.
 * @kvm virt/kvm/kvm_main.c kvm_init (v6.9: cpuhp_setup_state_nocalls(CPUHP_AP_KVM_ONLINE, ...), register_syscore_ops)
 */
export function kvmInitV69(acc: Access, kvm: KvmVirtPlaces, cbs: CpuhpCallbacks): number {
  const r = cpuhpSetupStateNocalls(acc, kvm.cpuhp, CPUHP.AP_KVM_ONLINE, KVM_CPUHP_ONLINE_V69, cbs);
  if (r === 0) acc.writeOnce(g(kvm, KVM_VIRT.SYSCORE_REGISTERED), 1, 'kvm:syscore-register');
  return r;
}

/**
 * Pre-6.10 per-VM reference (kvm_create_vm): under cpus_read_lock and kvm_lock, the first
 * reference enables virtualization on every online CPU; if any CPU fails, undo and -EBUSY.
 * @kvm virt/kvm/kvm_main.c hardware_enable_all (v6.9)
 */
export function hardwareEnableAll(acc: Access, kvm: KvmVirtPlaces, ops: KvmVirtOps): number {
  const lock = g(kvm, KVM_VIRT.USAGE_LOCK);
  cpusReadLock(acc, kvm.cpuhp);
  mutexLock(acc, lock, USAGE_LOCK);
  try {
    const count = g(kvm, KVM_VIRT.USAGE_COUNT);
    const n = acc.readOnce(count, 'kvm:usage-read') + 1;
    acc.writeOnce(count, n, 'kvm:usage-inc');
    if (n !== 1) return 0;
    let failed = 0;
    onEachCpu(acc, kvm.cpuhp, (cpu) => {
      if (kvmEnableVirtualizationCpu(acc, kvm, ops, cpu) !== 0) failed++;
    });
    if (failed === 0) return 0;
    acc.writeOnce(count, 0, 'kvm:usage-dec'); // hardware_disable_all_nolock
    onEachCpu(acc, kvm.cpuhp, (cpu) => kvmDisableVirtualizationCpu(acc, kvm, ops, cpu));
    return -ERRNO.EBUSY;
  } finally {
    mutexUnlock(acc, lock, USAGE_LOCK);
    cpusReadUnlock(acc, kvm.cpuhp);
  }
}

/**
 * Pre-6.10 reference drop (kvm_destroy_vm): the last one disables virtualization on every online
 * CPU. EMU_ERR_INTERNAL (the kernel's BUG_ON) if no reference is held.
 * @kvm virt/kvm/kvm_main.c hardware_disable_all (v6.9, hardware_disable_all_nolock)
 */
export function hardwareDisableAll(acc: Access, kvm: KvmVirtPlaces, ops: KvmVirtOps): void {
  const lock = g(kvm, KVM_VIRT.USAGE_LOCK);
  cpusReadLock(acc, kvm.cpuhp);
  mutexLock(acc, lock, USAGE_LOCK);
  try {
    const count = g(kvm, KVM_VIRT.USAGE_COUNT);
    const n = acc.readOnce(count, 'kvm:usage-read') - 1;
    if (n < 0) throw new EmuError('EMU_ERR_INTERNAL', `${acc.name}: hardware_disable_all with kvm_usage_count 0 (BUG_ON)`, { actor: acc.name });
    acc.writeOnce(count, n, 'kvm:usage-dec');
    if (n === 0) onEachCpu(acc, kvm.cpuhp, (cpu) => kvmDisableVirtualizationCpu(acc, kvm, ops, cpu));
  } finally {
    mutexUnlock(acc, lock, USAGE_LOCK);
    cpusReadUnlock(acc, kvm.cpuhp);
  }
}
