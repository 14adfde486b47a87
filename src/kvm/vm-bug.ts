/**
 * KVM_BUG_ON semantics: mark the VM bugged, make every vCPU exit (KVM_REQ_VM_DEAD) and refuse
 * to run it again.
 */
import { VM } from '../mem/layout.js';
import { EmuError } from '../errors.js';
import { kvmMakeRequest, KVM_REQ_VM_DEAD } from './requests.js';
import { kvmVcpuKick } from './kick.js';
import type { KvmCtx } from './x86-ops.js';

/**
 * Mark the VM bugged (first reason wins) and kick every vCPU out with KVM_REQ_VM_DEAD.
 * @kvm include/linux/kvm_host.h kvm_vm_bugged / KVM_BUG_ON
 */
export function kvmVmBugged(ctx: KvmCtx, why: string): void {
  void why;
  if (ctx.acc.cmpxchg(ctx.L.vm(VM.VM_BUGGED), 0, 1, 'kvm:vm-bugged') !== 0) return;
  for (let v = 0; v < ctx.nrVcpus; v++) {
    kvmMakeRequest(ctx.acc, v, KVM_REQ_VM_DEAD);
    if (v !== ctx.runningVcpu) kvmVcpuKick(ctx, v);
  }
}

/** Is the VM bugged? @kvm include/linux/kvm_host.h kvm->vm_bugged */
export function kvmVmIsBugged(ctx: KvmCtx): boolean {
  return ctx.acc.readOnce(ctx.L.vm(VM.VM_BUGGED), 'kvm:vm-bugged-read') !== 0;
}

/**
 * What KVM_RUN returns on a dead VM: -EIO, as an error naming the vCPU.
 * @kvm arch/x86/kvm/x86.c vcpu_enter_guest (KVM_REQ_VM_DEAD -> -EIO)
 */
export function vmDeadError(ctx: KvmCtx, v: number): EmuError {
  return new EmuError('EMU_ERR_VM_BUGGED', `vcpu${v}: KVM_RUN failed with -EIO: the VM is bugged (KVM_BUG_ON) and will not run again`, { actor: `vcpu${v}` });
}
