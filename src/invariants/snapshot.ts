/**
 * Snapshots of machine state for the invariant checkers: plain data, taken by the main thread
 * through its access layer without race points (bookkeeping reads).
 */
import { AVIC_PHYSID, PCPU, PID, SAVIC_NMI_REQUEST, VCPU, VM, VMCB, type Addr, type Layout } from '../mem/layout.js';
import { APIC_IRR, APIC_ISR, APIC_PROCPRI, APIC_TASKPRI } from '../mem/apicdef.js';
import type { Access } from '../mem/access.js';
import type { HostVirtState, PcpuHostState } from '../host/host-state.js';

export type { HostVirtState, PcpuHostState, PcpuVirtState } from '../host/host-state.js';

/** One vCPU's interrupt state. */
export interface VcpuSnapshot {
  vcpu: number;
  mode: number;
  requests: number;
  cpu: number;
  waitTask: number;
  taskState: number;
  blocking: number;
  apicvActive: number;
  rvi: number;
  svi: number;
  /** PIR words 0..7. */
  pir: number[];
  on: boolean;
  sn: boolean;
  nv: number;
  ndst: number;
  irr: number[];
  isr: number[];
  tpr: number;
  ppr: number;
  /** Armed LAPIC timer deadline (µs of machine time), 0 if disarmed. */
  timerDeadline: number;
  /** AVIC physical APIC ID table entry, bits 63:32 (Valid bit 31, IsRunning bit 30); 0 for other vendors. */
  avicEntry: number;
  /** pCPU the vCPU is loaded on right now (per-CPU current vCPU), -1 if none. */
  loadedOn: number;
  /** Secure AVIC state (machines with the savic layout only). */
  savic?: SavicSnapshot;
}

/**
 * A Secure AVIC vCPU: the guest-owned backing page (what the CPU delivers from; KVM cannot read
 * it — the snapshot can) and the VMCB/VMSA and KVM fields around it.
 */
export interface SavicSnapshot {
  /** Backing-page IRR / ISR words 0..7. */
  irr: number[];
  isr: number[];
  /** Backing-page TPR. */
  tpr: number;
  /** VMCB RequestedIRR words 0..7 and UpdateIRR. */
  requestedIrr: number[];
  updateIrr: number;
  /** sev_savic_has_pending_ipi. */
  hasPendingIpi: number;
  /** NMI_REQUEST (bit 0) in the backing page. */
  nmiRequest: number;
  /** VMSA V_NMI_PENDING. */
  vNmiPending: number;
}

/** One pCPU's state. */
export interface PcpuSnapshot {
  pcpu: number;
  hostIrrSys: number;
  currentVcpu: number;
  /** cpu_online() / cpu_active(). */
  online: boolean;
  active: boolean;
  /** Host CPU state (TDX machines): registers, user-return MSR cache, current task. */
  host?: PcpuHostState;
}


/** The whole machine. */
export interface MachineSnapshot {
  runState: number;
  /** VM-wide host virtualization state (TDX machines: kvm_usage_count, tdx_module_status, nr_configured_hkid). */
  hostVirt?: HostVirtState;
  /** kvm->arch.apicv_inhibit_reasons. */
  apicvInhibitReasons: number;
  vcpus: VcpuSnapshot[];
  pcpus: PcpuSnapshot[];
}

function loadedOn(acc: Access, L: Layout, v: number): number {
  for (let p = 0; p < L.config.pcpus; p++) if (acc.peek(L.pcpu(p, PCPU.CURRENT_VCPU)) === v) return p;
  return -1;
}

/**
 * The 8 words of a 256-bit bitmap, word i at `at(i)` (bookkeeping reads, unsigned).
 * @emulator
 */
export function peekBitmap(acc: Access, at: (i: number) => Addr): number[] {
  const out: number[] = [];
  for (let i = 0; i < 8; i++) out.push(acc.peek(at(i)) >>> 0);
  return out;
}

