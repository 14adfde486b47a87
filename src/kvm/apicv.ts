/**
 * APICv inhibits (arch/x86/include/asm/kvm_host.h enum kvm_apicv_inhibit; x86.c
 * kvm_set_or_clear_apicv_inhibit, kvm_vcpu_update_apicv; vmx/main.c, svm/svm.h).
 *
 * VM-wide state: `VM.APICV_INHIBIT_REASONS` (bit = reason) under the rw-semaphore
 * `VM.APICV_UPDATE_LOCK` (kvm->arch.apicv_update_lock). Per vCPU: `VCPU.APICV_ACTIVE`
 * (apic->apicv_active).
 *
 *   writer (any thread)                           vCPU thread, next entry
 *   down_write(apicv_update_lock)                 KVM_REQ_APICV_UPDATE:
 *   new = old ± reason                              down_read(apicv_update_lock)
 *   if any-set flips:                               activate = reasons == 0 && APIC enabled
 *     kvm_make_all_cpus_request(APICV_UPDATE)       apicv_active = activate; irr_pending = 1
 *     (kick first, wait for in-guest vCPUs)         deactivated -> KVM_REQ_EVENT
 *   publish new                                     up_read
 *   up_write
 */
import { VCPU, VM, type VcpuId } from '../mem/layout.js';
import { downRead, downWrite, upRead, upWrite } from '../sync/rwsem.js';
import { pollUntil } from '../sync/wait.js';
import { apicEnabled, kvmApicUpdateApicv } from '../apic/index.js';
import { kvmMakeRequest, KVM_REQ_APICV_UPDATE, KVM_REQ_EVENT } from './requests.js';
import { IN_GUEST_MODE, OUTSIDE_GUEST_MODE, kvmVcpuExitingGuestMode } from './modes.js';
import { apicSendIpiHost, RESCHEDULE_VECTOR } from './kick.js';
import type { KvmCtx } from './x86-ops.js';

/** @kvm arch/x86/include/asm/kvm_host.h APICV_INHIBIT_REASON_DISABLED */
export const APICV_INHIBIT_REASON_DISABLED = 0;
/** @kvm arch/x86/include/asm/kvm_host.h APICV_INHIBIT_REASON_HYPERV */
export const APICV_INHIBIT_REASON_HYPERV = 1;
/** @kvm arch/x86/include/asm/kvm_host.h APICV_INHIBIT_REASON_ABSENT */
export const APICV_INHIBIT_REASON_ABSENT = 2;
/** @kvm arch/x86/include/asm/kvm_host.h APICV_INHIBIT_REASON_BLOCKIRQ */
export const APICV_INHIBIT_REASON_BLOCKIRQ = 3;
/** @kvm arch/x86/include/asm/kvm_host.h APICV_INHIBIT_REASON_PHYSICAL_ID_ALIASED */
export const APICV_INHIBIT_REASON_PHYSICAL_ID_ALIASED = 4;
/** @kvm arch/x86/include/asm/kvm_host.h APICV_INHIBIT_REASON_APIC_ID_MODIFIED */
export const APICV_INHIBIT_REASON_APIC_ID_MODIFIED = 5;
/** @kvm arch/x86/include/asm/kvm_host.h APICV_INHIBIT_REASON_APIC_BASE_MODIFIED */
export const APICV_INHIBIT_REASON_APIC_BASE_MODIFIED = 6;
/** AVIC only. @kvm arch/x86/include/asm/kvm_host.h APICV_INHIBIT_REASON_NESTED */
export const APICV_INHIBIT_REASON_NESTED = 7;
/** AVIC only. @kvm arch/x86/include/asm/kvm_host.h APICV_INHIBIT_REASON_IRQWIN */
export const APICV_INHIBIT_REASON_IRQWIN = 8;
/** AVIC only. @kvm arch/x86/include/asm/kvm_host.h APICV_INHIBIT_REASON_PIT_REINJ */
export const APICV_INHIBIT_REASON_PIT_REINJ = 9;
/** AVIC only. @kvm arch/x86/include/asm/kvm_host.h APICV_INHIBIT_REASON_SEV */
export const APICV_INHIBIT_REASON_SEV = 10;
/** AVIC only. @kvm arch/x86/include/asm/kvm_host.h APICV_INHIBIT_REASON_LOGICAL_ID_ALIASED */
export const APICV_INHIBIT_REASON_LOGICAL_ID_ALIASED = 11;

