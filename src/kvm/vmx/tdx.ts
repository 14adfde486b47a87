/**
 * Intel TDX with a protected local APIC, behind the {@link KvmX86Ops} seam (vmx/tdx.c, vt_x86_ops).
 *
 * - APICv is always active for a TD; an inhibit that would deactivate it is a KVM bug: the VM is
 *   marked bugged and every vCPU exits (vt_refresh_apicv_exec_ctrl -> KVM_BUG_ON).
 * - Posted interrupts are the only delivery path (tdx_deliver_interrupt); KVM never reads or
 *   writes the TD's vIRR (sync_pir_to_irr is a no-op). Right before TDH.VP.ENTER, if ON is set,
 *   KVM sends itself POSTED_INTR_VECTOR with IRQs off, so the CPU processes the PIR inside the TD
 *   after entry. The processing itself belongs to the CPU and the TDX module (hw/tdx/td-cpu.ts)
 *   and does not look at KVM's apicv_active.
 * - Whether a halted TD vCPU has an interrupt: ON (or SN with a PIR bit), or — only for a
 *   TDVMCALL(HLT) with interrupts enabled — the module's VCPU_STATE_DETAILS (RVI pending).
 * - NMIs: a vNMI is PEND_NMI in the TDVPS (tdx_inject_nmi); a host NMI during the TD is an NMI
 *   exit that KVM handles in the noinstr tdx_vcpu_enter_exit (vmx_handle_nmi).
 * - KVM_GET_LAPIC / KVM_SET_LAPIC fail with -EINVAL; the APIC base MSR is read-only.
 */
import { VCPU, type VcpuId } from '../../mem/layout.js';
import type { Access } from '../../mem/access.js';
import { apicSendIpiHost, POSTED_INTR_VECTOR } from '../kick.js';
import { kvmVmBugged } from '../vm-bug.js';
import { definePatch } from '../patches.js';
import { ExitReason, type GuestExit, type GuestProgram, type KvmCtx, type KvmX86Ops } from '../x86-ops.js';
import { piInit, piIsPirEmpty, piTestOn, piTestSn } from '../../hw/vmx/pi-desc.js';
import { cpuNmiWindow } from '../../hw/nmi.js';
import { TDX_VCPU_STATE_DETAILS_INTR_PENDING, tdhVpRdVcpuStateDetails, tdhVpWrPendNmi, tdxSeamcallEnter, tdxSeamret, tdxTdRun } from '../../hw/tdx/td-cpu.js';
import { vmxDeliverPostedInterruptRaw } from './posted-intr.js';
import { vmxX86Ops } from './vmx.js';
import { vmxHandleNmi } from './nmi.js';
import { tdxMachineHandleExit, tdxMachineVcpuLoad, tdxMachineVcpuPut, tdxMachineVcpuRun } from './tdx-machine-host.js';
import type { TdExitReason } from './tdx-host-state.js';
import type { HostPoint } from '../../host/host-state.js';

/**
 * Bug patch (IN-4, seed 000): APICv inhibits are honoured for a TD like for any VMX guest — the
 * TDX series as posted in Dec 2024 inhibited APICv for TDs ("Follow how SEV inhibits APICv"),
 * and vt_refresh_apicv_exec_ctrl only warned for a TD (WARN_ON_ONCE(is_td_vcpu(vcpu)); return).
 * KVM then runs a TD with apicv_active = 0 while the TDX module keeps running APICv: KVM's view
 * of the vCPU is false ("lie to KVM that APICv is disabled"). 6.16 forces APICv active for TDs
 * and bugs the VM if anything would deactivate it.
 * @kvm arch/x86/kvm/vmx/main.c vt_refresh_apicv_exec_ctrl (before "KVM: TDX: Force APICv active for TDX guest")
 */
export const PATCH_TDX_APICV_INHIBIT_ACCEPTED = definePatch({
  id: 'tdx-apicv-inhibit-accepted',
  step: 'vt_refresh_apicv_exec_ctrl',
  summary: 'a TD vCPU\'s APICv deactivation is accepted (WARN_ON_ONCE and return) instead of KVM_BUG_ON(!apicv_active)',
  origin: { kind: 'proposal', ref: '[PATCH 12/16] KVM: TDX: Inhibit APICv for TDX guest (Binbin Wu, 2024-12-09; seed 000)', subject: 'KVM: TDX: Inhibit APICv for TDX guest (replaced by "KVM: TDX: Force APICv active for TDX guest")' },
  kernel: 'none released (TDX interrupts breakout v1, Dec 2024; 6.16 forces APICv active and bugs the VM)',
  vendors: ['tdx'],
});

