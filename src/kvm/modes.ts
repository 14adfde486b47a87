/**
 * vcpu->mode and its transitions (include/linux/kvm_host.h).
 *
 *   OUTSIDE_GUEST_MODE --vcpu thread, vcpu_enter_guest--> IN_GUEST_MODE
 *   IN_GUEST_MODE      --remote kick (cmpxchg)---------> EXITING_GUEST_MODE
 *   IN/EXITING         --vcpu thread, after VM-exit----> OUTSIDE_GUEST_MODE
 *
 * Only the vCPU thread moves OUTSIDE->IN and back; remote threads only do IN->EXITING.
 */
import { VCPU, type VcpuId } from '../mem/layout.js';
import type { Access } from '../mem/access.js';

/** @kvm include/linux/kvm_host.h OUTSIDE_GUEST_MODE */
export const OUTSIDE_GUEST_MODE = 0;
/** @kvm include/linux/kvm_host.h IN_GUEST_MODE */
export const IN_GUEST_MODE = 1;
/** @kvm include/linux/kvm_host.h EXITING_GUEST_MODE */
export const EXITING_GUEST_MODE = 2;
/** @kvm include/linux/kvm_host.h READING_SHADOW_PAGE_TABLES */
export const READING_SHADOW_PAGE_TABLES = 3;

/** Mode names for reports. */
export const MODE_NAMES = ['OUTSIDE_GUEST_MODE', 'IN_GUEST_MODE', 'EXITING_GUEST_MODE', 'READING_SHADOW_PAGE_TABLES'] as const;

/**
 * Remote IN_GUEST_MODE -> EXITING_GUEST_MODE; returns the mode found.
 * smp_mb__before_atomic() is a compiler barrier on x86: the cmpxchg is the fence.
 * @kvm include/linux/kvm_host.h kvm_vcpu_exiting_guest_mode
 */
export function kvmVcpuExitingGuestMode(acc: Access, v: VcpuId): number {
  return acc.cmpxchg(acc.layout.vcpu(v, VCPU.MODE), IN_GUEST_MODE, EXITING_GUEST_MODE, 'vcpu:mode-exiting');
}
