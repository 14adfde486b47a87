/**
 * KVM's side of AMD AVIC (arch/x86/kvm/svm/avic.c, svm.c): the physical APIC ID table entry
 * (IsRunning, host physical APIC ID) maintained at vCPU load/put and around blocking, the
 * doorbell, AVIC_INCOMPLETE_IPI handling and delivery of KVM-originated interrupts.
 *
 *   sender CPU's AVIC (hw/svm/avic.ts)             target vCPU thread
 *   IRR |= bit (locked)                           avic_vcpu_blocking: entry.IsRunning = 0
 *   IsRunning ? doorbell(host id)                  kvm_vcpu_block: set_current_state (smp_mb);
 *             : #VMEXIT(AVIC_INCOMPLETE_IPI)         kvm_vcpu_check_block: vIRR?  else sleep
 *   KVM: avic_kick_target_vcpus -> svm_complete_interrupt_delivery -> kvm_vcpu_wake_up
 *
 * The IRR store must be globally visible before the IsRunning load; family-17h CPUs miss a
 * recent IsRunning clear (erratum #1235), so avic_hardware_setup turns IPI virtualization off
 * there (enable_ipiv = false: the table never says IsRunning, every IPI exits to KVM). Only the
 * pCPU loading/holding the vCPU writes its entry; KVM keeps its own copy of the entry
 * (svm->avic_physical_id_entry), which tracks IsRunning even when the table does not.
 * The per-vCPU ir_list_lock KVM holds around entry updates is not modelled: it serialises
 * against IOMMU IRTE updates (no assigned devices here), not against the CPU, which takes no lock.
 */
import { AVIC_PHYSID, VCPU, type PcpuId, type VcpuId } from '../../mem/layout.js';
import type { Access } from '../../mem/access.js';
import { APIC_IRR } from '../../mem/apicdef.js';
import { vecPos, vecWord } from '../../mem/layout.js';
import { decodeIcr, kvmApicMatchDest } from '../../apic/index.js';
import { IN_GUEST_MODE } from '../modes.js';
import { kvmMakeRequest, KVM_REQ_EVENT } from '../requests.js';
import { kvmVcpuKick, kvmVcpuWakeUp } from '../kick.js';
import { kvmApicSendIpi } from '../irq.js';
import { definePatch } from '../patches.js';
import { EV } from '../../trace/events.js';
import type { GuestExit, KvmCtx } from '../x86-ops.js';
import { AVIC_IPI_FAILURE, AVIC_PHYSICAL_ID_ENTRY, AVIC_PHYSICAL_MAX_INDEX_MASK, avicDoorbellMsrWrite, bootCpuFamily, cpuPhysicalId } from '../../hw/svm/avic.js';

/**
 * Bug patch (AV-1): avic_hardware_setup() leaves IPI virtualization on although the host has
 * erratum #1235 (family 17h / Hygon 18h) — the state before 8de4a1c8164e (and before
 * 9a12fa5213cf for Hygon). __avic_vcpu_load then writes IsRunning = 1 into the table the
 * sender's AVIC reads, and a sender that misses the clear in avic_vcpu_blocking rings a doorbell
 * at a CPU that left guest mode instead of exiting so that KVM wakes the target.
 * @kvm arch/x86/kvm/svm/avic.c avic_hardware_setup (before 8de4a1c8164e)
 */
export const PATCH_AVIC_IPIV_ON_ERRATUM_1235 = definePatch({
  id: 'svm-avic-ipiv-on-erratum-1235',
  step: 'avic_hardware_setup',
  summary: 'enable_ipiv stays on for a family-17h/18h host, so __avic_vcpu_load writes IsRunning=1 into the physical APIC ID table the senders’ AVIC reads',
  origin: { kind: 'revert', ref: '8de4a1c8164e5b2e40d1df764840a31de983f40b', subject: 'KVM: SVM: Disable (x2)AVIC IPI virtualization if CPU has erratum #1235' },
  kernel: 'before v6.17 (AVIC always set IsRunning; the quirk came with the 6.17 IRQ pull, extended to Hygon family 18h by 9a12fa5213cf)',
  vendors: ['svm'],
});

