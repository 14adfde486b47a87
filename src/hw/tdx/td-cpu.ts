/**
 * A TD vCPU's trip through the TDX module and the CPU: the SEAMCALL TDH.VP.ENTER, the TD in SEAM
 * non-root operation, the TD exit into SEAM root, the module's td_vmexit_to_vmm and the SEAMRET
 * back to KVM (VMX root). What KVM cannot see or change happens here:
 *
 * - Posted interrupts. The TDX module always runs a TD with APICv (posted-interrupt processing
 *   and virtual-interrupt delivery in the TD VMCS), whatever KVM's `apicv_active` says: a
 *   notification vector arriving in SEAM non-root is processed in place (PIR → vIRR, RVI);
 *   KVM only posts and notifies (kvm/vmx/tdx.ts).
 * - HLT. A TD halts with TDG.VP.VMCALL(HLT). Linux's TD idle runs with interrupts off and ends
 *   in STI; TDCALL: a notification that arrives meanwhile is still processed, but the virtual
 *   interrupt cannot be delivered before the TDCALL completes (IF = 0, then the STI shadow), so
 *   the TD can exit for HLT with RVI pending and ON already clear — visible to KVM only through
 *   the module's TD_VCPU_STATE_DETAILS_NON_ARCH.
 * - Host NMIs. SEAMCALL saves the NMI-blocking state into the SEAMCALL VMCS and SEAM root runs
 *   with NMIs inhibited; an NMI in SEAM non-root causes an NMI exit (the NMI is consumed, NMIs
 *   blocked); SEAMRET reloads blocking from the SEAMCALL VMCS, and a pending NMI is delivered
 *   at once if that says "unblocked". Today's module never propagates the blocking of an
 *   NMI-caused exit into the SEAMCALL VMCS ({@link PATCH_TDX_MODULE_NMI_UNBLOCKED_AT_SEAMRET}).
 * - Virtual NMIs. KVM writes PEND_NMI in the TDVPS (TDH.VP.WR); the module injects it into the
 *   TD at the next entry.
 */
import { PCPU, PID, VCPU, type VcpuId } from '../../mem/layout.js';
import { APIC_PROCPRI } from '../../mem/apicdef.js';
import { FIRST_SYSTEM_VECTOR_WORD } from '../../kvm/kick.js';
import { definePatch } from '../../kvm/patches.js';
import { ExitReason, type GuestExit, type GuestProgram, type KvmCtx } from '../../kvm/x86-ops.js';
import { piNv } from '../vmx/pi-desc.js';
import { vmxEvaluatePendingVirtualInterrupt, vmxProcessPostedInterrupts } from '../vmx/cpu.js';
import { cpuNmiAccept, cpuNmiBlocked, cpuNmiPending, cpuSetNmiBlocked } from '../nmi.js';

/**
 * Hardware patch (NMI-2): the TDX module as it is today. On an NMI-caused TD exit,
 * td_vmexit_to_vmm does not set blocking-by-NMI in the SEAMCALL VMCS, so SEAMRET reloads "NMIs
 * unblocked" and an NMI that became pending in SEAM root is delivered through the host IDT
 * before KVM calls the handler for the NMI that caused the exit. The unpatched machine runs the
 * module change Sean Christopherson proposed in seed 002's thread
 * (`set_guest_inter_blocking_by_nmi()` before the SEAMRET of an NMI-caused exit) — a firmware
 * change, not a kernel fix: no kernel can prevent the inversion alone.
 * @kvm intel/tdx-module src/td_transitions/td_exit.c td_vmexit_to_vmm (TDX module 1.5)
 */