/**
 * Bug patch (seed 000's series): tdx_protected_apic_has_interrupt looks only at the
 * posted-interrupt descriptor, as in "[PATCH 01/16] KVM: TDX: Add support for find pending IRQ
 * in a protected local APIC" ("this doesn't handle interrupts that have been delivered to the
 * vCPU but not yet recognized by the core, i.e. interrupts that are sitting in
 * vmcs.GUEST_INTR_STATUS ... will be supported in a future patch"). A TD that halts with a
 * vector already in RVI (processed during its idle entry, not delivered because of IF = 0 and
 * the STI shadow) blocks, and the vector waits for some other wake-up.
 * @kvm arch/x86/kvm/vmx/tdx.c tdx_protected_apic_has_interrupt (before the TD_VCPU_STATE_DETAILS check)
 */
export const PATCH_TDX_HAS_INTERRUPT_PID_ONLY = definePatch({
  id: 'tdx-has-interrupt-pid-only',
  step: 'tdx_protected_apic_has_interrupt',
  summary: 'a halted TD is runnable only if ON (or SN with PIR) is set: a vector the CPU already moved to RVI before the TDVMCALL(HLT) does not wake it',
  origin: { kind: 'proposal', ref: '[PATCH 01/16] KVM: TDX: Add support for find pending IRQ in a protected local APIC (Binbin Wu, 2024-12-09, <20241209010734.3543481-2-binbin.wu@linux.intel.com>)', subject: 'KVM: TDX: Add support for find pending IRQ in a protected local APIC (RVI not handled, "will be supported in a future patch")' },
  kernel: 'none released (6.16 reads TD_VCPU_STATE_DETAILS_NON_ARCH for a HLT with IRQs enabled)',
  vendors: ['tdx'],
});

/**
 * Bug patch (PI-8): tdx_vcpu_run does not send itself POSTED_INTR_VECTOR when ON is set. KVM
 * cannot sync a TD's PIR, so a vector posted while the vCPU was outside guest mode (the sender
 * only woke it) waits in the PIR with ON = 1 — and since ON stays set, no later sender notifies
 * either: the vCPU takes no interrupt until something else exits it with a notification. No
 * posted version lacked the self-IPI; it shows why tdx_vcpu_run needs it (domain notes 2.7 PI-8).
 * @kvm arch/x86/kvm/vmx/tdx.c tdx_vcpu_run (`if (pi_test_on(&vt->pi_desc)) apic->send_IPI_self(POSTED_INTR_VECTOR)`)
 */
export const PATCH_TDX_NO_PI_SELF_IPI = definePatch({
  id: 'tdx-no-pi-self-ipi',
  step: 'tdx_vcpu_run',
  summary: 'no self-IPI with POSTED_INTR_VECTOR before TDH.VP.ENTER when ON is set: what was posted while the vCPU was out stays in the PIR, and ON stays set so nobody notifies again',
  origin: { kind: 'hypothetical', ref: 'domain notes 2.7 PI-8; tdx_vcpu_run since "KVM: TDX: Implement non-NMI interrupt injection" (TDX interrupts breakout, Dec 2024)', subject: 'KVM: TDX: Implement non-NMI interrupt injection (tdx_vcpu_run sends the self-IPI)' },
  kernel: 'none (every posted tdx_vcpu_run with interrupt injection sends the self-IPI)',
  vendors: ['tdx'],
});

/**
 * RIPs at which this CPU can take a host NMI on the TD run path (default_do_nmi's back-to-back
 * test compares them; distinct call sites, distinct values).
 * @emulator
 */
export const TDX_NMI_RIP = {
  /** vcpu_enter_guest, IRQs off, before kvm_x86_run. */
  VCPU_ENTER_GUEST: 0x1100,
  /** The instruction after SEAMRET in __seamcall_saved_ret (tdh_vp_enter returning). */
  SEAMRET_RETURN: 0x1200,
  /** tdx_vcpu_enter_exit decoding vp_enter_ret / the exit qualification. */
  TDX_EXIT_DECODE: 0x1300,
  /** After guest_state_exit_irqoff, back in instrumentable tdx_vcpu_run (and later host points). */
  TDX_VCPU_RUN: 0x1500,
} as const;

