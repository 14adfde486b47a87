/**
 * AMD SVM with AVIC/x2AVIC, behind the {@link KvmX86Ops} seam.
 * @kvm arch/x86/kvm/svm/svm.c svm_x86_ops
 */
import { AVIC_PHYSID, VCPU, type VcpuId } from '../../mem/layout.js';
import type { Access } from '../../mem/access.js';
import { kvmApicHasInterrupt } from '../../apic/index.js';
import { ExitReason, type KvmX86Ops } from '../x86-ops.js';
import { vmxX86Ops } from '../vmx/vmx.js';
import { avicKickTargetVcpu, avicVcpuLoad, avicVcpuPut, svmDeliverInterrupt } from '../../kvm/svm/avic.js';
import { svmVcpuRun } from '../../hw/svm/avic.js';

/**
 * A vCPU at creation: AVIC active, a valid physical APIC ID table entry, not running.
 * @kvm arch/x86/kvm/svm/avic.c avic_init_backing_page
 */
export function svmVcpuCreate(acc: Access, v: VcpuId): void {
  acc.writeOnce(acc.layout.vcpu(v, VCPU.APICV_ACTIVE), 1, 'apicv:init');
  acc.writeOnce(acc.layout.avicPhysId(v), AVIC_PHYSID.VALID, 'avic:init');
}

/** The SVM/AVIC vendor operations. @kvm arch/x86/kvm/svm/svm.c svm_x86_ops */
export const svmX86Ops: KvmX86Ops = {
  name: 'svm',
  deliverInterrupt: (ctx, target, vector) => svmDeliverInterrupt(ctx, target, vector),
  // SVM has no posted-interrupt descriptor: nothing to sync (sync_pir_to_irr is NULL).
  syncPirToIrr: () => -1,
  apicHasInterrupt: (ctx, v) => kvmApicHasInterrupt(ctx.acc, v) >= 0,
  injectPending: vmxX86Ops.injectPending,
  vcpuLoad: (ctx, v, cpu) => avicVcpuLoad(ctx, v, cpu),
  vcpuPut: (ctx, v) => avicVcpuPut(ctx, v),
  vcpuRun: svmVcpuRun,
  handleHostIrq(): void {
    // Root mode: a reschedule IPI has done its job by interrupting.
  },
  handleExit(ctx, v, exit) {
    if (exit.reason === ExitReason.AVIC_INCOMPLETE_IPI) for (const t of exit.incompleteIpiTargets ?? []) avicKickTargetVcpu(ctx, t);
    void v;
  },
  // avic_vcpu_blocking / avic_vcpu_unblocking: IsRunning off while the vCPU blocks.
  vcpuBlocking: (ctx, v) => avicVcpuPut(ctx, v),
  vcpuUnblocking: (ctx, v) => {
    if (ctx.cpu >= 0) avicVcpuLoad(ctx, v, ctx.cpu);
  },
  refreshApicvExecCtrl(ctx, v, active) {
    // avic_refresh_apicv_exec_ctrl: deactivation clears IsRunning; activation re-loads.
    if (!active) avicVcpuPut(ctx, v);
    else if (ctx.cpu >= 0) avicVcpuLoad(ctx, v, ctx.cpu);
  },
};
