/**
 * What an AMD CPU does in guest mode with AVIC (APM vol. 2, 15.29 "Advanced Virtual Interrupt
 * Controller"; domain notes 3.1-3.2):
 *
 * - The physical APIC ID table: one u64 entry per guest physical APIC ID (host physical APIC ID
 *   11:0, backing-page address 51:12, IsRunning 62, Valid 63), read by the CPU, written by KVM
 *   (kvm/svm/avic.ts). The access layer is 32-bit, so an entry is two words (AVIC_PHYSID.ENTRY_LO
 *   / ENTRY_HI); KVM writes the low word before the high word, the CPU reads the high word first.
 * - A guest x2APIC ICR write of a fixed, edge IPI is accelerated: the CPU looks every destination
 *   up, sets the vector in each target's backing-page IRR, then reads the target's IsRunning:
 *   1 → it rings the doorbell of the host CPU named in the entry; 0 → after all targets,
 *   #VMEXIT(AVIC_INCOMPLETE_IPI, TARGET_NOT_RUNNING). No lock anywhere: the CPU takes none.
 * - The CPU looks at the backing page's IRR only at VMRUN, when a doorbell arrives in guest mode,
 *   after an accelerated EOI and for its own self-IPIs. An IRR bit another CPU sets while this
 *   one runs the guest stays unseen until one of those happens (a missed doorbell matters).
 * - HLT is intercepted unconditionally (KVM's vIRR check decides whether the vCPU blocks).
 */
import { AVIC_PHYSID, PCPU, VCPU, vecPos, vecWord, type PcpuId, type VcpuId } from '../../mem/layout.js';
import { APIC_IRR } from '../../mem/apicdef.js';
import { apicDestinations, apicSetEoi, decodeIcr, kvmApicAckInterrupt, kvmApicHasInterrupt } from '../../apic/index.js';
import { EV } from '../../trace/events.js';
import { definePatch } from '../../kvm/patches.js';
import { ExitReason, type GuestExit, type GuestProgram, type KvmCtx } from '../../kvm/x86-ops.js';

/** x2APIC ICR MSR. */
const MSR_X2APIC_ICR = 0x830;

/**
 * Field masks of the physical APIC ID table entry, split over its two 32-bit words (`_LO`: bits
 * 31:0, `_HI`: bits 63:32), named after avic.c / asm/svm.h.
 * @apm AMD64 APM vol. 2, 15.29.2.3 Physical APIC ID Table
 */
export const AVIC_PHYSICAL_ID_ENTRY = {
  /** AVIC_PHYSICAL_ID_ENTRY_HOST_PHYSICAL_ID_MASK (GENMASK_ULL(11, 0)). */
  HOST_PHYSICAL_ID_MASK_LO: 0xfff,
  /** AVIC_PHYSICAL_ID_ENTRY_BACKING_PAGE_MASK (GENMASK_ULL(51, 12)), bits 31:12. */
  BACKING_PAGE_MASK_LO: 0xfffff000 | 0,
  /** AVIC_PHYSICAL_ID_ENTRY_BACKING_PAGE_MASK, bits 51:32. */
  BACKING_PAGE_MASK_HI: 0xfffff,
  /** AVIC_PHYSICAL_ID_ENTRY_IS_RUNNING_MASK (bit 62). */
  IS_RUNNING_MASK_HI: 1 << 30,
  /** AVIC_PHYSICAL_ID_ENTRY_VALID_MASK (bit 63). */
  VALID_MASK_HI: 1 << 31,
} as const;

/**
 * exit_info_2[63:32] of #VMEXIT(AVIC_INCOMPLETE_IPI): why the CPU did not complete the IPI.
 * @apm AMD64 APM vol. 2, 15.29.9.1 AVIC IPI Delivery Not Completed (enum avic_ipi_failure_cause)
 */
export const AVIC_IPI_FAILURE = {
  INVALID_INT_TYPE: 0,
  TARGET_NOT_RUNNING: 1,
  INVALID_TARGET: 2,
  INVALID_BACKING_PAGE: 3,
  INVALID_IPI_VECTOR: 4,
} as const;

/** exit_info_2[8:0]: the physical APIC ID table index the failure names (AVIC_PHYSICAL_MAX_INDEX_MASK). */
export const AVIC_PHYSICAL_MAX_INDEX_MASK = 0x1ff;

