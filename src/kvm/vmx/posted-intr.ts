/**
 * KVM's side of VMX posted interrupts: the sender (vmx_deliver_interrupt and friends) and the
 * receiver's pre-entry sync (vmx_sync_pir_to_irr).
 *
 * Ordering (domain notes 2.5):
 *   O1 sender:   PIR bit (locked) -> ON test-and-set (locked, full fence) -> read target mode
 *   O2 receiver: mode = IN_GUEST_MODE -> full fence -> read ON          (SB pair with O1)
 *   O3 receiver: clear ON before harvesting the PIR, never the reverse
 *   O4 blocking: list add -> NV := POSTED_INTR_WAKEUP_VECTOR -> re-check ON (self-IPI if set)
 *   O5 while NV == WAKEUP, NDST names the pCPU whose wakeup list holds the vCPU; the list is
 *      changed only under that pCPU's raw spinlock
 *
 * Blocked vCPUs (posted_intr.c, the 6.16 design from d76fb40637fc "KVM: VMX: Handle PI
 * descriptor updates during vcpu_put/load"): posting *hardware* (IPI virtualization, VT-d)
 * notifies NV at NDST and never wakes anyone, so a vCPU that schedules out to block
 * (vmx_vcpu_pi_put) joins its pCPU's wakeup list and switches NV to the wakeup vector, whose
 * handler (pi_wakeup_handler) wakes every listed vCPU with ON set; scheduling back in
 * (vmx_vcpu_pi_load) undoes that, following the vCPU to a new pCPU (NDST), and clears SN.
 */
import { PID, VCPU, VMX_PCPU, VMX_VCPU, vecPos, vecWord, type Addr, type Layout, type PcpuId, type VcpuId } from '../../mem/layout.js';
import type { Access } from '../../mem/access.js';
import { APIC_IRR } from '../../mem/apicdef.js';
import { IN_GUEST_MODE } from '../modes.js';
import { kvmMakeRequest, KVM_REQ_EVENT } from '../requests.js';
import { apicSendIpiHost, kvmVcpuKick, kvmVcpuWakeUp, POSTED_INTR_VECTOR, POSTED_INTR_WAKEUP_VECTOR } from '../kick.js';
import { apicFindHighestIrr } from '../../apic/index.js';
import { EV } from '../../trace/events.js';
import type { KvmCtx } from '../x86-ops.js';
import { kvmApicUpdateIrr } from '../lapic-pir.js';
import { PI_NV_SHIFT, POSTED_INTR_ON, POSTED_INTR_SN, piClearOn, piIsPirEmpty, piNv, piSetOn, piSetSn, piTestAndClearSn, piTestAndSetOn, piTestAndSetPir, piTestOn } from '../../hw/vmx/pi-desc.js';
import { spinLock, spinUnlock } from '../../sync/spinlock.js';
import { definePatch } from '../patches.js';
import { EmuError } from '../../errors.js';

/**
 * Notify a vCPU that its PIR has work: a notification IPI if it is in guest mode on another
 * pCPU, otherwise a wake-up (KVM syncs the PIR at the next entry).
 * @kvm arch/x86/kvm/vmx/common.h kvm_vcpu_trigger_posted_interrupt
 */
export function kvmVcpuTriggerPostedInterrupt(ctx: KvmCtx, target: VcpuId, piVec: number): void {
  const { acc, L } = ctx;
  if (acc.readOnce(L.vcpu(target, VCPU.MODE), 'pi:mode-read') === IN_GUEST_MODE) {
    // The vector is already in the PIR. Notify unless the target is the vCPU running on this
    // very thread (fastpath VM-exit): it syncs the PIR before re-entering.
    if (target !== ctx.runningVcpu) {
      apicSendIpiHost(ctx, acc.readOnce(L.vcpu(target, VCPU.CPU), 'pi:cpu-read'), piVec);
    }
    return;
  }
  // Not in the guest: wake it in case it blocks; otherwise vcpu_enter_guest syncs the PIR.
  kvmVcpuWakeUp(ctx, target);
}

/**
 * Post `vector` to `target`'s descriptor.
 * @kvm arch/x86/kvm/vmx/common.h __vmx_deliver_posted_interrupt
 */
