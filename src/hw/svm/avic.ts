/**
 * What an AMD CPU does in guest mode with AVIC (APM vol. 2, 15.29): the guest's x2APIC ICR write
 * of a fixed IPI is accelerated (x2AVIC) — for each destination the CPU sets the IRR bit in the
 * target's backing page, then reads the target's physical APIC ID table entry: IsRunning → ring
 * the doorbell of the host CPU in the entry; not running → after all destinations,
 * #VMEXIT(AVIC_INCOMPLETE_IPI, TARGET_NOT_RUNNING). The CPU delivers the highest IRR vector above
 * PPR to the guest; an edge EOI is accelerated. A doorbell makes it re-evaluate the IRR.
 */
import { PCPU, VCPU, vecPos, vecWord, AVIC_PHYSID, type PcpuId, type VcpuId } from '../../mem/layout.js';
import { APIC_IRR } from '../../mem/apicdef.js';
import { apicDestinations, apicSetEoi, decodeIcr, kvmApicAckInterrupt, kvmApicHasInterrupt } from '../../apic/index.js';
import { EV } from '../../trace/events.js';
import { ExitReason, type GuestExit, type GuestProgram, type KvmCtx } from '../../kvm/x86-ops.js';

/** x2APIC ICR MSR. */
const MSR_X2APIC_ICR = 0x830;

/**
 * The accelerated ICR write: IRR then IsRunning for each destination; returns the targets that
 * were not running (they need KVM's incomplete-IPI handling), or undefined if the IPI is not
 * accelerated (not fixed / shorthand) and must exit to KVM as an ordinary ICR write.
 * @apm AMD APM vol. 2, 15.29.3 AVIC IPI delivery (x2AVIC)
 */
export function avicHwSendIpi(ctx: KvmCtx, v: VcpuId, lo: number, hi: number): VcpuId[] | undefined {
  const { acc, L } = ctx;
  const icr = decodeIcr(lo, hi, true);
  if (icr.deliveryMode !== 'fixed' || icr.shorthand !== 'none' || icr.vector < 16) return undefined;
  const notRunning: VcpuId[] = [];
  for (const t of apicDestinations(acc, v, icr, ctx.nrVcpus, true)) {
    ctx.stats.countSent(t, icr.vector);
    ctx.trace.emit(EV.IPI_SENT, t, icr.vector);
    if (acc.testAndSetBit(L.apicBitmapWord(t, APIC_IRR, vecWord(icr.vector)), vecPos(icr.vector), 'avic:hw-irr-set')) {
      ctx.stats.countCoalesced(t, icr.vector);
      ctx.trace.emit(EV.COALESCED, t, icr.vector, 1);
    }
    const entry = acc.readOnce(L.avicPhysId(t), 'avic:hw-is-running-read');
    if ((entry & AVIC_PHYSID.IS_RUNNING) !== 0) {
      if (t !== v) avicRingDoorbell(ctx, entry & AVIC_PHYSID.HOST_ID_MASK);
    } else {
      notRunning.push(t);
    }
  }
  return notRunning;
}

/**
 * Run the guest with AVIC until a VM-exit, at most `maxSteps` steps.
 * @kvm arch/x86/kvm/svm/svm.c svm_vcpu_run
 */
export function svmVcpuRun(ctx: KvmCtx, v: VcpuId, guest: GuestProgram, maxSteps: number): GuestExit {
  const { acc, L } = ctx;
  const hostIrr = L.pcpu(ctx.cpu, PCPU.HOST_IRR_SYS);
  const doorbell = L.pcpu(ctx.cpu, PCPU.AVIC_DOORBELL);
  const avic = acc.readOnce(L.vcpu(v, VCPU.APICV_ACTIVE), 'hw:apicv-read') !== 0;
  // Event injection of the non-AVIC path (shared with VMX's model of KVM's injection).
  const injAddr = L.vcpu(v, VCPU.INJECTED);
  const injected = acc.readOnce(injAddr, 'svm:injected-read');
  if (injected >= 0) {
    acc.writeOnce(injAddr, -1, 'svm:injected-clear');
    guest.onInterrupt(injected);
    ctx.stats.countDelivered(v, injected);
    ctx.trace.emit(EV.EOI, v, apicSetEoi(acc, v));
  }
  for (let step = 0; step < maxSteps; step++) {
    if (acc.readOnce(hostIrr, 'hw:host-irr-read') !== 0) return { reason: ExitReason.EXTERNAL_INTERRUPT };
    // A doorbell only makes the CPU look at the IRR again; it is consumed here.
    if (acc.readOnce(doorbell, 'avic:hw-doorbell-read') !== 0) acc.xchg(doorbell, 0, 'avic:hw-doorbell-ack');
    if (avic) {
      const vec = kvmApicHasInterrupt(acc, v);
      if (vec >= 0) {
        kvmApicAckInterrupt(acc, v, vec);
        ctx.trace.emit(EV.ACK, v, vec);
        guest.onInterrupt(vec);
        ctx.stats.countDelivered(v, vec);
        ctx.trace.emit(EV.DELIVERED, v, vec);
        ctx.trace.emit(EV.EOI, v, apicSetEoi(acc, v));
        continue;
      }
    }
    const act = guest.step();
    if (act.kind === 'run') continue;
    if (act.kind === 'hlt') return { reason: ExitReason.HLT };
    if (avic && act.msr === MSR_X2APIC_ICR) {
      const notRunning = avicHwSendIpi(ctx, v, act.lo, act.hi);
      if (notRunning === undefined) return { reason: ExitReason.MSR_WRITE, msr: act.msr, lo: act.lo, hi: act.hi };
      if (notRunning.length > 0) return { reason: ExitReason.AVIC_INCOMPLETE_IPI, incompleteIpiTargets: notRunning };
      continue;
    }
    return { reason: ExitReason.MSR_WRITE, msr: act.msr, lo: act.lo, hi: act.hi };
  }
  return { reason: ExitReason.PREEMPTION_TIMER };
}

/**
 * Ring the AVIC doorbell of a pCPU: a CPU in guest mode there re-evaluates its backing page.
 * @kvm arch/x86/kvm/svm/avic.c avic_ring_doorbell
 */
export function avicRingDoorbell(ctx: KvmCtx, cpu: PcpuId): void {
  ctx.acc.xchg(ctx.L.pcpu(cpu, PCPU.AVIC_DOORBELL), 1, 'avic:doorbell');
  ctx.stats.count('notifications');
  ctx.trace.emit(EV.NOTIFY, cpu, 0);
}