export const PATCH_TDX_MODULE_NMI_UNBLOCKED_AT_SEAMRET = definePatch({
  id: 'tdx-module-nmi-unblocked-at-seamret',
  step: 'td_vmexit_to_vmm (TDX module)',
  summary: 'on an NMI-caused TD exit the module leaves the SEAMCALL VMCS saying "NMIs unblocked", so SEAMRET unblocks NMIs before KVM has handled the exiting NMI',
  origin: {
    kind: 'hardware',
    ref: 'intel/tdx-module TDX_1.5.x src/td_transitions/td_exit.c; seed 002_0386f14b5b8a249e.txt',
    subject: 'today\'s TDX module (no step propagates blocking-by-NMI to the SEAMCALL VMCS); the proposed module fix is Sean Christopherson\'s set_guest_inter_blocking_by_nmi() in "Re: [PATCH 0/7] KVM: TDX: TD vcpu enter/exit" (Nov 2024)',
  },
  kernel: 'every TDX host (6.16 and later) with today\'s TDX module; the kernel cannot prevent it (6.16 only narrows the window by calling vmx_handle_nmi in the noinstr tdx_vcpu_enter_exit)',
  vendors: ['tdx'],
});

/**
 * VMXIP of TD_VCPU_STATE_DETAILS_NON_ARCH: a virtual interrupt is pending (RVI above VPPR).
 * @kvm arch/x86/kvm/vmx/tdx_arch.h TDX_VCPU_STATE_DETAILS_INTR_PENDING
 */
export const TDX_VCPU_STATE_DETAILS_INTR_PENDING = 1;

/**
 * Polls of the TD's idle entry: Linux's TD idle (do_idle → tdx_safe_halt) runs with interrupts
 * disabled before its STI; TDCALL(HLT). A notification taken meanwhile is processed but not
 * delivered. (A property of the guest kernel, the same for every variant.)
 */
export const TD_IDLE_ENTRY_POLLS = 4;

/**
 * TDH.VP.RD of TD_VCPU_STATE_DETAILS_NON_ARCH: the module computes VMXIP from the TD VMCS
 * (RVI, guest interrupt status) and the virtual APIC's PPR.
 * @kvm arch/x86/kvm/vmx/tdx.c td_state_non_arch_read64(TD_VCPU_STATE_DETAILS_NON_ARCH) (TDX module TDH.VP.RD)
 */
export function tdhVpRdVcpuStateDetails(ctx: KvmCtx, v: VcpuId): number {
  const { acc, L } = ctx;
  const rvi = acc.readOnce(L.vcpu(v, VCPU.GUEST_INTR_STATUS), 'tdx:vp-rd-rvi') & 0xff;
  const vppr = acc.readOnce(L.apicReg(v, APIC_PROCPRI), 'tdx:vp-rd-vppr');
  return rvi !== 0 && (rvi & 0xf0) > (vppr & 0xf0) ? TDX_VCPU_STATE_DETAILS_INTR_PENDING : 0;
}

/**
 * TDH.VP.WR of PEND_NMI = 1 in the TD vCPU's TDVPS (management field).
 * @kvm arch/x86/kvm/vmx/tdx.c td_management_write8(TD_VCPU_PEND_NMI, 1) (TDX module TDH.VP.WR)
 */
export function tdhVpWrPendNmi(ctx: KvmCtx, v: VcpuId): void {
  ctx.acc.writeOnce(ctx.L.vcpu(v, VCPU.TD_PEND_NMI), 1, 'tdx:vp-wr-pend-nmi');
}

/**
 * SEAMCALL on this CPU (VMX root → SEAM root): the current NMI-blocking state goes into the
 * SEAMCALL VMCS, and NMIs are inhibited in SEAM root (held pending until SEAMRET or the VM entry).
 * @sdm Intel TDX CPU architecture extensions, SEAMCALL ("On transition to SEAM VMX root operation, the processor can inhibit NMI and SMI")
 */
