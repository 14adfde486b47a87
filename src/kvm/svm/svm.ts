/**
 * AMD SVM with AVIC/x2AVIC, behind the {@link KvmX86Ops} seam.
 * @kvm arch/x86/kvm/svm/svm.c svm_x86_ops
 */
import { VCPU, type PcpuId, type VcpuId } from '../../mem/layout.js';
import type { Access } from '../../mem/access.js';
import { kvmApicHasInterrupt } from '../../apic/index.js';
import { ExitReason, type KvmCtx, type KvmX86Ops } from '../x86-ops.js';
import { vmxX86Ops } from '../vmx/vmx.js';
import { avicIncompleteIpiInterception, avicInitBackingPage, avicRefreshApicvExecCtrl, avicVcpuBlocking, avicVcpuLoad, avicVcpuPut, avicVcpuUnblocking, svmDeliverInterrupt } from './avic.js';
import { svmVcpuRun } from '../../hw/svm/avic.js';

/**
 * A vCPU at creation: AVIC active, a valid physical APIC ID table entry naming its backing page,
 * not running.
 * @kvm arch/x86/kvm/svm/avic.c avic_init_vcpu (avic_init_backing_page)
 */
export function svmVcpuCreate(acc: Access, v: VcpuId): void {
  acc.writeOnce(acc.layout.vcpu(v, VCPU.APICV_ACTIVE), 1, 'apicv:init');
  avicInitBackingPage(acc, v);
}

function apicvActive(ctx: KvmCtx, v: VcpuId): boolean {
  return ctx.acc.readOnce(ctx.L.vcpu(v, VCPU.APICV_ACTIVE), 'apicv:active-read') !== 0;
}

/**
 * sched-in on `cpu`: load the AVIC when APICv is active.
 * @kvm arch/x86/kvm/svm/svm.c svm_vcpu_load
 */
export function svmVcpuLoad(ctx: KvmCtx, v: VcpuId, cpu: PcpuId): void {
  if (apicvActive(ctx, v)) avicVcpuLoad(ctx, v, cpu);
}

/**
 * sched-out: put the AVIC when APICv is active.
 * @kvm arch/x86/kvm/svm/svm.c svm_vcpu_put
 */
export function svmVcpuPut(ctx: KvmCtx, v: VcpuId): void {
  if (apicvActive(ctx, v)) avicVcpuPut(ctx, v);
}

/** The SVM/AVIC vendor operations. @kvm arch/x86/kvm/svm/svm.c svm_x86_ops */
export const svmX86Ops: KvmX86Ops = {
  name: 'svm',
  deliverInterrupt: (ctx, target, vector) => svmDeliverInterrupt(ctx, target, vector),
  // SVM has no posted-interrupt descriptor: nothing to sync (sync_pir_to_irr is NULL).
  syncPirToIrr: () => -1,
  apicHasInterrupt: (ctx, v) => kvmApicHasInterrupt(ctx.acc, v) >= 0,
  injectPending: vmxX86Ops.injectPending,
  vcpuLoad: svmVcpuLoad,
  vcpuPut: svmVcpuPut,
  vcpuRun: svmVcpuRun,
  handleHostIrq(): void {
    // Root mode: a reschedule IPI has done its job by interrupting.
  },
  handleExit(ctx, v, exit) {
    // svm_exit_handlers[SVM_EXIT_AVIC_INCOMPLETE_IPI]
    if (exit.reason === ExitReason.AVIC_INCOMPLETE_IPI) avicIncompleteIpiInterception(ctx, v, exit);
  },
  vcpuBlocking: avicVcpuBlocking,
  vcpuUnblocking: avicVcpuUnblocking,
  refreshApicvExecCtrl: avicRefreshApicvExecCtrl,
};
