/**
 * Machine state at creation, written by the main thread before any actor starts:
 * KVM_CREATE_VCPU for each vCPU (local APIC reset in x2APIC mode, vendor state) and the guest
 * firmware's APIC software enable; every pCPU online and idle.
 */
import { PCPU, VCPU, type Layout } from '../mem/layout.js';
import type { Access } from '../mem/access.js';
import { APIC_LVTT } from '../mem/apicdef.js';
import { APIC_LVT_TIMER_TSCDEADLINE, apicSoftwareEnable, kvmLapicReset, kvmLapicSetReg } from '../apic/index.js';
import { TIMER_VECTOR } from '../guest/programs.js';
import type { VendorModule } from '../kvm/vendors.js';

/** Home pCPU of vCPU v (vCPUs spread round-robin over pCPUs). */
export function homePcpu(L: Layout, v: number): number {
  return v % L.config.pcpus;
}

/** Initialise every vCPU and pCPU of a fresh machine. */
export function initMachineState(acc: Access, vendor: VendorModule): void {
  const L = acc.layout;
  for (let v = 0; v < L.config.vcpus; v++) {
    kvmLapicReset(acc, v, { x2apic: true, bsp: v === 0 });
    apicSoftwareEnable(acc, v);
    // Guest firmware: LAPIC timer in TSC-deadline mode on TIMER_VECTOR (disarmed until used).
    kvmLapicSetReg(acc, v, APIC_LVTT, TIMER_VECTOR | APIC_LVT_TIMER_TSCDEADLINE, 'vm:init');
    acc.writeOnce(L.vcpu(v, VCPU.CPU), -1, 'vm:init');
    acc.writeOnce(L.vcpu(v, VCPU.INJECTED), -1, 'vm:init');
    vendor.vcpuCreate(acc, v, homePcpu(L, v));
  }
  for (let p = 0; p < L.config.pcpus; p++) {
    acc.writeOnce(L.pcpu(p, PCPU.CURRENT_VCPU), -1, 'vm:init');
    acc.writeOnce(L.pcpu(p, PCPU.ONLINE), 1, 'vm:init');
    acc.writeOnce(L.pcpu(p, PCPU.ACTIVE), 1, 'vm:init');
  }
  vendor.vmInit?.(acc);
  acc.smpMb('vm:init');
}