export function tdxSeamcallEnter(ctx: KvmCtx): void {
  const { acc, L } = ctx;
  const p = ctx.cpu;
  acc.writeOnce(L.pcpu(p, PCPU.SEAMCALL_NMI_BLOCKING), cpuNmiBlocked(acc, p) ? 1 : 0, 'tdx:seamcall-save');
  cpuSetNmiBlocked(acc, p, true, 'tdx:seamcall-inhibit');
}

/**
 * SEAMRET to KVM (SEAM root → VMX root): blocking-by-NMI is reloaded from the SEAMCALL VMCS; an
 * NMI held pending is delivered right after if that says "unblocked".
 * @sdm Intel TDX CPU architecture extensions, SEAMRET ("the NMI and SMI inhibit state can be restored to the inhibit state at the time of the previous SEAMCALL")
 */
export function tdxSeamret(ctx: KvmCtx): void {
  const { acc, L } = ctx;
  const p = ctx.cpu;
  cpuSetNmiBlocked(acc, p, acc.readOnce(L.pcpu(p, PCPU.SEAMCALL_NMI_BLOCKING), 'tdx:seamret-load') !== 0, 'tdx:seamret');
}

/** A notification pending for v on this CPU is taken and processed (no delivery); returns other pending vectors. */
function tdxTakeNotification(ctx: KvmCtx, v: VcpuId, pending: number): number {
  const { acc, L } = ctx;
  const hostIrr = L.pcpu(ctx.cpu, PCPU.HOST_IRR_SYS);
  const nv = piNv(acc.readOnce(L.pid(v, PID.CONTROL), 'hw:pi-nv-read'));
  const nvBit = nv >= FIRST_SYSTEM_VECTOR_WORD ? 1 << (nv - FIRST_SYSTEM_VECTOR_WORD) : 0;
  if ((pending & nvBit) !== 0 && acc.testAndClearBit(hostIrr, 31 - Math.clz32(nvBit), 'hw:pi-notification-ack')) vmxProcessPostedInterrupts(ctx, v);
  return pending & ~nvBit;
}

/**
 * The module's part of the TD exit on this CPU: fill the SEAMCALL's output registers (the NMI
 * exit's qualification, r12 of a TDVMCALL(HLT)), save the guest, and — the module fix — set
 * blocking-by-NMI in the SEAMCALL VMCS for an NMI-caused exit, unless the machine runs today's
 * module ({@link PATCH_TDX_MODULE_NMI_UNBLOCKED_AT_SEAMRET}).
 * @kvm intel/tdx-module src/td_transitions/td_exit.c td_vmexit_to_vmm (+ the proposed set_guest_inter_blocking_by_nmi())
 */
export function tdVmexitToVmm(ctx: KvmCtx, v: VcpuId, exit: GuestExit, nmi: { sources: number; first: number; last: number } | null): void {
  const { acc, L } = ctx;
  if (nmi) {
    acc.writeOnce(L.vcpu(v, VCPU.EXIT_NMI_SOURCES), nmi.sources, 'tdx:seam-exit-qual');
    acc.writeOnce(L.vcpu(v, VCPU.EXIT_NMI_FIRST), nmi.first, 'tdx:seam-exit-qual');
    acc.writeOnce(L.vcpu(v, VCPU.EXIT_NMI_LAST), nmi.last, 'tdx:seam-exit-qual');
  }
  if (exit.reason === ExitReason.HLT) acc.writeOnce(L.vcpu(v, VCPU.TDX_HLT_IRQ_BLOCKED), 0, 'tdx:seam-exit-r12');
  if (exit.reason !== ExitReason.EXCEPTION_NMI) return;
  if (ctx.patches.has(PATCH_TDX_MODULE_NMI_UNBLOCKED_AT_SEAMRET)) {
    // Today's module: nothing propagates the NMI exit's blocking; SEAMRET will unblock NMIs.
    return;
  }
  acc.writeOnce(L.pcpu(ctx.cpu, PCPU.SEAMCALL_NMI_BLOCKING), 1, 'tdx:seam-root-set-nmi-blocking');
}

