/**
 * A CPU's VMX operation and the kernel's emergency "disable virtualization" hook.
 *
 * Per CPU ({@link VMX_CPU}): CR4.VMXE, whether the CPU is in VMX operation (post-VMXON), and how
 * many VMCSs are loaded (active) on it. VMXON needs CR4.VMXE; VMXOFF leaves VMX operation; a CPU
 * in VMX operation blocks INIT, so an emergency reboot must VMXOFF every CPU first.
 *
 * Global ({@link VIRT_GLOBAL}): the emergency callback pointer (an id; 0 = none) that
 * cpu_emergency_disable_virtualization() calls on each CPU during an emergency reboot or panic —
 * on this CPU first, then on the others from NMI context (nmi_shootdown_cpus).
 */
import type { Access } from '../mem/access.js';
import type { Addr } from '../mem/layout.js';
import { wordAt } from '../sync/index.js';
import { EmuError } from '../errors.js';
import { cpuOnline, perCpuWord, type CpuhpPlaces } from './cpuhp.js';

/** Word offsets in a CPU's VMX line. */
export const VMX_CPU = {
  /** CR4.VMXE (bit 13 of CR4). */
  CR4_VMXE: 0,
  /** In VMX operation: VMXON executed, no VMXOFF since. */
  VMX_OPERATION: 1,
  /** VMCSs active on this CPU (per_cpu(loaded_vmcss_on_cpu)). */
  LOADED_VMCS: 2,
} as const;
/** Word offsets of the global virtualization words. */
export const VIRT_GLOBAL = {
  /** cpu_emergency_virt_callback: id of the registered callback, 0 if none. */
  EMERGENCY_CALLBACK: 0,
} as const;

/**
 * Where the host's VMX state lives: one line per CPU and one global word.
 * @kvm arch/x86/kernel/reboot.c cpu_emergency_virt_callback; CR4.VMXE and VMX operation per CPU (SDM)
 */
export interface VirtCpuPlaces {
  readonly nrCpus: number;
  /** Line of CPU 0 ({@link VMX_CPU}). */
  readonly cpu: Addr;
  /** Global words ({@link VIRT_GLOBAL}). */
  readonly global: Addr;
}

function vmxWord(pl: VirtCpuPlaces, cpu: number, field: number): Addr {
  return perCpuWord(pl.cpu, cpu, field);
}

/**
 * Power-on state: CR4.VMXE clear, no CPU in VMX operation, no VMCS loaded, no emergency callback.
 * @sdm SDM vol. 3A, "Processor State After Reset" (CR4 = 0; not in VMX operation)
 */
export function virtCpuBoot(acc: Access, pl: VirtCpuPlaces): void {
  for (let c = 0; c < pl.nrCpus; c++) for (const f of Object.values(VMX_CPU)) acc.writeOnce(vmxWord(pl, c, f), 0, 'vmx:reset');
  acc.writeOnce(wordAt(pl.global, VIRT_GLOBAL.EMERGENCY_CALLBACK), 0, 'vmx:reset');
}

/**
 * CR4.VMXE of `cpu` (the kernel's cr4_read_shadow() & X86_CR4_VMXE).
 * @sdm SDM vol. 3C, "Enabling and Entering VMX Operation" (CR4.VMXE)
 */
export function cr4Vmxe(acc: Access, pl: VirtCpuPlaces, cpu: number): boolean {
  return acc.readOnce(vmxWord(pl, cpu, VMX_CPU.CR4_VMXE), 'vmx:cr4-read') !== 0;
}

/**
 * Set or clear CR4.VMXE on `cpu` (runs on that CPU).
 * @kvm arch/x86/include/asm/tlbflush.h cr4_set_bits / cr4_clear_bits (X86_CR4_VMXE)
 */
export function cr4SetVmxe(acc: Access, pl: VirtCpuPlaces, cpu: number, on: boolean): void {
  acc.writeOnce(vmxWord(pl, cpu, VMX_CPU.CR4_VMXE), on ? 1 : 0, 'vmx:cr4-write');
}

/**
 * Whether `cpu` is in VMX operation (post-VMXON).
 * @sdm SDM vol. 3C, "VMX Operation" (VMX root operation after VMXON)
 */
export function cpuInVmxOperation(acc: Access, pl: VirtCpuPlaces, cpu: number): boolean {
  return acc.readOnce(vmxWord(pl, cpu, VMX_CPU.VMX_OPERATION), 'vmx:operation-read') !== 0;
}

/** Outcome of a VMX instruction as the kernel sees it. */
export type VmxInsnResult = 'ok' | 'ud' | 'vmfail';