/**
 * enable_ipiv as avic_hardware_setup() leaves it: off on AMD family 17h and Hygon family 18h
 * (erratum #1235), on otherwise (module parameter default).
 * @kvm arch/x86/kvm/svm/avic.c avic_hardware_setup
 */
export function avicEnableIpiv(ctx: Pick<KvmCtx, 'patches'>): boolean {
  if (ctx.patches.has(PATCH_AVIC_IPIV_ON_ERRATUM_1235)) return true;
  const family = bootCpuFamily(ctx);
  return !(family === 0x17 || family === 0x18);
}

/**
 * The backing page address of vCPU v: KVM's own APIC register page (apic->regs).
 * @kvm arch/x86/kvm/svm/avic.c avic_get_backing_page_address
 */
export function avicGetBackingPageAddress(acc: Access, v: VcpuId): number {
  return acc.layout.physAddrOf(acc.layout.apicReg(v, 0));
}

/**
 * vCPU creation: entry = backing page | Valid, in KVM's copy and in the table (a valid entry,
 * not running).
 * @kvm arch/x86/kvm/svm/avic.c avic_init_backing_page
 */
export function avicInitBackingPage(acc: Access, v: VcpuId): void {
  const L = acc.layout;
  const pa = avicGetBackingPageAddress(acc, v);
  const lo = (pa & AVIC_PHYSICAL_ID_ENTRY.BACKING_PAGE_MASK_LO) | 0;
  const hi = (Math.floor(pa / 2 ** 32) & AVIC_PHYSICAL_ID_ENTRY.BACKING_PAGE_MASK_HI) | AVIC_PHYSICAL_ID_ENTRY.VALID_MASK_HI;
  acc.writeOnce(L.avicPhysId(v, AVIC_PHYSID.KVM_ENTRY_LO), lo, 'avic:init');
  acc.writeOnce(L.avicPhysId(v, AVIC_PHYSID.KVM_ENTRY_HI), hi, 'avic:init');
  acc.writeOnce(L.avicPhysId(v, AVIC_PHYSID.ENTRY_LO), lo, 'avic:init');
  acc.writeOnce(L.avicPhysId(v, AVIC_PHYSID.ENTRY_HI), hi, 'avic:init');
}

/** kvm_vcpu_is_blocking(): the vCPU's rcuwait has a task. */
function kvmVcpuIsBlocking(ctx: KvmCtx, v: VcpuId): boolean {
  return ctx.acc.readOnce(ctx.L.vcpu(v, VCPU.WAIT_TASK), 'avic:is-blocking') !== 0;
}

/**
 * Point the entry at `cpu` and mark it running: KVM's copy always, the table only with IPI
 * virtualization (otherwise the CPU never sees IsRunning = 1). The table's low word (host ID)
 * is written before its high word (IsRunning), so a CPU that reads IsRunning = 1 also reads the
 * new host ID.
 * @kvm arch/x86/kvm/svm/avic.c __avic_vcpu_load
 */
export function __avicVcpuLoad(ctx: KvmCtx, v: VcpuId, cpu: PcpuId): void {
  const { acc, L } = ctx;
  let lo = acc.readOnce(L.avicPhysId(v, AVIC_PHYSID.KVM_ENTRY_LO), 'avic:entry-read');
  let hi = acc.readOnce(L.avicPhysId(v, AVIC_PHYSID.KVM_ENTRY_HI), 'avic:entry-read');
  lo = (lo & ~AVIC_PHYSICAL_ID_ENTRY.HOST_PHYSICAL_ID_MASK_LO) | (cpuPhysicalId(cpu) & AVIC_PHYSICAL_ID_ENTRY.HOST_PHYSICAL_ID_MASK_LO);
  hi |= AVIC_PHYSICAL_ID_ENTRY.IS_RUNNING_MASK_HI;
  acc.writeOnce(L.avicPhysId(v, AVIC_PHYSID.KVM_ENTRY_LO), lo, 'avic:entry-write');
  acc.writeOnce(L.avicPhysId(v, AVIC_PHYSID.KVM_ENTRY_HI), hi, 'avic:entry-write');
  if (!avicEnableIpiv(ctx)) hi &= ~AVIC_PHYSICAL_ID_ENTRY.IS_RUNNING_MASK_HI;
  acc.writeOnce(L.avicPhysId(v, AVIC_PHYSID.ENTRY_LO), lo, 'avic:table-write');
  acc.writeOnce(L.avicPhysId(v, AVIC_PHYSID.ENTRY_HI), hi, 'avic:is-running-set');
}