/**
 * A TD vCPU at creation: APICv forced active, descriptor NV = POSTED_INTR_VECTOR, no NMI.
 * @kvm arch/x86/kvm/vmx/tdx.c tdx_vcpu_create ("KVM: TDX: Force APICv active for TDX guest")
 */
export function tdxVcpuCreate(acc: Access, v: VcpuId, firstCpu: number): void {
  const L = acc.layout;
  acc.writeOnce(L.vcpu(v, VCPU.APICV_ACTIVE), 1, 'apicv:init');
  for (const f of [VCPU.NMI_QUEUED, VCPU.NMI_PENDING, VCPU.NMI_INJECTED, VCPU.TD_PEND_NMI, VCPU.EXIT_REASON, VCPU.TDX_HLT_IRQ_BLOCKED, VCPU.HANDLING_INTR_FROM_GUEST]) acc.writeOnce(L.vcpu(v, f), 0, 'tdx:vcpu-init');
  acc.writeOnce(L.vcpu(v, VCPU.EXIT_REASON), -1, 'tdx:vcpu-init');
  piInit(acc, v, POSTED_INTR_VECTOR, firstCpu);
}

/**
 * pi_has_pending_interrupt: ON, or SN with a PIR bit.
 * @kvm arch/x86/kvm/vmx/posted_intr.c pi_has_pending_interrupt
 */
export function piHasPendingInterrupt(acc: Access, v: VcpuId): boolean {
  return piTestOn(acc, v) || (piTestSn(acc, v) && !piIsPirEmpty(acc, v));
}

/**
 * Does the TD vCPU have an interrupt? A pending posted interrupt; else, only if the last TD exit
 * was TDVMCALL(HLT) with interrupts enabled (r12 = 0), the module's VCPU_STATE_DETAILS (a
 * virtual interrupt pending in RVI). For other exits KVM does not care about STI/SS shadows: an
 * interrupt pending before the exit must have been blocked.
 * @kvm arch/x86/kvm/vmx/tdx.c tdx_protected_apic_has_interrupt
 */
export function tdxProtectedApicHasInterrupt(ctx: KvmCtx, v: VcpuId): boolean {
  const { acc, L } = ctx;
  if (piHasPendingInterrupt(acc, v)) return true;
  if (ctx.patches.has(PATCH_TDX_HAS_INTERRUPT_PID_ONLY)) return false;
  if (acc.readOnce(L.vcpu(v, VCPU.EXIT_REASON), 'tdx:exit-reason-read') !== ExitReason.HLT || acc.readOnce(L.vcpu(v, VCPU.TDX_HLT_IRQ_BLOCKED), 'tdx:hlt-r12-read') !== 0) return false;
  return (tdhVpRdVcpuStateDetails(ctx, v) & TDX_VCPU_STATE_DETAILS_INTR_PENDING) !== 0;
}

/**
 * Inject an NMI into a TD: PEND_NMI = 1 through the module; from KVM's view the injection is
 * complete at once, and a further pending vNMI collapses into the one the module holds (no NMI
 * window for a TD).
 * @kvm arch/x86/kvm/vmx/tdx.c tdx_inject_nmi
 */
export function tdxInjectNmi(ctx: KvmCtx, v: VcpuId): void {
  const { acc, L } = ctx;
  ctx.stats.count('nmiInjections');
  tdhVpWrPendNmi(ctx, v);
  acc.writeOnce(L.vcpu(v, VCPU.NMI_INJECTED), 0, 'kvm:nmi-injected-clear');
  acc.writeOnce(L.vcpu(v, VCPU.NMI_PENDING), 0, 'kvm:nmi-pending-write');
}

/** The RIP of a host point on the TD run path (after the enter/exit). */
function hostPointRip(point: HostPoint): number {
  return point === 'seamret' ? TDX_NMI_RIP.SEAMRET_RETURN : TDX_NMI_RIP.TDX_VCPU_RUN;
}

/** The exit as tdx_vcpu_run reports it to the host-state code. */
function tdExitReason(exit: GuestExit): TdExitReason {
  if (exit.reason === ExitReason.EXCEPTION_NMI) return 'nmi';
  return exit.reason === ExitReason.HLT || exit.reason === ExitReason.MSR_WRITE ? 'tdvmcall' : 'external-interrupt';
}

