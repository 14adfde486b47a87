/**
 * Host-side access to a vCPU's local APIC state: KVM_GET_LAPIC / KVM_SET_LAPIC and the
 * IA32_APIC_BASE MSR, with the protected-APIC rules of TDX (and, later, Secure AVIC).
 */
import { VCPU, type VcpuId } from '../mem/layout.js';
import { APIC_PAGE_BYTES, MSR_IA32_APICBASE, X2APIC_ENABLE } from '../mem/apicdef.js';
import { kvmMakeRequest, KVM_REQ_APICV_UPDATE } from './requests.js';
import { EmuError } from '../errors.js';
import type { KvmCtx } from './x86-ops.js';

function einval(what: string, v: VcpuId): EmuError {
  return new EmuError('EMU_ERR_EINVAL', `${what} on vcpu${v}: -EINVAL (the guest APIC state is protected)`, { actor: `vcpu${v}`, detail: { errno: -22 } });
}

/**
 * KVM_GET_LAPIC: a copy of the APIC register page, after moving posted interrupts into the IRR.
 * @kvm arch/x86/kvm/x86.c kvm_vcpu_ioctl_get_lapic
 */
export function kvmVcpuIoctlGetLapic(ctx: KvmCtx, v: VcpuId): Int32Array {
  if (ctx.ops.protectedApic) throw einval('KVM_GET_LAPIC', v);
  ctx.ops.syncPirToIrr(ctx, v);
  return ctx.acc.peekWords(ctx.L.apicReg(v, 0), APIC_PAGE_BYTES >> 2);
}

/**
 * KVM_SET_LAPIC: replace the APIC register page.
 * @kvm arch/x86/kvm/x86.c kvm_vcpu_ioctl_set_lapic
 */
export function kvmVcpuIoctlSetLapic(ctx: KvmCtx, v: VcpuId, regs: Int32Array): void {
  if (ctx.ops.protectedApic) throw einval('KVM_SET_LAPIC', v);
  if (regs.length !== APIC_PAGE_BYTES >> 2) throw new EmuError('EMU_ERR_BAD_PARAM', `invalid regs: ${regs.length} words (an APIC page has ${APIC_PAGE_BYTES >> 2})`, { detail: { param: 'regs' } });
  const base = ctx.L.apicReg(v, 0);
  for (let i = 0; i < regs.length; i++) ctx.acc.writeOnce((base + i) as typeof base, regs[i]!, 'ioctl:set-lapic');
  ctx.acc.smpMb('ioctl:set-lapic');
}

/**
 * Write IA32_APIC_BASE (0x1B). A TD's APIC base is read-only (has_protected_state): -EINVAL.
 * @kvm arch/x86/kvm/x86.c kvm_set_apic_base / vt_set_msr (TDX)
 */
export function kvmSetApicBase(ctx: KvmCtx, v: VcpuId, value: number): void {
  if (ctx.ops.protectedApic) throw einval(`WRMSR 0x${MSR_IA32_APICBASE.toString(16)} (APIC base)`, v);
  kvmLapicSetBase(ctx, v, value);
}

/**
 * Update IA32_APIC_BASE; a change of the x2APIC enable bit asks the vCPU for an APICv update
 * before its next entry (where, under hybrid AVIC, x2APIC deletes the APIC-access memslot).
 * @kvm arch/x86/kvm/lapic.c kvm_lapic_set_base (kvm_make_request(KVM_REQ_APICV_UPDATE) on a mode change)
 */
export function kvmLapicSetBase(ctx: KvmCtx, v: VcpuId, value: number): void {
  const a = ctx.L.vcpu(v, VCPU.APIC_BASE);
  const old = ctx.acc.readOnce(a, 'lapic:apic-base-read');
  ctx.acc.writeOnce(a, value | 0, 'lapic:apic-base-write');
  if (((old ^ value) & X2APIC_ENABLE) !== 0) kvmMakeRequest(ctx.acc, v, KVM_REQ_APICV_UPDATE);
}