/**
 * Hardware patch: the host is an AMD family 17h CPU (Zen 1 / Zen 2), whose AVIC has erratum
 * #1235 — during ICR write emulation it "doesn't reliably detect changes to the 'IsRunning'
 * bit … if IsRunning was recently cleared" (8de4a1c8164e's changelog). Modelled as the IsRunning
 * load being satisfied early: the CPU acts on the IsRunning it read at the table lookup, before
 * its (atomic) IRR update of the target's backing page became visible, instead of reading it
 * again after the update (the ordering avic_vcpu_blocking's comment says the CPU lacks). Also what
 * the CPU reports as its family (boot_cpu_data.x86 = 0x17), which KVM's avic_hardware_setup
 * checks. Without the patch the host is family 19h (Zen 3+), unaffected.
 * @apm AMD Revision Guide for Family 17h processors, erratum 1235
 */
export const PATCH_HW_AVIC_ERRATUM_1235 = definePatch({
  id: 'hw-avic-erratum-1235',
  step: 'AVIC IPI delivery (ICR write emulation)',
  summary: "a family-17h host: the sender's AVIC acts on the IsRunning it read at the table lookup, before its IRR update was visible, so it can miss a just-cleared IsRunning and ring a doorbell instead of exiting",
  origin: { kind: 'hardware', ref: 'AMD family 17h revision guide, erratum #1235 (as described by 8de4a1c8164e)', subject: 'AVIC may fail to process an IPI when IsRunning was recently cleared (Zen 1/Zen 2; Hygon family 18h)' },
  kernel: 'any kernel on an AMD family 17h or Hygon family 18h host (hardware)',
  vendors: ['svm'],
});

/**
 * The host CPU's family as CPUID reports it (boot_cpu_data.x86): 0x17 with the erratum patch,
 * else 0x19.
 * @apm AMD64 APM vol. 3, CPUID Fn0000_0001_EAX (family)
 */
export function bootCpuFamily(ctx: Pick<KvmCtx, 'patches'>): number {
  return ctx.patches.has(PATCH_HW_AVIC_ERRATUM_1235) ? 0x17 : 0x19;
}

/**
 * The local APIC ID of pCPU `cpu` (identity in this machine).
 * @kvm arch/x86/include/asm/smp.h cpu_physical_id
 */
export function cpuPhysicalId(cpu: PcpuId): number {
  return cpu;
}

/**
 * WRMSR MSR_AMD64_SVM_AVIC_DOORBELL (0xC001011B) with a host physical APIC ID: the CPU there, if
 * it is in guest mode with AVIC, re-evaluates its backing page; otherwise the doorbell is
 * dropped at its next VMRUN. WRMSR serializes (a locked exchange here).
 * @apm AMD64 APM vol. 2, 15.29.3.2 AVIC Doorbell MSR
 */
export function avicDoorbellMsrWrite(ctx: KvmCtx, hostApicId: number): void {
  ctx.acc.xchg(ctx.L.pcpu(hostApicId, PCPU.AVIC_DOORBELL), 1, 'avic:doorbell');
  ctx.stats.count('notifications');
  ctx.trace.emit(EV.NOTIFY, hostApicId, 0);
}

/** The doorbell signal the sender's AVIC sends itself: ordered behind its IRR store, not a barrier. */
function avicHwDoorbell(ctx: KvmCtx, hostApicId: number): void {
  ctx.acc.writeOnce(ctx.L.pcpu(hostApicId, PCPU.AVIC_DOORBELL), 1, 'avic:hw-doorbell');
  ctx.stats.count('notifications');
  ctx.trace.emit(EV.NOTIFY, hostApicId, 0);
}

function incompleteIpi(lo: number, hi: number, id: number, index: number): GuestExit {
  return { reason: ExitReason.AVIC_INCOMPLETE_IPI, exitInfo1: { hi, lo }, exitInfo2: { hi: id, lo: index & AVIC_PHYSICAL_MAX_INDEX_MASK } };
}

/** Result of {@link avicHwIcrWrite} when the write completed in guest mode. */
export const AVIC_ICR_DONE = 0;
/** Result of {@link avicHwIcrWrite}: completed, and a target was this vCPU (it re-evaluates its IRR). */
export const AVIC_ICR_SELF = 1;

/**
 * The accelerated x2APIC ICR write of vCPU `v`: returns AVIC_ICR_DONE / AVIC_ICR_SELF when the
 * CPU completed it in guest mode, or the #VMEXIT(AVIC_INCOMPLETE_IPI) it takes, exit_info_1 =
 * the ICR (high:low), exit_info_2 = failure id (high) : table index (low). Only fixed, edge IPIs
 * with a vector >= 16 are accelerated; if any addressed entry is invalid nothing is delivered
 * (INVALID_TARGET: KVM emulates the whole IPI). For each valid target: IRR bit in the backing
 * page the entry names (a locked OR, like every other IRR writer), then IsRunning: doorbell to
 * the entry's host APIC ID, or remember the target for TARGET_NOT_RUNNING.
 * @apm AMD64 APM vol. 2, 15.29.3.1 Virtual IPI delivery (x2AVIC), 15.29.9.1 AVIC IPI Delivery Not Completed
 */