/** Reason names by bit, as APICV_INHIBIT_REASONS prints them (6.16; 6.17 adds PHYSICAL_ID_TOO_BIG). */
export const APICV_INHIBIT_REASON_NAMES = [
  'DISABLED',
  'HYPERV',
  'ABSENT',
  'BLOCKIRQ',
  'PHYSICAL_ID_ALIASED',
  'APIC_ID_MODIFIED',
  'APIC_BASE_MODIFIED',
  'NESTED',
  'IRQWIN',
  'PIT_REINJ',
  'SEV',
  'LOGICAL_ID_ALIASED',
] as const;

const bits = (...r: number[]) => r.reduce((m, b) => m | (1 << b), 0);

/** @kvm arch/x86/kvm/vmx/main.c VMX_REQUIRED_APICV_INHIBITS */
export const VMX_REQUIRED_APICV_INHIBITS = bits(
  APICV_INHIBIT_REASON_DISABLED,
  APICV_INHIBIT_REASON_ABSENT,
  APICV_INHIBIT_REASON_HYPERV,
  APICV_INHIBIT_REASON_BLOCKIRQ,
  APICV_INHIBIT_REASON_PHYSICAL_ID_ALIASED,
  APICV_INHIBIT_REASON_APIC_ID_MODIFIED,
  APICV_INHIBIT_REASON_APIC_BASE_MODIFIED,
);

/** @kvm arch/x86/kvm/svm/svm.h AVIC_REQUIRED_APICV_INHIBITS */
export const AVIC_REQUIRED_APICV_INHIBITS =
  VMX_REQUIRED_APICV_INHIBITS | bits(APICV_INHIBIT_REASON_NESTED, APICV_INHIBIT_REASON_IRQWIN, APICV_INHIBIT_REASON_PIT_REINJ, APICV_INHIBIT_REASON_SEV, APICV_INHIBIT_REASON_LOGICAL_ID_ALIASED);

/**
 * kvm_x86_ops.required_apicv_inhibits per vendor: a reason outside the set is ignored.
 * TDX shares vt_x86_ops (the VMX set), but for a TD any of them set is a KVM bug (tdx).
 * @kvm arch/x86/include/asm/kvm_host.h kvm_x86_ops.required_apicv_inhibits
 */
export const REQUIRED_APICV_INHIBITS: Readonly<Record<string, number>> = {
  vmx: VMX_REQUIRED_APICV_INHIBITS,
  svm: AVIC_REQUIRED_APICV_INHIBITS,
  tdx: VMX_REQUIRED_APICV_INHIBITS,
  savic: AVIC_REQUIRED_APICV_INHIBITS,
};

/** Names of the reasons set in a mask. @emulator */
export function apicvInhibitNames(mask: number): string[] {
  return APICV_INHIBIT_REASON_NAMES.filter((_, i) => (mask >>> i) & 1);
}

/**
 * APICv activated for the VM: no honoured reason set.
 * @kvm arch/x86/kvm/x86.c kvm_apicv_activated
 */
export function kvmApicvActivated(ctx: KvmCtx): boolean {
  return ctx.acc.readOnce(ctx.L.vm(VM.APICV_INHIBIT_REASONS), 'apicv:reasons-read') === 0;
}

/**
 * Set KVM_REQ_APICV_UPDATE (WAIT | NO_WAKEUP) on every vCPU, kick those not outside guest mode
 * and wait until each has left guest mode (its acknowledgement).
 * @kvm virt/kvm/kvm_main.c kvm_make_all_cpus_request
 */