/**
 * TDH.VP.ENTER's VM entry into the TD, the TD until a TD exit, and the exit into SEAM root, on
 * this CPU (the caller did the SEAMCALL): NMIs unblocked by the TD VMCS; a pending virtual NMI
 * (PEND_NMI) injected; then per step a host NMI exits (NMI exit: consumed, NMIs blocked), the
 * notification vector is processed in place, any other host vector exits, a pending virtual
 * interrupt is delivered, and the guest runs: HLT is TDVMCALL(HLT) after the idle entry with
 * interrupts off, WRMSR a TDVMCALL; at most `maxSteps` steps (then the host tick exits). Ends
 * with td_vmexit_to_vmm. Returns the exit.
 * @kvm arch/x86/virt/vmx/tdx/tdx.c tdh_vp_enter (TDX module tdh_vp_enter.c, td_exit.c); @sdm Intel SDM vol. 3C 29.6 Posted-Interrupt Processing
 */
export function tdxTdRun(ctx: KvmCtx, v: VcpuId, guest: GuestProgram, maxSteps: number): GuestExit {
  const { acc, L } = ctx;
  const p = ctx.cpu;
  cpuSetNmiBlocked(acc, p, false, 'tdx:seam-vmentry');
  const pend = L.vcpu(v, VCPU.TD_PEND_NMI);
  if (acc.readOnce(pend, 'tdx:pend-nmi-read') !== 0) {
    acc.writeOnce(pend, 0, 'tdx:pend-nmi-inject');
    guest.onNmi?.();
    ctx.stats.count('nmisDelivered');
  }
  const hostIrr = L.pcpu(p, PCPU.HOST_IRR_SYS);
  let exit: GuestExit = { reason: ExitReason.PREEMPTION_TIMER };
  let nmi: ReturnType<typeof cpuNmiAccept> = null;
  run: for (let step = 0; step < maxSteps; step++) {
    if (cpuNmiPending(acc, p, 'tdx:guest-nmi-poll') && (nmi = cpuNmiAccept(acc, p, 'tdx:nmi-exit'))) {
      exit = { reason: ExitReason.EXCEPTION_NMI };
      break;
    }
    const pending = acc.readOnce(hostIrr, 'hw:host-irr-read');
    if (pending !== 0 && tdxTakeNotification(ctx, v, pending) !== 0) {
      exit = { reason: ExitReason.EXTERNAL_INTERRUPT };
      break;
    }
    if (vmxEvaluatePendingVirtualInterrupt(ctx, v, guest)) continue;
    const act = guest.step();
    if (act.kind === 'run') continue;
    if (act.kind === 'wrmsr') {
      exit = { reason: ExitReason.MSR_WRITE, msr: act.msr, lo: act.lo, hi: act.hi };
      break;
    }
    // The guest's idle entry with interrupts off, then STI; TDCALL(HLT): notifications are
    // processed, nothing is delivered; an NMI still exits.
    for (let i = 0; i < TD_IDLE_ENTRY_POLLS; i++) {
      if (cpuNmiPending(acc, p, 'tdx:guest-nmi-poll') && (nmi = cpuNmiAccept(acc, p, 'tdx:nmi-exit'))) {
        exit = { reason: ExitReason.EXCEPTION_NMI };
        break run;
      }
      const w = acc.readOnce(hostIrr, 'hw:host-irr-read');
      if (w !== 0 && tdxTakeNotification(ctx, v, w) !== 0) {
        exit = { reason: ExitReason.EXTERNAL_INTERRUPT };
        break run;
      }
    }
    exit = { reason: ExitReason.HLT };
    break;
  }
  // TD exit into SEAM root: NMIs inhibited (an NMI exit already blocked them).
  cpuSetNmiBlocked(acc, p, true, 'tdx:seam-exit');
  tdVmexitToVmm(ctx, v, exit, nmi);
  return exit;
}