/**
 * Mark the entry not running (the host ID stays): the table only with IPI virtualization, then
 * KVM's copy.
 * @kvm arch/x86/kvm/svm/avic.c __avic_vcpu_put
 */
export function __avicVcpuPut(ctx: KvmCtx, v: VcpuId): void {
  const { acc, L } = ctx;
  const hi = acc.readOnce(L.avicPhysId(v, AVIC_PHYSID.KVM_ENTRY_HI), 'avic:entry-read') & ~AVIC_PHYSICAL_ID_ENTRY.IS_RUNNING_MASK_HI;
  if (avicEnableIpiv(ctx)) acc.writeOnce(L.avicPhysId(v, AVIC_PHYSID.ENTRY_HI), hi, 'avic:is-running-clear');
  acc.writeOnce(L.avicPhysId(v, AVIC_PHYSID.KVM_ENTRY_HI), hi, 'avic:entry-write');
}

/**
 * sched-in / unblocking: nothing while the vCPU is blocking (it was put in avic_vcpu_blocking
 * and is loaded again at avic_vcpu_unblocking), else load.
 * @kvm arch/x86/kvm/svm/avic.c avic_vcpu_load
 */
export function avicVcpuLoad(ctx: KvmCtx, v: VcpuId, cpu: PcpuId): void {
  if (kvmVcpuIsBlocking(ctx, v)) return;
  __avicVcpuLoad(ctx, v, cpu);
}

/**
 * sched-out: nothing if IsRunning is already clear (the vCPU was put on its way to block), else
 * put.
 * @kvm arch/x86/kvm/svm/avic.c avic_vcpu_put
 */
export function avicVcpuPut(ctx: KvmCtx, v: VcpuId): void {
  const hi = ctx.acc.readOnce(ctx.L.avicPhysId(v, AVIC_PHYSID.KVM_ENTRY_HI), 'avic:entry-read');
  if ((hi & AVIC_PHYSICAL_ID_ENTRY.IS_RUNNING_MASK_HI) === 0) return;
  __avicVcpuPut(ctx, v);
}

/**
 * Before the vCPU blocks: put the AVIC (IsRunning = 0) so senders exit and KVM wakes the vCPU;
 * kvm_vcpu_check_block's vIRR check after set_current_state's barrier catches IPIs that saw
 * IsRunning = 1.
 * @kvm arch/x86/kvm/svm/avic.c avic_vcpu_blocking
 */
export function avicVcpuBlocking(ctx: KvmCtx, v: VcpuId): void {
  if (ctx.acc.readOnce(ctx.L.vcpu(v, VCPU.APICV_ACTIVE), 'apicv:active-read') === 0) return;
  __avicVcpuPut(ctx, v);
}

/**
 * After blocking: load the AVIC on the pCPU the vCPU is on.
 * @kvm arch/x86/kvm/svm/avic.c avic_vcpu_unblocking
 */
export function avicVcpuUnblocking(ctx: KvmCtx, v: VcpuId): void {
  if (ctx.acc.readOnce(ctx.L.vcpu(v, VCPU.APICV_ACTIVE), 'apicv:active-read') === 0) return;
  const cpu = ctx.acc.readOnce(ctx.L.vcpu(v, VCPU.CPU), 'vcpu:cpu-read');
  if (cpu >= 0) avicVcpuLoad(ctx, v, cpu);
}