export function avicHwIcrWrite(ctx: KvmCtx, v: VcpuId, lo: number, hi: number): GuestExit | typeof AVIC_ICR_DONE | typeof AVIC_ICR_SELF {
  const { acc, L } = ctx;
  const icr = decodeIcr(lo, hi, true);
  if (icr.deliveryMode !== 'fixed' || icr.triggerMode !== 'edge') return incompleteIpi(lo, hi, AVIC_IPI_FAILURE.INVALID_INT_TYPE, 0);
  if (icr.vector < 16) return incompleteIpi(lo, hi, AVIC_IPI_FAILURE.INVALID_IPI_VECTOR, 0);
  if (icr.shorthand === 'self') {
    // Self-IPI: no table lookup, the vIRR is updated directly and this CPU re-evaluates it.
    avicHwSetIrr(ctx, v, L.physAddrOf(L.apicReg(v, 0)), icr.vector);
    return AVIC_ICR_SELF;
  }
  const targets = apicDestinations(acc, v, icr, ctx.nrVcpus, true);
  const broadcast = icr.shorthand !== 'none' || icr.dest >>> 0 === 0xffffffff;
  // Table lookup of every destination first: an invalid one fails the whole IPI.
  const his: number[] = [];
  const los: number[] = [];
  for (const t of targets) {
    const eh = acc.readOnce(L.avicPhysId(t, AVIC_PHYSID.ENTRY_HI), 'avic:hw-entry-lookup');
    const el = acc.readOnce(L.avicPhysId(t, AVIC_PHYSID.ENTRY_LO), 'avic:hw-entry-lookup');
    if ((eh & AVIC_PHYSICAL_ID_ENTRY.VALID_MASK_HI) === 0 && !broadcast) return incompleteIpi(lo, hi, AVIC_IPI_FAILURE.INVALID_TARGET, t);
    his.push(eh);
    los.push(el);
  }
  const erratum = ctx.patches.has(PATCH_HW_AVIC_ERRATUM_1235);
  let self = false;
  let notRunning = -1;
  for (let i = 0; i < targets.length; i++) {
    const t = targets[i]!;
    const eh = his[i]!;
    if ((eh & AVIC_PHYSICAL_ID_ENTRY.VALID_MASK_HI) === 0) continue; // broadcast skips invalid entries
    const el = los[i]!;
    const backing = (el & AVIC_PHYSICAL_ID_ENTRY.BACKING_PAGE_MASK_LO) >>> 0;
    avicHwSetIrr(ctx, t, backing + (eh & AVIC_PHYSICAL_ID_ENTRY.BACKING_PAGE_MASK_HI) * 2 ** 32, icr.vector);
    if (t === v) {
      self = true;
      continue;
    }
    // IsRunning after the IRR update (the locked update orders them) — or, with erratum #1235,
    // the value of the lookup above, from before the update was visible.
    const running = erratum ? eh : acc.readOnce(L.avicPhysId(t, AVIC_PHYSID.ENTRY_HI), 'avic:hw-is-running-read');
    if ((running & AVIC_PHYSICAL_ID_ENTRY.IS_RUNNING_MASK_HI) !== 0) avicHwDoorbell(ctx, el & AVIC_PHYSICAL_ID_ENTRY.HOST_PHYSICAL_ID_MASK_LO);
    else if (notRunning < 0) notRunning = t;
  }
  if (notRunning >= 0) return incompleteIpi(lo, hi, AVIC_IPI_FAILURE.TARGET_NOT_RUNNING, notRunning);
  return self ? AVIC_ICR_SELF : AVIC_ICR_DONE;
}

/**
 * Memory round trips of the CPU's update of a remote backing page's IRR, as scheduling points: the
 * line usually sits in the target CPU's cache (it scans its IRR), so other CPUs' steps interleave
 * with the fetch. It matters only for what the CPU read before the update (erratum #1235).
 */
const AVIC_IRR_LINE_FETCH_STEPS = 8;

/**
 * Set `vector` in the IRR of the backing page at physical address `backing` (vCPU t's) with a
 * locked update, after fetching the line; count it as sent (or coalesced).
 */
