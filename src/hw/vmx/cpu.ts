/**
 * What the CPU does in VMX non-root operation with APICv (Intel SDM vol. 3C ch. 29–31):
 * external interrupts cause VM-exits, except the posted-interrupt notification vector, which is
 * processed in place (29.6); virtual interrupts are delivered from RVI when RVI[7:4] > VPPR[7:4]
 * (29.2.2); virtual EOI clears VISR[SVI] (29.1.2); with IPI virtualization a guest's fixed
 * physical IPI is posted by the CPU itself (hw/vmx/posting.ts) instead of exiting. The guest's
 * program runs between these checks.
 *
 * This is the body of kvm_x86_ops.vcpu_run for VMX: VM-entry to VM-exit, on the vCPU's thread.
 */
import { PCPU, PID, VCPU, VMX_VCPU, type VcpuId } from '../../mem/layout.js';
import { APIC_PROCPRI } from '../../mem/apicdef.js';
import { FIRST_SYSTEM_VECTOR_WORD } from '../../kvm/kick.js';
import { kvmMakeRequest, KVM_REQ_EVENT } from '../../kvm/requests.js';
import { apicFindHighestIrr, apicFindHighestIsr, apicSetEoi, kvmApicAckInterrupt } from '../../apic/index.js';
import { EV } from '../../trace/events.js';
import { ExitReason, type GuestExit, type GuestProgram, type KvmCtx } from '../../kvm/x86-ops.js';
import { piClearOn, piNv } from '../../hw/vmx/pi-desc.js';
import { kvmApicUpdateIrr } from '../../kvm/lapic-pir.js';
import { vmxIpivIcrWrite } from './posting.js';

/**
 * Posted-interrupt processing (SDM 29.6), steps uninterruptible from the guest's view:
 * ack the notification in the local APIC, clear ON, VIRR |= PIR and PIR = 0,
 * RVI = max(RVI, highest PIR vector).
 * @sdm Intel SDM vol. 3C 29.6 Posted-Interrupt Processing
 */
export function vmxProcessPostedInterrupts(ctx: KvmCtx, v: VcpuId): void {
  const { acc, L } = ctx;
  piClearOn(acc, v);
  const r = kvmApicUpdateIrr(ctx, v);
  if (r.pirMax >= 0) {
    const a = L.vcpu(v, VCPU.GUEST_INTR_STATUS);
    const st = acc.readOnce(a, 'hw:intr-status-read');
    if (r.pirMax > (st & 0xff)) acc.writeOnce(a, (st & ~0xff) | r.pirMax, 'hw:rvi-write');
  }
  ctx.stats.count('hwPiProcessed');
  ctx.trace.emit(EV.HW_PI, v, r.maxIrr);
}

/**
 * Virtual-interrupt delivery (SDM 29.2.2) followed by the guest handler and its virtual EOI
 * (29.1.2). Returns true if an interrupt was delivered. (Also the TD's delivery: hw/tdx/td-cpu.)
 * @sdm Intel SDM vol. 3C 29.2.2 Virtual-Interrupt Delivery, 29.1.2 EOI Virtualization
 */
export function vmxEvaluatePendingVirtualInterrupt(ctx: KvmCtx, v: VcpuId, guest: GuestProgram): boolean {
  const { acc, L } = ctx;
  const sAddr = L.vcpu(v, VCPU.GUEST_INTR_STATUS);
  const st = acc.readOnce(sAddr, 'hw:intr-status-read');
  const rvi = st & 0xff;
  if (rvi === 0) return false;
  const vppr = acc.readOnce(L.apicReg(v, APIC_PROCPRI), 'hw:vppr-read');
  if ((rvi & 0xf0) <= (vppr & 0xf0)) return false;
  // Deliver: VISR[RVI] = 1, VIRR[RVI] = 0, VPPR = RVI & 0xF0, SVI = RVI, RVI = highest VIRR.
  kvmApicAckInterrupt(acc, v, rvi);
  const next = apicFindHighestIrr(acc, v);
  acc.writeOnce(sAddr, ((rvi & 0xff) << 8) | (next < 0 ? 0 : next), 'hw:intr-status-write');
  ctx.trace.emit(EV.ACK, v, rvi);
  guest.onInterrupt(rvi);
  ctx.stats.countDelivered(v, rvi);
  ctx.trace.emit(EV.DELIVERED, v, rvi);
  // The handler's EOI write is virtualized: VISR[SVI] = 0, SVI = highest VISR, VPPR updated.
  const eoi = apicSetEoi(acc, v);
  const isr = apicFindHighestIsr(acc, v);
  const st2 = acc.readOnce(sAddr, 'hw:intr-status-read');
  acc.writeOnce(sAddr, (st2 & 0xff) | ((isr < 0 ? 0 : isr) << 8), 'hw:svi-write');
  ctx.trace.emit(EV.EOI, v, eoi);
  return true;
}