/**
 * APICv toggled on this (running, not blocking) vCPU: load or put the AVIC.
 * @kvm arch/x86/kvm/svm/avic.c avic_refresh_apicv_exec_ctrl
 */
export function avicRefreshApicvExecCtrl(ctx: KvmCtx, v: VcpuId, active: boolean): void {
  if (active) {
    const cpu = ctx.acc.readOnce(ctx.L.vcpu(v, VCPU.CPU), 'vcpu:cpu-read');
    if (cpu >= 0) __avicVcpuLoad(ctx, v, cpu);
  } else {
    __avicVcpuPut(ctx, v);
  }
}

/**
 * Ring the doorbell of the pCPU the vCPU was last seen on (READ_ONCE(vcpu->cpu)), unless that is
 * this pCPU (its VMRUN will look at the IRR). A stale pCPU after a migration is harmless: the
 * vCPU must VMRUN again.
 * @kvm arch/x86/kvm/svm/avic.c avic_ring_doorbell
 */
export function avicRingDoorbell(ctx: KvmCtx, target: VcpuId): void {
  const cpu = ctx.acc.readOnce(ctx.L.vcpu(target, VCPU.CPU), 'avic:cpu-read');
  if (cpu >= 0 && cpu !== ctx.cpu) avicDoorbellMsrWrite(ctx, cpuPhysicalId(cpu));
}

/**
 * After the IRR bit is set: no AVIC → KVM_REQ_EVENT + kick; in guest mode (load-acquire of
 * `mode`, pairing with vcpu_enter_guest's release, then apicv_active) → doorbell; otherwise
 * wake it (VMRUN evaluates the IRR).
 * @kvm arch/x86/kvm/svm/svm.c svm_complete_interrupt_delivery
 */
export function svmCompleteInterruptDelivery(ctx: KvmCtx, target: VcpuId): void {
  const { acc, L } = ctx;
  const inGuest = acc.loadAcquire(L.vcpu(target, VCPU.MODE), 'avic:mode-read') === IN_GUEST_MODE;
  if (acc.readOnce(L.vcpu(target, VCPU.APICV_ACTIVE), 'apicv:active-read') === 0) {
    kvmMakeRequest(acc, target, KVM_REQ_EVENT);
    kvmVcpuKick(ctx, target);
    return;
  }
  if (inGuest) avicRingDoorbell(ctx, target);
  else kvmVcpuWakeUp(ctx, target);
}

/**
 * KVM-originated fixed interrupt: set the IRR bit in the backing page (locked), then complete.
 * @kvm arch/x86/kvm/svm/svm.c svm_deliver_interrupt
 */
export function svmDeliverInterrupt(ctx: KvmCtx, target: VcpuId, vector: number): void {
  const { acc, L } = ctx;
  if (acc.testAndSetBit(L.apicBitmapWord(target, APIC_IRR, vecWord(vector)), vecPos(vector), 'avic:irr-set')) {
    ctx.stats.countCoalesced(target, vector);
    ctx.trace.emit(EV.COALESCED, target, vector, 2);
  } else {
    ctx.trace.emit(EV.IRR_SET, target, vector);
  }
  acc.writeOnce(L.vcpu(target, VCPU.IRR_PENDING), 1, 'apic:irr-pending');
  // smp_mb__after_atomic(): the locked set_bit above is the fence (pairs with the mode store in
  // vcpu_enter_guest).
  svmCompleteInterruptDelivery(ctx, target);
}

/**
 * A target of an IPI the AVIC could not complete: the CPU already set its IRR bit; make sure it
 * notices (irr_pending, then doorbell / wake / kick).
 * @kvm arch/x86/kvm/svm/avic.c avic_kick_vcpu
 */
export function avicKickVcpu(ctx: KvmCtx, target: VcpuId): void {
  ctx.acc.writeOnce(ctx.L.vcpu(target, VCPU.IRR_PENDING), 1, 'avic:irr-pending');
  svmCompleteInterruptDelivery(ctx, target);
}