/**
 * tdx_vcpu_run on this CPU: a set ON becomes a self-IPI (pending: IRQs are off) that the CPU
 * processes inside the TD; then the noinstr tdx_vcpu_enter_exit — SEAMCALL TDH.VP.ENTER, the
 * TD, the exit into SEAM root and the module's td_vmexit_to_vmm, SEAMRET, the exit decode
 * (tdx_to_vmx_exit_reason) and vmx_handle_nmi — with KVM's host-state restores around it on a
 * machine that models them. Host NMIs are taken wherever this CPU has them unblocked.
 * @kvm arch/x86/kvm/vmx/tdx.c tdx_vcpu_run, tdx_vcpu_enter_exit
 */
export function tdxVcpuRun(ctx: KvmCtx, v: VcpuId, guest: GuestProgram, maxSteps: number): GuestExit {
  const { acc, L } = ctx;
  const p = ctx.cpu;
  // vcpu_enter_guest with IRQs off, before kvm_x86_run: NMIs are still taken.
  cpuNmiWindow(acc, p, TDX_NMI_RIP.VCPU_ENTER_GUEST);
  if (!ctx.patches.has(PATCH_TDX_NO_PI_SELF_IPI) && piTestOn(acc, v) && p >= 0) apicSendIpiHost(ctx, p, POSTED_INTR_VECTOR);
  let exit: GuestExit = { reason: ExitReason.PREEMPTION_TIMER };
  tdxMachineVcpuRun(
    acc,
    v,
    p,
    {
      at: (point) => void cpuNmiWindow(acc, p, hostPointRip(point)),
      guest: () => {
        tdxSeamcallEnter(ctx);
        exit = tdxTdRun(ctx, v, guest, maxSteps);
        return tdExitReason(exit);
      },
      seamret: () => tdxSeamret(ctx),
      exitDecode: () => {
        acc.writeOnce(L.vcpu(v, VCPU.EXIT_REASON), exit.reason, 'kvm:tdx-exit-reason');
        cpuNmiWindow(acc, p, TDX_NMI_RIP.TDX_EXIT_DECODE);
      },
      handleNmi: () => vmxHandleNmi(ctx, v),
    },
    ctx.patches,
  );
  cpuNmiWindow(acc, p, TDX_NMI_RIP.TDX_VCPU_RUN);
  return exit;
}

/** The TDX vendor operations. @kvm arch/x86/kvm/vmx/main.c vt_x86_ops (TD paths) */
export const tdxX86Ops: KvmX86Ops = {
  name: 'tdx',
  protectedApic: true,
  deliverInterrupt(ctx, target, vector) {
    // tdx_deliver_interrupt: "TDX supports only posted interrupt. No lapic emulation."
    vmxDeliverPostedInterruptRaw(ctx, target, vector);
  },
  syncPirToIrr: () => -1,
  apicHasInterrupt: tdxProtectedApicHasInterrupt,
  injectPending(): void {
    // No event injection into a TD.
  },
  injectNmi: tdxInjectNmi,
  // vt_nmi_allowed: "all KVM can do is throw an NMI over the wall"; vt_get_nmi_mask: assume unmasked.
  nmiAllowed: () => true,
  getNmiMask: () => false,
  vcpuLoad(ctx, v, cpu) {
    vmxX86Ops.vcpuLoad(ctx, v, cpu);
    tdxMachineVcpuLoad(ctx.acc, v, cpu);
  },
  vcpuPut(ctx, v) {
    tdxMachineVcpuPut(ctx.acc, v, ctx.cpu);
    vmxX86Ops.vcpuPut(ctx, v);
  },
  vcpuRun: tdxVcpuRun,
  handleHostIrq: vmxX86Ops.handleHostIrq,
  handleExit(ctx, v) {
    // tdx_handle_exit: the NMI was handled in tdx_vcpu_enter_exit; the host-state part.
    tdxMachineHandleExit(ctx.acc, v, ctx.patches);
  },
  refreshApicvExecCtrl(ctx, v, active) {
    if (ctx.patches.has(PATCH_TDX_APICV_INHIBIT_ACCEPTED)) {
      // The posted series: `if (WARN_ON_ONCE(is_td_vcpu(vcpu))) return;` — KVM goes on with
      // apicv_active = 0 while the TDX module keeps running APICv.
      if (!active) ctx.stats.count('warnOnce');
      return;
    }
    // vt_refresh_apicv_exec_ctrl: KVM_BUG_ON(!kvm_vcpu_apicv_active(vcpu), vcpu->kvm) for a TD.
    if (!active) kvmVmBugged(ctx, `APICv deactivated on TD vcpu${v}`);
  },
};
