/**
 * Validation of user-facing parameters: every error names the parameter (EMU_ERR_BAD_PARAM).
 */
import { badParam } from '../errors.js';
import { parseVendor, type Vendor } from '../kvm/vendors.js';
import { checkPatchIds, findPatch } from '../kvm/patches.js';

/** A machine's shape. */
export interface MachineConfig {
  /** Interrupt-virtualization model; 'vmx' (Intel APICv with posted interrupts). */
  vendor?: string;
  /** Number of vCPUs, 1..256 (default 4). */
  vcpus?: number;
  /** Number of physical CPUs, 1..64 (default 2). */
  pcpus?: number;
  /** Records per actor event ring (power of two, default 16384). */
  ringRecords?: number;
  /** Physical packages the pCPUs are split into (consecutive pCPUs per package), 1..pcpus (default 1). */
  packages?: number;
  /**
   * Named bug patches to run the machine's KVM and hardware code with (ids from kvm/patches.ts,
   * e.g. a catalogue variant's patches: `bugPatches('pi-wakeup-block:buggy')`). Default: none.
   */
  patches?: readonly string[];
}

/** A validated machine configuration. */
export interface ResolvedMachineConfig {
  vendor: Vendor;
  vcpus: number;
  pcpus: number;
  ringRecords: number;
  packages: number;
  /** Sorted, validated patch ids. */
  patches: string[];
}

/** The built-in default machine: 4 vCPUs on 2 pCPUs, VMX. */
export const DEFAULT_MACHINE: ResolvedMachineConfig = { vendor: 'vmx', vcpus: 4, pcpus: 2, ringRecords: 16384, packages: 1, patches: [] };

/** Check that `value` is an integer in lo..hi; the error names `param`. */
export function checkInt(param: string, value: unknown, lo: number, hi: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || !Number.isInteger(value)) throw badParam(param, `${String(value)} is not an integer`);
  if (value < lo || value > hi) throw badParam(param, `${value} (must be in ${lo}..${hi})`);
  return value;
}

/** Check that `value` is a finite number in lo..hi; the error names `param`. */
export function checkNumber(param: string, value: unknown, lo: number, hi: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw badParam(param, `${String(value)} is not a number`);
  if (value < lo || value > hi) throw badParam(param, `${value} (must be in ${lo}..${hi})`);
  return value;
}

/** Validate a machine configuration, filling defaults. */
export function resolveMachineConfig(cfg: MachineConfig = {}): ResolvedMachineConfig {
  const vendor = parseVendor(cfg.vendor ?? DEFAULT_MACHINE.vendor);
  // The TDX host model tracks CPUs in 32-bit masks (31 CPUs at most).
  const pcpus = checkInt('pcpus', cfg.pcpus ?? DEFAULT_MACHINE.pcpus, 1, vendor === 'tdx' ? 31 : 64);
  return {
    vendor,
    vcpus: checkInt('vcpus', cfg.vcpus ?? DEFAULT_MACHINE.vcpus, 1, 256),
    pcpus,
    ringRecords: checkInt('ringRecords', cfg.ringRecords ?? DEFAULT_MACHINE.ringRecords, 16, 1 << 20),
    packages: checkInt('packages', cfg.packages ?? DEFAULT_MACHINE.packages, 1, pcpus),
    patches: checkPatches(cfg.patches, vendor),
  };
}

function checkPatches(ids: unknown, vendor: Vendor): string[] {
  if (ids === undefined) return [];
  if (!Array.isArray(ids) || ids.some((x) => typeof x !== 'string')) throw badParam('patches', 'must be an array of patch ids');
  const out = checkPatchIds(ids as string[]);
  for (const id of out) {
    const p = findPatch(id);
    if (p.vendors && !p.vendors.includes(vendor)) throw badParam('patches', `patch "${id}" changes ${p.step}, which a ${vendor} machine does not run (vendor: ${p.vendors.join(' or ')})`);
  }
  return out;
}

/** Check an interrupt vector for delivery (16..255). */
export function checkVector(param: string, vector: unknown): number {
  return checkInt(param, vector, 16, 255);
}