export function vmxDeliverPostedInterruptRaw(ctx: KvmCtx, target: VcpuId, vector: number): void {
  if (piTestAndSetPir(ctx.acc, target, vector)) {
    ctx.stats.countCoalesced(target, vector);
    ctx.trace.emit(EV.COALESCED, target, vector, 1);
    return;
  }
  ctx.trace.emit(EV.PIR_SET, target, vector);
  // If a previous notification has sent the IPI, nothing to do. Pairs with the mode store +
  // smp_mb in vcpuEnterGuest (O1/O2).
  if (piTestAndSetOn(ctx.acc, target)) return;
  ctx.trace.emit(EV.ON_SET, target, vector);
  kvmVcpuTriggerPostedInterrupt(ctx, target, POSTED_INTR_VECTOR);
}

/**
 * Posted delivery if APICv is active on the target; -1 otherwise.
 * @kvm arch/x86/kvm/vmx/vmx.c vmx_deliver_posted_interrupt
 */
export function vmxDeliverPostedInterrupt(ctx: KvmCtx, target: VcpuId, vector: number): number {
  if (ctx.acc.readOnce(ctx.L.vcpu(target, VCPU.APICV_ACTIVE), 'apicv:active-read') === 0) return -1;
  vmxDeliverPostedInterruptRaw(ctx, target, vector);
  return 0;
}

/**
 * The vendor deliver_interrupt hook: posted if possible, else IRR + KVM_REQ_EVENT + kick.
 * @kvm arch/x86/kvm/vmx/vmx.c vmx_deliver_interrupt
 */
export function vmxDeliverInterrupt(ctx: KvmCtx, target: VcpuId, vector: number): void {
  if (vmxDeliverPostedInterrupt(ctx, target, vector) !== 0) {
    // kvm_lapic_set_irr(): set the IRR bit (locked), then the irr_pending hint.
    const { acc, L } = ctx;
    const already = acc.testAndSetBit(L.apicBitmapWord(target, APIC_IRR, vecWord(vector)), vecPos(vector), 'apic:irr-set');
    acc.writeOnce(L.vcpu(target, VCPU.IRR_PENDING), 1, 'apic:irr-pending');
    if (already) {
      ctx.stats.countCoalesced(target, vector);
      ctx.trace.emit(EV.COALESCED, target, vector, 2);
    } else {
      ctx.trace.emit(EV.IRR_SET, target, vector);
    }
    kvmMakeRequest(ctx.acc, target, KVM_REQ_EVENT);
    kvmVcpuKick(ctx, target);
  }
}

/**
 * Write RVI (GUEST_INTR_STATUS 7:0), keeping SVI.
 * @kvm arch/x86/kvm/vmx/vmx.c vmx_set_rvi
 */
export function vmxSetRvi(ctx: KvmCtx, v: VcpuId, vector: number): void {
  const a = ctx.L.vcpu(v, VCPU.GUEST_INTR_STATUS);
  const st = ctx.acc.readOnce(a, 'vmcs:intr-status-read');
  const rvi = vector < 0 ? 0 : vector & 0xff;
  if ((st & 0xff) !== rvi) ctx.acc.writeOnce(a, (st & ~0xff) | rvi, 'vmcs:rvi-write');
}

/**
 * Pre-entry sync: if ON, clear it (O3: before harvesting), move the PIR into the vIRR, and
 * point RVI at the highest vIRR vector (APICv) or raise KVM_REQ_EVENT (no APICv).
 * @kvm arch/x86/kvm/vmx/vmx.c vmx_sync_pir_to_irr
 */
export function vmxSyncPirToIrr(ctx: KvmCtx, v: VcpuId): number {
  const { acc } = ctx;
  let maxIrr: number;
  let got = false;
  if (piTestOn(acc, v)) {
    piClearOn(acc, v);
    // smp_mb__after_atomic(): the clear_bit above is locked, a full fence on x86.
    const r = kvmApicUpdateIrr(ctx, v);
    maxIrr = r.maxIrr;
    got = r.got;
    ctx.stats.count('pirSyncs');
    ctx.trace.emit(EV.PIR_SYNC, v, maxIrr);
  } else {
    maxIrr = apicFindHighestIrr(acc, v);
  }
  if (acc.readOnce(ctx.L.vcpu(v, VCPU.APICV_ACTIVE), 'apicv:active-read') !== 0) vmxSetRvi(ctx, v, maxIrr);
  else if (got) kvmMakeRequest(acc, v, KVM_REQ_EVENT);
  return maxIrr;
}

