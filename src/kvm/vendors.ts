/**
 * Vendor registry: one {@link KvmX86Ops} per interrupt-virtualization model.
 */
import type { Access } from '../mem/access.js';
import type { KvmX86Ops } from './x86-ops.js';
import type { PatchSet } from './patches.js';
import { badParam } from '../errors.js';
import { vmxVcpuCreate, vmxVmInit, vmxX86Ops } from './vmx/vmx.js';
import { tdxVcpuCreate, tdxX86Ops } from './vmx/tdx.js';
import { tdxMachineAreaWords, tdxMachineHostInit, tdxMachineHostSnapshot, tdxMachineHotplug, tdxMachinePcpuHostState } from './vmx/tdx-machine-host.js';
import type { HostVirtState, PcpuHostState } from '../host/host-state.js';
import type { HotplugCallbacks } from '../host/hotplug-callbacks.js';
import { svmVcpuCreate, svmX86Ops } from './svm/svm.js';
import { savicVcpuCreate, savicX86Ops } from './svm/savic.js';

/** Vendors a machine can be built with. */
export const VENDORS = ['vmx', 'svm', 'tdx', 'savic'] as const;
/** A vendor name. */
export type Vendor = (typeof VENDORS)[number];

/** A vendor's operations plus its per-vCPU creation hook. */
export interface VendorModule {
  ops: KvmX86Ops;
  /** kvm_x86_ops.vcpu_create: vendor state of a new vCPU. */
  vcpuCreate(acc: Access, v: number, firstCpu: number): void;
  /** Words of machine memory the vendor lays out itself (the layout's vendor area). */
  areaWords?(vcpus: number, pcpus: number, packages: number): number;
  /** The vendor's cpuhp callbacks for pCPU hotplug, as thread `acc` runs them (TDX: tdx_offline_cpu, VMXOFF / VMXON, LP.INIT). */
  hotplug?(acc: Access, patches?: PatchSet): HotplugCallbacks;
  /** VM-wide host state for snapshots (TDX: kvm_usage_count, tdx_module_status, nr_configured_hkid). */
  hostSnapshot?(acc: Access): HostVirtState | undefined;
  /** Once per machine, after every vCPU is created: the vendor area's boot state. */
  vmInit?(acc: Access): void;
  /** A pCPU's vendor state for snapshots (TDX: its host registers and user-return cache). */
  pcpuSnapshot?(acc: Access, p: number): PcpuHostState | undefined;
}

const modules: Record<Vendor, VendorModule> = {
  vmx: { ops: vmxX86Ops, vcpuCreate: (acc, v, firstCpu) => vmxVcpuCreate(acc, v, firstCpu), vmInit: vmxVmInit },
  svm: { ops: svmX86Ops, vcpuCreate: (acc, v) => svmVcpuCreate(acc, v) },
  tdx: { ops: tdxX86Ops, vcpuCreate: tdxVcpuCreate, areaWords: tdxMachineAreaWords, vmInit: tdxMachineHostInit, pcpuSnapshot: tdxMachinePcpuHostState, hotplug: tdxMachineHotplug, hostSnapshot: tdxMachineHostSnapshot },
  savic: { ops: savicX86Ops, vcpuCreate: (acc, v) => savicVcpuCreate(acc, v) },
};

/** Check a vendor name (EMU_ERR_BAD_PARAM naming `vendor` otherwise). @emulator */
export function parseVendor(name: string): Vendor {
  if ((VENDORS as readonly string[]).includes(name)) return name as Vendor;
  throw badParam('vendor', `unknown vendor "${name}" (known: ${VENDORS.join(', ')})`);
}

/** The module of a vendor (the kvm_x86_ops a VM is created with). @emulator */
export function vendorModule(v: Vendor): VendorModule {
  return modules[v];
}
