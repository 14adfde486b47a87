/**
 * KVM's handling of an NMI VM-exit (arch/x86/kvm/vmx/vmx.c vmx_handle_nmi, "KVM: VMX: Handle NMI
 * VM-Exits in noinstr region", 11df586d774f): the NMI was consumed by the exit, so KVM calls the
 * host NMI handler itself — through a synthesized NMI frame (vmx_do_nmi_irqoff, or
 * fred_entry_from_kvm with the exit qualification's NMI-source bitmap) whose IRET unblocks NMIs —
 * between kvm_before_interrupt(KVM_HANDLING_NMI) and kvm_after_interrupt. TDX calls it from the
 * noinstr tdx_vcpu_enter_exit right after tdh_vp_enter.
 */
import { VCPU, type VcpuId } from '../../mem/layout.js';
import { defaultDoNmi } from '../../host/nmi.js';
import { cpuNmiIret, cpuNmiWindow } from '../../hw/nmi.js';
import { ExitReason, type KvmCtx } from '../x86-ops.js';

/**
 * kvm_intr_type KVM_HANDLING_NMI (vcpu->arch.handling_intr_from_guest).
 * @kvm arch/x86/kvm/x86.h enum kvm_intr_type
 */
export const KVM_HANDLING_NMI = 2;

/**
 * The RIP the host NMI handler sees when KVM calls it for an NMI exit: the return address inside
 * vmx_do_nmi_irqoff / fred_entry_from_kvm — an NMI taken right after that handler's IRET is
 * back-to-back with it.
 * @emulator
 */
export const VMX_DO_NMI_IRQOFF_RIP = 0x1400;

/**
 * For an NMI-caused exit of vCPU v on this CPU: kvm_before_interrupt(KVM_HANDLING_NMI), the host
 * NMI handler with the exit qualification's NMI-source bitmap, its IRET, then any NMI latched
 * meanwhile (taken at the same RIP), kvm_after_interrupt. Nothing for other exits.
 * @kvm arch/x86/kvm/vmx/vmx.c vmx_handle_nmi
 */
export function vmxHandleNmi(ctx: KvmCtx, v: VcpuId): void {
  const { acc, L } = ctx;
  if (acc.readOnce(L.vcpu(v, VCPU.EXIT_REASON), 'kvm:exit-reason-read') !== ExitReason.EXCEPTION_NMI) return;
  const handling = L.vcpu(v, VCPU.HANDLING_INTR_FROM_GUEST);
  acc.writeOnce(handling, KVM_HANDLING_NMI, 'kvm:before-interrupt');
  const nmi = {
    sources: acc.readOnce(L.vcpu(v, VCPU.EXIT_NMI_SOURCES), 'kvm:exit-qual-read'),
    first: acc.readOnce(L.vcpu(v, VCPU.EXIT_NMI_FIRST), 'kvm:exit-qual-read'),
    last: acc.readOnce(L.vcpu(v, VCPU.EXIT_NMI_LAST), 'kvm:exit-qual-read'),
  };
  defaultDoNmi(acc, ctx.cpu, nmi, 'kvm-exit', VMX_DO_NMI_IRQOFF_RIP);
  cpuNmiIret(acc, ctx.cpu);
  cpuNmiWindow(acc, ctx.cpu, VMX_DO_NMI_IRQOFF_RIP);
  acc.writeOnce(handling, 0, 'kvm:after-interrupt');
}