// ---- Blocked vCPUs: the per-pCPU wakeup list, vmx_vcpu_pi_put / vmx_vcpu_pi_load ----

/**
 * Bug patch (PI-3): pi_enable_wakeup_handler switches NV to the wakeup vector but does not look
 * at ON again. An interrupt that hardware posted between the vCPU's last runnable check and the
 * NV switch was notified on POSTED_INTR_VECTOR, which the host ignores outside guest mode; with
 * ON set no later post notifies at all, so the vCPU sleeps with the interrupt pending.
 * No kernel we know of lacked the re-check: up to v5.16 pi_pre_block re-read ON after the NV
 * switch and refused to block (every version of it read for this project has it); d76fb40637fc
 * (v5.17) moved the work to sched-out, where the re-check became a self-IPI of the wakeup vector.
 * @kvm arch/x86/kvm/vmx/posted_intr.c pi_enable_wakeup_handler (without `if (pi_test_on(&new)) __apic_send_IPI_self(POSTED_INTR_WAKEUP_VECTOR)`)
 */
export const PATCH_PI_WAKEUP_NO_ON_RECHECK = definePatch({
  id: 'vmx-pi-wakeup-no-on-recheck',
  step: 'pi_enable_wakeup_handler',
  summary: 'no ON re-check after NV := POSTED_INTR_WAKEUP_VECTOR (no wakeup self-IPI): an interrupt posted just before the switch is notified on POSTED_INTR_VECTOR and ignored while the vCPU sleeps',
  origin: {
    kind: 'hypothetical',
    ref: 'd76fb40637fc0e84b27bf431cd72cf8fe3f813ef',
    subject: 'KVM: VMX: Handle PI descriptor updates during vcpu_put/load (posted as "[PATCH v3 04/26] KVM: VMX: Handle PI wakeup shenanigans during vcpu_put/load", 2021-12-08) — the commit that gave the ON re-check its self-IPI form; before it pi_pre_block re-checked ON and refused to block',
  },
  kernel: 'none known (pi_pre_block re-checks ON up to v5.16, pi_enable_wakeup_handler self-IPIs since v5.17)',
  vendors: ['vmx'],
});

/** LIST_POISON: a node's links after list_del. */
const LIST_POISON = -1;
/** NV field mask of the control word. */
const NV_MASK = 0xff << PI_NV_SHIFT;

/** Address of the `next` (or `prev`) link of list entry `ref` on pCPU `cpu`'s list: 0 = the head, v + 1 = vCPU v's node. */
function linkAddr(L: Layout, cpu: PcpuId, ref: number, next: boolean): Addr {
  if (ref === 0) return L.vmxPcpu(cpu, next ? VMX_PCPU.WAKEUP_NEXT : VMX_PCPU.WAKEUP_PREV);
  return L.vmxVcpu(ref - 1, next ? VMX_VCPU.PI_WAKEUP_NEXT : VMX_VCPU.PI_WAKEUP_PREV);
}

/** CONFIG_DEBUG_LIST: a link that names no entry of the list is corruption. */
function checkLink(ctx: KvmCtx, cpu: PcpuId, ref: number, what: string): number {
  if (!Number.isInteger(ref) || ref < 0 || ref > ctx.nrVcpus) {
    throw new EmuError('EMU_ERR_INTERNAL', `${ctx.acc.name}: wakeup_vcpus_on_cpu of CPU ${cpu} corrupted: ${what} = ${ref}`, { actor: ctx.acc.name });
  }
  return ref;
}

/**
 * list_add_tail(&vt->pi_wakeup_list, &per_cpu(wakeup_vcpus_on_cpu, cpu)); the caller holds the
 * pCPU's wakeup lock.
 * @kvm include/linux/list.h list_add_tail
 */