/**
 * VMXON on `cpu`: #UD unless CR4.VMXE is set; VMfailInvalid if already in VMX operation.
 * @sdm SDM vol. 3C, VMXON — Enter VMX Operation (#UD if CR4.VMXE = 0)
 */
export function vmxon(acc: Access, pl: VirtCpuPlaces, cpu: number): VmxInsnResult {
  if (!cr4Vmxe(acc, pl, cpu)) return 'ud';
  if (cpuInVmxOperation(acc, pl, cpu)) return 'vmfail';
  acc.writeOnce(vmxWord(pl, cpu, VMX_CPU.VMX_OPERATION), 1, 'vmx:vmxon');
  return 'ok';
}

/**
 * VMXOFF on `cpu`: #UD unless the CPU is in VMX operation.
 * @sdm SDM vol. 3C, VMXOFF — Leave VMX Operation (#UD outside VMX operation)
 */
export function vmxoff(acc: Access, pl: VirtCpuPlaces, cpu: number): VmxInsnResult {
  if (!cpuInVmxOperation(acc, pl, cpu)) return 'ud';
  acc.writeOnce(vmxWord(pl, cpu, VMX_CPU.VMX_OPERATION), 0, 'vmx:vmxoff');
  return 'ok';
}

/**
 * VMCLEAR every VMCS loaded on `cpu` (the per-CPU loaded_vmcss_on_cpu list becomes empty).
 * @kvm arch/x86/kvm/vmx/vmx.c vmclear_local_loaded_vmcss
 */
export function vmclearLocalLoadedVmcss(acc: Access, pl: VirtCpuPlaces, cpu: number): void {
  acc.writeOnce(vmxWord(pl, cpu, VMX_CPU.LOADED_VMCS), 0, 'vmx:vmclear');
}

/**
 * Register the emergency callback (an id) that disables virtualization on a CPU during an
 * emergency reboot or panic. EMU_ERR_INTERNAL if another one is registered (the kernel WARNs).
 * @kvm arch/x86/kernel/reboot.c cpu_emergency_register_virt_callback
 */
export function cpuEmergencyRegisterVirtCallback(acc: Access, pl: VirtCpuPlaces, id: number): void {
  const w = wordAt(pl.global, VIRT_GLOBAL.EMERGENCY_CALLBACK);
  if (acc.cmpxchg(w, 0, id, 'reboot:virt-callback-register') !== 0) throw new EmuError('EMU_ERR_INTERNAL', `${acc.name}: an emergency virtualization callback is already registered`, { actor: acc.name });
}

/**
 * Unregister the emergency callback (then synchronize_rcu: no CPU still runs it).
 * @kvm arch/x86/kernel/reboot.c cpu_emergency_unregister_virt_callback
 */
export function cpuEmergencyUnregisterVirtCallback(acc: Access, pl: VirtCpuPlaces, id: number): void {
  acc.cmpxchg(wordAt(pl.global, VIRT_GLOBAL.EMERGENCY_CALLBACK), id, 0, 'reboot:virt-callback-unregister');
}

/**
 * On `cpu`, during an emergency: call the registered callback, if any (rcu_dereference of the
 * pointer). `callbacks` maps ids to the code.
 * @kvm arch/x86/kernel/reboot.c cpu_emergency_disable_virtualization
 */
export function cpuEmergencyDisableVirtualization(acc: Access, pl: VirtCpuPlaces, cpu: number, callbacks: ReadonlyMap<number, (cpu: number) => void>): void {
  const id = acc.readOnce(wordAt(pl.global, VIRT_GLOBAL.EMERGENCY_CALLBACK), 'reboot:virt-callback-read');
  if (id === 0) return;
  const cb = callbacks.get(id);
  if (!cb) throw new EmuError('EMU_ERR_INTERNAL', `${acc.name}: emergency callback #${id} unknown to this actor`, { actor: acc.name });
  cb(cpu);
}

/**
 * Emergency reboot / crash: disable virtualization on the crashing CPU, then on every other online
 * CPU from NMI context (an NMI is taken even with interrupts off, so the CPU's execution lock is
 * not taken). Afterwards no CPU that ran the callback is in VMX operation.
 * @kvm arch/x86/kernel/reboot.c nmi_shootdown_cpus (crash_nmi_callback → cpu_emergency_disable_virtualization)
 */
export function nmiShootdownCpus(acc: Access, pl: VirtCpuPlaces, hp: CpuhpPlaces, crashingCpu: number, callbacks: ReadonlyMap<number, (cpu: number) => void>): void {
  cpuEmergencyDisableVirtualization(acc, pl, crashingCpu, callbacks);
  for (let c = 0; c < pl.nrCpus; c++) if (c !== crashingCpu && cpuOnline(acc, hp, c)) cpuEmergencyDisableVirtualization(acc, pl, c, callbacks);
}