/**
 * Run the guest from VM-entry until a VM-exit, at most `maxSteps` guest steps (then a
 * VMX-preemption-timer exit, which is how the host scheduler's time slice reaches the vCPU).
 * @kvm arch/x86/kvm/vmx/vmx.c vmx_vcpu_run
 */
export function vmxVcpuRun(ctx: KvmCtx, v: VcpuId, guest: GuestProgram, maxSteps: number): GuestExit {
  const { acc, L } = ctx;
  const hostIrr = L.pcpu(ctx.cpu, PCPU.HOST_IRR_SYS);
  const control = L.pid(v, PID.CONTROL);
  // VM-entry event injection (the non-APICv path): the guest takes the injected vector first;
  // its EOI write is not virtualized then, so KVM emulates it (apic_set_eoi + KVM_REQ_EVENT).
  const injAddr = L.vcpu(v, VCPU.INJECTED);
  const injected = acc.readOnce(injAddr, 'vmx:injected-read');
  if (injected >= 0) {
    acc.writeOnce(injAddr, -1, 'vmx:injected-clear');
    guest.onInterrupt(injected);
    ctx.stats.countDelivered(v, injected);
    ctx.trace.emit(EV.DELIVERED, v, injected);
    ctx.trace.emit(EV.EOI, v, apicSetEoi(acc, v));
    kvmMakeRequest(acc, v, KVM_REQ_EVENT);
  }
  // With APICv deactivated (refresh_apicv_exec_ctrl) the VMCS has neither posted-interrupt
  // processing nor virtual-interrupt delivery: every host interrupt is a VM-exit and the guest
  // only takes what KVM injects at entry.
  const apicv = acc.readOnce(L.vcpu(v, VCPU.APICV_ACTIVE), 'hw:apicv-read') !== 0;
  // IPI virtualization (tertiary control IPI_VIRT): KVM turns it off with APICv.
  const ipiv = apicv && acc.readOnce(L.vmxVcpu(v, VMX_VCPU.IPIV), 'hw:ipiv-read') !== 0;
  for (let step = 0; step < maxSteps; step++) {
    const pending = acc.readOnce(hostIrr, 'hw:host-irr-read');
    if (pending !== 0 && !apicv) return { reason: ExitReason.EXTERNAL_INTERRUPT };
    if (pending !== 0) {
      const nv = piNv(acc.readOnce(control, 'hw:pi-nv-read'));
      const nvBit = nv >= FIRST_SYSTEM_VECTOR_WORD ? 1 << (nv - FIRST_SYSTEM_VECTOR_WORD) : 0;
      if ((pending & nvBit) !== 0 && acc.testAndClearBit(hostIrr, 31 - Math.clz32(nvBit), 'hw:pi-notification-ack')) {
        vmxProcessPostedInterrupts(ctx, v);
      }
      if ((pending & ~nvBit) !== 0) return { reason: ExitReason.EXTERNAL_INTERRUPT };
    }
    if (apicv && vmxEvaluatePendingVirtualInterrupt(ctx, v, guest)) continue;
    const act = guest.step();
    if (act.kind === 'run') continue;
    if (act.kind === 'hlt') return { reason: ExitReason.HLT };
    if (ipiv && vmxIpivIcrWrite(ctx, v, act.msr, act.lo, act.hi)) continue;
    // Other x2APIC ICR writes exit (without IPI virtualization, or one it does not virtualize:
    // the APIC-write exit); so does any other WRMSR here.
    return { reason: ExitReason.MSR_WRITE, msr: act.msr, lo: act.lo, hi: act.hi };
  }
  return { reason: ExitReason.PREEMPTION_TIMER };
}