function wakeupListAddTail(ctx: KvmCtx, cpu: PcpuId, v: VcpuId): void {
  const { acc, L } = ctx;
  const last = checkLink(ctx, cpu, acc.readOnce(L.vmxPcpu(cpu, VMX_PCPU.WAKEUP_PREV), 'pi:wakeup-list-read'), 'head.prev');
  acc.writeOnce(L.vmxVcpu(v, VMX_VCPU.PI_WAKEUP_NEXT), 0, 'pi:wakeup-list-add');
  acc.writeOnce(L.vmxVcpu(v, VMX_VCPU.PI_WAKEUP_PREV), last, 'pi:wakeup-list-add');
  acc.writeOnce(linkAddr(L, cpu, last, true), v + 1, 'pi:wakeup-list-add');
  acc.writeOnce(L.vmxPcpu(cpu, VMX_PCPU.WAKEUP_PREV), v + 1, 'pi:wakeup-list-add');
}

/**
 * list_del(&vt->pi_wakeup_list) from pCPU `cpu`'s list; the caller holds that pCPU's lock.
 * @kvm include/linux/list.h list_del
 */
function wakeupListDel(ctx: KvmCtx, cpu: PcpuId, v: VcpuId): void {
  const { acc, L } = ctx;
  const next = checkLink(ctx, cpu, acc.readOnce(L.vmxVcpu(v, VMX_VCPU.PI_WAKEUP_NEXT), 'pi:wakeup-list-read'), `vcpu${v}.next`);
  const prev = checkLink(ctx, cpu, acc.readOnce(L.vmxVcpu(v, VMX_VCPU.PI_WAKEUP_PREV), 'pi:wakeup-list-read'), `vcpu${v}.prev`);
  acc.writeOnce(linkAddr(L, cpu, next, false), prev, 'pi:wakeup-list-del');
  acc.writeOnce(linkAddr(L, cpu, prev, true), next, 'pi:wakeup-list-del');
  acc.writeOnce(L.vmxVcpu(v, VMX_VCPU.PI_WAKEUP_NEXT), LIST_POISON, 'pi:wakeup-list-del');
  acc.writeOnce(L.vmxVcpu(v, VMX_VCPU.PI_WAKEUP_PREV), LIST_POISON, 'pi:wakeup-list-del');
}

/**
 * A pCPU's wakeup list and lock at boot: INIT_LIST_HEAD, raw_spin_lock_init.
 * @kvm arch/x86/kvm/vmx/posted_intr.c pi_init_cpu
 */
export function piInitCpu(acc: Access, cpu: PcpuId): void {
  const L = acc.layout;
  for (const f of [VMX_PCPU.WAKEUP_LOCK, VMX_PCPU.WAKEUP_LOCK + 1, VMX_PCPU.WAKEUP_NEXT, VMX_PCPU.WAKEUP_PREV]) acc.writeOnce(L.vmxPcpu(cpu, f), 0, 'pi:init-cpu');
}

/**
 * A vCPU's wakeup-list node at creation (INIT_LIST_HEAD: it points at itself) and its IPI
 * virtualization setting.
 * @kvm arch/x86/kvm/vmx/vmx.c vmx_vcpu_create (INIT_LIST_HEAD(&vt->pi_wakeup_list), enable_ipiv)
 */
export function piInitVcpu(acc: Access, v: VcpuId, ipiv: boolean): void {
  const L = acc.layout;
  acc.writeOnce(L.vmxVcpu(v, VMX_VCPU.PI_WAKEUP_NEXT), v + 1, 'pi:init-vcpu');
  acc.writeOnce(L.vmxVcpu(v, VMX_VCPU.PI_WAKEUP_PREV), v + 1, 'pi:init-vcpu');
  acc.writeOnce(L.vmxVcpu(v, VMX_VCPU.IPIV), ipiv ? 1 : 0, 'pi:init-vcpu');
}

/**
 * The vCPUs on pCPU `cpu`'s wakeup list, in list order (a racy snapshot for checkers and
 * reports; stops at a link that names no entry).
 * @emulator
 */
export function piWakeupListVcpus(acc: Access, cpu: PcpuId): VcpuId[] {
  const L = acc.layout;
  const out: VcpuId[] = [];
  let ref = acc.peek(L.vmxPcpu(cpu, VMX_PCPU.WAKEUP_NEXT));
  while (ref > 0 && ref <= L.config.vcpus && out.length <= L.config.vcpus) {
    out.push(ref - 1);
    ref = acc.peek(L.vmxVcpu(ref - 1, VMX_VCPU.PI_WAKEUP_NEXT));
  }
  return out;
}