export function kvmMakeAllCpusRequestApicvUpdate(ctx: KvmCtx): void {
  const { acc, L } = ctx;
  const kicked: VcpuId[] = [];
  for (let v = 0; v < ctx.nrVcpus; v++) {
    kvmMakeRequest(acc, v, KVM_REQ_APICV_UPDATE);
    if (v === ctx.runningVcpu) continue;
    // NO_WAKEUP: sleepers are not woken; WAIT: kick anyone not outside guest mode.
    if (kvmVcpuExitingGuestMode(acc, v) === IN_GUEST_MODE) {
      const cpu = acc.readOnce(L.vcpu(v, VCPU.CPU), 'vcpu:cpu-read');
      if (cpu >= 0 && cpu !== ctx.cpu) apicSendIpiHost(ctx, cpu, RESCHEDULE_VECTOR);
      kicked.push(v);
    }
  }
  for (const v of kicked) {
    pollUntil(
      acc,
      L.vcpu(v, VCPU.MODE),
      'apicv:wait-ack',
      () => acc.readOnce(L.vcpu(v, VCPU.MODE), 'apicv:wait-ack') === OUTSIDE_GUEST_MODE || acc.readOnce(L.vcpu(v, VCPU.REQUESTS), 'apicv:wait-ack') === 0,
      () => `vcpu${v} to acknowledge KVM_REQ_APICV_UPDATE`,
    );
  }
}

/**
 * Set or clear an inhibit reason. Reasons the vendor does not honour are ignored. When the
 * "any reason set" state flips, every vCPU gets KVM_REQ_APICV_UPDATE *before* the new mask is
 * published (as the kernel does, so no vCPU sees the new mask without the request).
 * @kvm arch/x86/kvm/x86.c kvm_set_or_clear_apicv_inhibit
 */
export function kvmSetOrClearApicvInhibit(ctx: KvmCtx, reason: number, set: boolean): void {
  const required = REQUIRED_APICV_INHIBITS[ctx.ops.name] ?? VMX_REQUIRED_APICV_INHIBITS;
  if (!((required >>> reason) & 1)) return;
  const { acc, L } = ctx;
  const lock = L.vm(VM.APICV_UPDATE_LOCK);
  downWrite(acc, lock, 'apicv_update_lock');
  try {
    const a = L.vm(VM.APICV_INHIBIT_REASONS);
    const old = acc.readOnce(a, 'apicv:reasons-read');
    const next = set ? old | (1 << reason) : old & ~(1 << reason);
    if ((old === 0) !== (next === 0)) kvmMakeAllCpusRequestApicvUpdate(ctx);
    acc.writeOnce(a, next, 'apicv:reasons-publish');
  } finally {
    upWrite(acc, lock, 'apicv_update_lock');
  }
}

/**
 * The vCPU re-evaluates apicv_active (KVM_REQ_APICV_UPDATE, or an APIC mode change).
 * Deactivation does not drain the PIR here: vcpu_enter_guest syncs it whenever the local APIC
 * is enabled (the "check PIR even for vCPUs with disabled APICv" fix).
 * @kvm arch/x86/kvm/x86.c __kvm_vcpu_update_apicv
 */
export function kvmVcpuUpdateApicv(ctx: KvmCtx, v: VcpuId): void {
  const { acc, L } = ctx;
  const lock = L.vm(VM.APICV_UPDATE_LOCK);
  downRead(acc, lock, 'apicv_update_lock');
  try {
    const activate = kvmApicvActivated(ctx) && apicEnabled(acc, v);
    const a = L.vcpu(v, VCPU.APICV_ACTIVE);
    if ((acc.readOnce(a, 'apicv:active-read') !== 0) === activate) return;
    acc.writeOnce(a, activate ? 1 : 0, 'apicv:active-write');
    kvmApicUpdateApicv(acc, v);
    ctx.ops.refreshApicvExecCtrl?.(ctx, v, activate);
    if (!activate) kvmMakeRequest(acc, v, KVM_REQ_EVENT);
  } finally {
    upRead(acc, lock, 'apicv_update_lock');
  }
}