/**
 * Fast path of avic_kick_target_vcpus: a physical destination is the table index (APIC ID ==
 * vCPU ID, or AVIC is inhibited); an x2APIC logical destination names cluster and bitmap, each
 * bit one physical ID. Returns false when the slow path must match every vCPU (broadcast,
 * shorthand, xAPIC logical mode, which needs the logical ID table).
 * @kvm arch/x86/kvm/svm/avic.c avic_kick_target_vcpus_fast
 */
export function avicKickTargetVcpusFast(ctx: KvmCtx, icrl: number, icrh: number, index: number): boolean {
  const icr = decodeIcr(icrl, icrh, true);
  if (icr.shorthand !== 'none') return false;
  const dest = icrh >>> 0;
  if (icr.destMode === 'physical') {
    if (dest === 0xffffffff || dest !== index) return false;
    if (dest < ctx.nrVcpus) avicKickVcpu(ctx, dest);
    return true;
  }
  const bitmap = dest & 0xffff;
  const cluster = (dest >>> 16) << 4;
  for (let i = 0; i < 16; i++) if ((bitmap >>> i) & 1 && cluster + i < ctx.nrVcpus) avicKickVcpu(ctx, cluster + i);
  return true;
}

/**
 * TARGET_NOT_RUNNING: kick the IPI's targets (fast path by ID, else every vCPU the ICR matches).
 * No doorbell is needed for vCPUs that were in guest mode (the CPU rang it) or have entered since
 * (their VMRUN evaluated the IRR); svm_complete_interrupt_delivery decides per target.
 * @kvm arch/x86/kvm/svm/avic.c avic_kick_target_vcpus
 */
export function avicKickTargetVcpus(ctx: KvmCtx, source: VcpuId, icrl: number, icrh: number, index: number): void {
  if (avicKickTargetVcpusFast(ctx, icrl, icrh, index)) return;
  const icr = decodeIcr(icrl, icrh, true);
  for (let t = 0; t < ctx.nrVcpus; t++) if (kvmApicMatchDest(ctx.acc, t, source, icr.shorthand, icr.dest, icr.destMode, true)) avicKickVcpu(ctx, t);
}

/**
 * #VMEXIT(AVIC_INCOMPLETE_IPI) of vCPU `v`: decode exit_info_1 (ICR high:low) and exit_info_2
 * (failure id : table index) and finish the IPI — emulate it when the CPU did not handle it
 * (invalid target, not a fixed edge interrupt), kick the targets when one was not running.
 * @kvm arch/x86/kvm/svm/avic.c avic_incomplete_ipi_interception
 */
export function avicIncompleteIpiInterception(ctx: KvmCtx, v: VcpuId, exit: GuestExit): void {
  const icrh = exit.exitInfo1?.hi ?? 0;
  const icrl = exit.exitInfo1?.lo ?? 0;
  const id = exit.exitInfo2?.hi ?? -1;
  const index = (exit.exitInfo2?.lo ?? 0) & AVIC_PHYSICAL_MAX_INDEX_MASK;
  switch (id) {
    case AVIC_IPI_FAILURE.INVALID_TARGET:
    case AVIC_IPI_FAILURE.INVALID_INT_TYPE:
      // The exit is a trap: the ICR holds the value; KVM only emulates the IPI.
      kvmApicSendIpi(ctx, v, decodeIcr(icrl, icrh, true));
      break;
    case AVIC_IPI_FAILURE.TARGET_NOT_RUNNING:
      // The CPU has already set the IRR bits of every valid target; just kick them.
      avicKickTargetVcpus(ctx, v, icrl, icrh, index);
      break;
    case AVIC_IPI_FAILURE.INVALID_BACKING_PAGE:
      ctx.stats.count('avicInvalidBackingPage');
      break;
    case AVIC_IPI_FAILURE.INVALID_IPI_VECTOR:
      // Vector < 16: nothing to do.
      break;
    default:
      ctx.stats.count('avicUnknownIncompleteIpi');
  }
}