/**
 * Must a blocked vCPU be woken by the wakeup vector? Only if hardware can post to it while it
 * sleeps: IPI virtualization (never for a TD vCPU) or VT-d posting for an assigned device. The
 * machine has no assigned device of its own; its VMX vCPUs have IPIv (KVM's enable_ipiv).
 * @kvm arch/x86/kvm/vmx/posted_intr.c vmx_needs_pi_wakeup
 */
export function vmxNeedsPiWakeup(ctx: KvmCtx, v: VcpuId): boolean {
  return ctx.acc.readOnce(ctx.L.vmxVcpu(v, VMX_VCPU.IPIV), 'pi:ipiv-read') !== 0;
}

/**
 * The vCPU schedules out to block (IRQs off): join this pCPU's wakeup list under its raw
 * spinlock, switch NV to POSTED_INTR_WAKEUP_VECTOR (cmpxchg loop: the hardware may set ON
 * meanwhile), then — if ON is set in the control word just installed — send this pCPU the
 * wakeup vector: an interrupt posted before the switch was notified on POSTED_INTR_VECTOR, and
 * try_to_wake_up() cannot be called from the scheduler.
 * @kvm arch/x86/kvm/vmx/posted_intr.c pi_enable_wakeup_handler
 */
export function piEnableWakeupHandler(ctx: KvmCtx, v: VcpuId): void {
  const { acc, L } = ctx;
  const cpu = acc.readOnce(L.vcpu(v, VCPU.CPU), 'pi:wakeup-vcpu-cpu-read');
  const lock = L.vmxPcpu(cpu, VMX_PCPU.WAKEUP_LOCK);
  spinLock(acc, lock, 'pi:wakeup-list-lock');
  wakeupListAddTail(ctx, cpu, v);
  spinUnlock(acc, lock, 'pi:wakeup-list-unlock');
  const control = L.pid(v, PID.CONTROL);
  let old = acc.readOnce(control, 'pi:wakeup-control-read');
  let next: number;
  for (;;) {
    next = (old & ~NV_MASK) | (POSTED_INTR_WAKEUP_VECTOR << PI_NV_SHIFT);
    const found = acc.cmpxchg(control, old, next, 'pi:wakeup-nv-cmpxchg');
    if (found === old) break;
    old = found;
  }
  if (ctx.patches.has(PATCH_PI_WAKEUP_NO_ON_RECHECK)) {
    // Patched: no ON re-check; a notification that came on POSTED_INTR_VECTOR is lost.
    return;
  }
  if ((next & (1 << POSTED_INTR_ON)) !== 0) {
    // __apic_send_IPI_self(POSTED_INTR_WAKEUP_VECTOR): pending until this pCPU enables IRQs.
    ctx.stats.count('piWakeupSelfIpis');
    apicSendIpiHost(ctx, ctx.cpu >= 0 ? ctx.cpu : cpu, POSTED_INTR_WAKEUP_VECTOR);
  }
}

/**
 * sched-out: a vCPU that blocks (not preempted; guest interrupts enabled — the machine's guests
 * halt with IF = 1) gets the wakeup handler; otherwise notifications are suppressed (SN), as a
 * PIR → ON propagation at load is cheaper than a spurious IRQ.
 * @kvm arch/x86/kvm/vmx/posted_intr.c vmx_vcpu_pi_put
 */
export function vmxVcpuPiPut(ctx: KvmCtx, v: VcpuId): void {
  const { acc, L } = ctx;
  if (!vmxNeedsPiWakeup(ctx, v)) return;
  const preempted = acc.readOnce(L.vcpu(v, VCPU.PREEMPTED), 'vcpu:preempted-read') !== 0;
  // kvm_vcpu_is_blocking(): rcuwait_active(&vcpu->wait).
  const blocking = acc.readOnce(L.vcpu(v, VCPU.WAIT_TASK), 'vcpu:wait-task-read') !== 0;
  if (!preempted && blocking) piEnableWakeupHandler(ctx, v);
  else piSetSn(acc, v);
}

