/**
 * The local APIC timer in TSC-deadline mode, reduced to what halting guests need: a guest arms
 * a deadline before HLT; when it passes, the timer interrupt (LVTT vector) is delivered to the
 * vCPU like any other, so a vCPU that halts always wakes up again.
 *
 * hvemu's TSC counts µs of machine time (KvmCtx.clockUs). The hrtimer that KVM arms runs on the
 * vCPU's own thread here: its expiry is checked at entry and in kvm_vcpu_check_block, and a
 * blocked vCPU sleeps no longer than the deadline.
 */
import { VCPU, type VcpuId } from '../mem/layout.js';
import { APIC_LVTT, APIC_LVT_MASKED } from '../mem/apicdef.js';
import { decodeIcr } from '../apic/index.js';
import { kvmApicSetIrq } from './irq.js';
import type { KvmCtx } from './x86-ops.js';

/** @kvm arch/x86/include/asm/msr-index.h MSR_IA32_TSC_DEADLINE */
export const MSR_IA32_TSC_DEADLINE = 0x6e0;

/**
 * The guest wrote IA32_TSC_DEADLINE: arm (or, with 0, disarm) the timer.
 * @kvm arch/x86/kvm/lapic.c kvm_set_lapic_tscdeadline_msr
 */
export function kvmSetLapicTscdeadlineMsr(ctx: KvmCtx, v: VcpuId, deadlineUs: number): void {
  ctx.acc.writeOnce(ctx.L.vcpu(v, VCPU.TIMER_DEADLINE), deadlineUs | 0, 'timer:deadline-write');
}

/** Microseconds until the armed deadline (Infinity when disarmed, 0 when due). @emulator */
export function timerRemainingUs(ctx: KvmCtx, v: VcpuId): number {
  const d = ctx.acc.readOnce(ctx.L.vcpu(v, VCPU.TIMER_DEADLINE), 'timer:deadline-read');
  return d === 0 ? Infinity : Math.max(0, d - ctx.clockUs());
}

/**
 * If the deadline has passed: disarm it and deliver the LVTT vector to the vCPU itself
 * (kvm_apic_local_deliver), unless LVTT is masked. Returns true if a timer interrupt was raised.
 * @kvm arch/x86/kvm/lapic.c apic_timer_expired / kvm_inject_apic_timer_irqs
 */
export function kvmInjectPendingTimerIrqs(ctx: KvmCtx, v: VcpuId): boolean {
  if (timerRemainingUs(ctx, v) !== 0) return false;
  ctx.acc.writeOnce(ctx.L.vcpu(v, VCPU.TIMER_DEADLINE), 0, 'timer:deadline-clear');
  const lvtt = ctx.acc.readOnce(ctx.L.apicReg(v, APIC_LVTT), 'timer:lvtt-read');
  if ((lvtt & APIC_LVT_MASKED) !== 0) return false;
  return kvmApicSetIrq(ctx, v, decodeIcr(lvtt & 0xff, v, true)) === 'delivered';
}