function savicSnapshot(acc: Access, L: Layout, v: number): SavicSnapshot {
  return {
    irr: peekBitmap(acc, (i) => L.savicBacking(v, APIC_IRR + 0x10 * i)),
    isr: peekBitmap(acc, (i) => L.savicBacking(v, APIC_ISR + 0x10 * i)),
    tpr: acc.peek(L.savicBacking(v, APIC_TASKPRI)),
    requestedIrr: peekBitmap(acc, (i) => L.vmcb(v, VMCB.REQUESTED_IRR, i)),
    updateIrr: acc.peek(L.vmcb(v, VMCB.UPDATE_IRR)),
    hasPendingIpi: acc.peek(L.vmcb(v, VMCB.HAS_PENDING_IPI)),
    nmiRequest: acc.peek(L.savicBacking(v, SAVIC_NMI_REQUEST)) & 1,
    vNmiPending: acc.peek(L.vmcb(v, VMCB.V_NMI_PENDING)),
  };
}

/** Read a consistent-enough snapshot (each word read once; actors may still run). */
export function snapshotMachine(acc: Access): MachineSnapshot {
  const L: Layout = acc.layout;
  const vcpus: VcpuSnapshot[] = [];
  for (let v = 0; v < L.config.vcpus; v++) {
    const ctl = acc.peek(L.pid(v, PID.CONTROL));
    const st = acc.peek(L.vcpu(v, VCPU.GUEST_INTR_STATUS));
    vcpus.push({
      vcpu: v,
      mode: acc.peek(L.vcpu(v, VCPU.MODE)),
      requests: acc.peek(L.vcpu(v, VCPU.REQUESTS)),
      cpu: acc.peek(L.vcpu(v, VCPU.CPU)),
      waitTask: acc.peek(L.vcpu(v, VCPU.WAIT_TASK)),
      taskState: acc.peek(L.vcpu(v, VCPU.TASK_STATE)),
      blocking: acc.peek(L.vcpu(v, VCPU.BLOCKING)),
      apicvActive: acc.peek(L.vcpu(v, VCPU.APICV_ACTIVE)),
      rvi: st & 0xff,
      svi: (st >>> 8) & 0xff,
      pir: peekBitmap(acc, (i) => L.pid(v, PID.PIR, i)),
      on: (ctl & 1) !== 0,
      sn: (ctl & 2) !== 0,
      nv: (ctl >>> 16) & 0xff,
      ndst: acc.peek(L.pid(v, PID.NDST)),
      irr: peekBitmap(acc, (i) => L.apicBitmapWord(v, APIC_IRR, i)),
      isr: peekBitmap(acc, (i) => L.apicBitmapWord(v, APIC_ISR, i)),
      tpr: acc.peek(L.apicReg(v, APIC_TASKPRI)),
      ppr: acc.peek(L.apicReg(v, APIC_PROCPRI)),
      timerDeadline: acc.peek(L.vcpu(v, VCPU.TIMER_DEADLINE)),
      avicEntry: acc.peek(L.avicPhysId(v, AVIC_PHYSID.ENTRY_HI)),
      loadedOn: L.config.pcpus > 0 ? loadedOn(acc, L, v) : -1,
      ...(L.config.savic ? { savic: savicSnapshot(acc, L, v) } : {}),
    });
  }
  const pcpus: PcpuSnapshot[] = [];
  for (let p = 0; p < L.config.pcpus; p++) {
    pcpus.push({
      pcpu: p,
      hostIrrSys: acc.peek(L.pcpu(p, PCPU.HOST_IRR_SYS)) >>> 0,
      currentVcpu: acc.peek(L.pcpu(p, PCPU.CURRENT_VCPU)),
      online: acc.peek(L.pcpu(p, PCPU.ONLINE)) !== 0,
      active: acc.peek(L.pcpu(p, PCPU.ACTIVE)) !== 0,
    });
  }
  return { runState: acc.peek(L.vm(VM.RUN_STATE)), apicvInhibitReasons: acc.peek(L.vm(VM.APICV_INHIBIT_REASONS)), vcpus, pcpus };
}

/** Vectors set in a 256-bit bitmap given as 8 words. */
export function bitmapVectors(w: ArrayLike<number>): number[] {
  const out: number[] = [];
  for (let i = 0; i < 8; i++) {
    let x = (w[i] ?? 0) >>> 0;
    while (x !== 0) {
      const b = 31 - Math.clz32(x);
      x &= ~(1 << b);
      out.push(i * 32 + b);
    }
  }
  return out.sort((a, b) => a - b);
}