function avicHwSetIrr(ctx: KvmCtx, t: VcpuId, backing: number, vector: number): void {
  const { acc, L } = ctx;
  ctx.stats.countSent(t, vector);
  ctx.trace.emit(EV.IPI_SENT, t, vector);
  const irr = L.wordAtPhys(backing + APIC_IRR + 0x10 * vecWord(vector));
  if (t !== ctx.runningVcpu) for (let i = 0; i < AVIC_IRR_LINE_FETCH_STEPS; i++) acc.readOnce(irr, 'avic:hw-backing-page-fetch');
  if (acc.testAndSetBit(irr, vecPos(vector), 'avic:hw-irr-set')) {
    ctx.stats.countCoalesced(t, vector);
    ctx.trace.emit(EV.COALESCED, t, vector, 1);
  }
}

/**
 * VMRUN with AVIC, then the guest until a #VMEXIT (at most `maxSteps` guest steps). VMRUN drops
 * a doorbell that rang while this pCPU was outside guest mode and evaluates the backing page;
 * afterwards the CPU re-evaluates only on a doorbell, after an accelerated EOI, or for a
 * self-IPI. A pending vector is taken at an instruction boundary with RFLAGS.IF = 1.
 * @apm AMD64 APM vol. 2, 15.29.2 (VMRUN and AVIC interrupt evaluation), 15.29.3.2 (doorbell)
 */
export function svmVcpuRun(ctx: KvmCtx, v: VcpuId, guest: GuestProgram, maxSteps: number): GuestExit {
  const { acc, L } = ctx;
  const hostIrr = L.pcpu(ctx.cpu, PCPU.HOST_IRR_SYS);
  const doorbell = L.pcpu(ctx.cpu, PCPU.AVIC_DOORBELL);
  const avic = acc.readOnce(L.vcpu(v, VCPU.APICV_ACTIVE), 'hw:apicv-read') !== 0;
  // VMRUN is serializing.
  acc.smpMb('svm:vmrun');
  // Event injection of the non-AVIC path (KVM's software injection, as on VMX).
  const injAddr = L.vcpu(v, VCPU.INJECTED);
  const injected = acc.readOnce(injAddr, 'svm:injected-read');
  if (injected >= 0) {
    acc.writeOnce(injAddr, -1, 'svm:injected-clear');
    guest.onInterrupt(injected);
    ctx.stats.countDelivered(v, injected);
    ctx.trace.emit(EV.EOI, v, apicSetEoi(acc, v));
  }
  let evaluate = false;
  if (avic) {
    if (acc.readOnce(doorbell, 'avic:hw-doorbell-read') !== 0) acc.xchg(doorbell, 0, 'avic:hw-vmrun-doorbell-drop');
    evaluate = true;
  }
  for (let step = 0; step < maxSteps; step++) {
    if (acc.readOnce(hostIrr, 'hw:host-irr-read') !== 0) return { reason: ExitReason.EXTERNAL_INTERRUPT };
    if (avic) {
      if (acc.readOnce(doorbell, 'avic:hw-doorbell-read') !== 0 && acc.xchg(doorbell, 0, 'avic:hw-doorbell-ack') !== 0) evaluate = true;
      if (evaluate && (guest.interruptsEnabled?.() ?? true)) {
        const vec = kvmApicHasInterrupt(acc, v);
        if (vec < 0) {
          evaluate = false;
        } else {
          kvmApicAckInterrupt(acc, v, vec);
          ctx.trace.emit(EV.ACK, v, vec);
          guest.onInterrupt(vec);
          ctx.stats.countDelivered(v, vec);
          ctx.trace.emit(EV.DELIVERED, v, vec);
          // The handler's EOI, accelerated; the CPU evaluates the IRR again afterwards.
          ctx.trace.emit(EV.EOI, v, apicSetEoi(acc, v));
          continue;
        }
      }
    }
    const act = guest.step();
    if (act.kind === 'run') continue;
    if (act.kind === 'hlt') return { reason: ExitReason.HLT };
    if (avic && act.msr === MSR_X2APIC_ICR) {
      const r = avicHwIcrWrite(ctx, v, act.lo, act.hi);
      if (r === AVIC_ICR_SELF) evaluate = true;
      else if (r !== AVIC_ICR_DONE) return r;
      continue;
    }
    return { reason: ExitReason.MSR_WRITE, msr: act.msr, lo: act.lo, hi: act.hi };
  }
  return { reason: ExitReason.PREEMPTION_TIMER };
}
