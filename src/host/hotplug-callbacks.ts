/**
 * What a pCPU hotplug runs besides the scheduler's part: the cpuhp callbacks of the subsystems
 * on it (for a TDX host: tdx_offline_cpu and KVM's VMXOFF going down; VMXON and tdx_online_cpu
 * coming up).
 */
import type { PcpuId } from '../mem/layout.js';

/** Teardown / startup work run while a pCPU goes down / comes up (the cpuhp callbacks). @kvm kernel/cpu.c cpuhp_invoke_callback */
export interface HotplugCallbacks {
  /** Offline callbacks, in descending state order; throwing refuses the offline. */
  teardown?(p: PcpuId): void;
  /** Online callbacks, in ascending state order. */
  startup?(p: PcpuId): void;
}