/**
 * sched-in on `cpu` (vcpu->cpu still names the previous pCPU): if the vCPU neither waited for a
 * wakeup nor moved, only clear SN; otherwise, with IRQs off, leave the *previous* pCPU's wakeup
 * list under that pCPU's lock, then NDST := cpu, SN := 0, NV := POSTED_INTR_VECTOR. Finally (a
 * locked op before it is the full barrier) set ON if the PIR holds anything, so the next
 * VM-entry syncs what was posted while SN was set or the vCPU slept.
 * @kvm arch/x86/kvm/vmx/posted_intr.c vmx_vcpu_pi_load
 */
export function vmxVcpuPiLoad(ctx: KvmCtx, v: VcpuId, cpu: PcpuId): void {
  const { acc, L } = ctx;
  const control = L.pid(v, PID.CONTROL);
  const prev = acc.readOnce(L.vcpu(v, VCPU.CPU), 'pi:load-vcpu-cpu-read');
  const wakeup = piNv(acc.readOnce(control, 'pi:load-control-read')) === POSTED_INTR_WAKEUP_VECTOR;
  if (!wakeup && prev === cpu) {
    if (!piTestAndClearSn(acc, v)) return;
  } else {
    if (wakeup) {
      const lock = L.vmxPcpu(prev, VMX_PCPU.WAKEUP_LOCK);
      spinLock(acc, lock, 'pi:wakeup-list-lock');
      wakeupListDel(ctx, prev, v);
      spinUnlock(acc, lock, 'pi:wakeup-list-unlock');
    }
    // The kernel writes NDST, SN and NV in one cmpxchg64 of the control field; NDST is its own
    // word here, written first (a post in between notifies a pCPU whose list lacks the vCPU,
    // which is being loaded anyway and catches the PIR below).
    if (acc.readOnce(L.pid(v, PID.NDST), 'pi:load-ndst-read') !== cpu) acc.xchg(L.pid(v, PID.NDST), cpu, 'pi:load-ndst-write');
    let old = acc.readOnce(control, 'pi:load-control-read');
    for (;;) {
      const next = (old & ~(NV_MASK | (1 << POSTED_INTR_SN))) | (POSTED_INTR_VECTOR << PI_NV_SHIFT);
      const found = acc.cmpxchg(control, old, next, 'pi:load-nv-cmpxchg');
      if (found === old) break;
      old = found;
    }
  }
  // smp_mb__after_atomic(): the locked op above already is the full barrier on x86 (O6).
  if (!piIsPirEmpty(acc, v)) piSetOn(acc, v);
}

/**
 * The POSTED_INTR_WAKEUP_VECTOR handler on this pCPU: under its wakeup lock, wake every listed
 * vCPU whose descriptor has ON set.
 * @kvm arch/x86/kvm/vmx/posted_intr.c pi_wakeup_handler
 */
export function piWakeupHandler(ctx: KvmCtx): void {
  const { acc, L } = ctx;
  const cpu = ctx.cpu;
  if (cpu < 0) return;
  ctx.stats.count('piWakeupHandlers');
  const lock = L.vmxPcpu(cpu, VMX_PCPU.WAKEUP_LOCK);
  spinLock(acc, lock, 'pi:wakeup-list-lock');
  try {
    let ref = checkLink(ctx, cpu, acc.readOnce(L.vmxPcpu(cpu, VMX_PCPU.WAKEUP_NEXT), 'pi:wakeup-list-walk'), 'head.next');
    for (let n = 0; ref !== 0; n++) {
      if (n > ctx.nrVcpus) throw new EmuError('EMU_ERR_INTERNAL', `${acc.name}: wakeup_vcpus_on_cpu of CPU ${cpu} corrupted: a cycle`, { actor: acc.name });
      const v = ref - 1;
      if ((acc.readOnce(L.pid(v, PID.CONTROL), 'pi:wakeup-on-read') & (1 << POSTED_INTR_ON)) !== 0) kvmVcpuWakeUp(ctx, v);
      ref = checkLink(ctx, cpu, acc.readOnce(L.vmxVcpu(v, VMX_VCPU.PI_WAKEUP_NEXT), 'pi:wakeup-list-walk'), `vcpu${v}.next`);
    }
  } finally {
    spinUnlock(acc, lock, 'pi:wakeup-list-unlock');
  }
}
