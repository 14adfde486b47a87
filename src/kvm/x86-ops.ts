/**
 * The vendor seam, like kvm_x86_ops (arch/x86/include/asm/kvm-x86-ops.h): generic KVM code
 * calls these; vendor modules (kvm/vmx with TDX, kvm/svm with AVIC and Secure AVIC) implement them, calling the
 * hardware models in hw/ for what the CPU and firmware do.
 */
import type { Access } from '../mem/access.js';
import type { Layout, PcpuId, VcpuId } from '../mem/layout.js';
import type { ActorStats } from './stats.js';
import type { Tracer } from '../trace/events.js';
import type { PatchSet } from './patches.js';

/** What a thread knows about itself: the kernel's smp_processor_id() and kvm_get_running_vcpu(). */
export interface KvmCtx {
  readonly acc: Access;
  readonly L: Layout;
  readonly nrVcpus: number;
  readonly ops: KvmX86Ops;
  readonly stats: ActorStats;
  readonly trace: Tracer;
  /** kvm_get_running_vcpu(): the vCPU this thread runs, -1 for pCPU/device threads. */
  readonly runningVcpu: VcpuId;
  /** smp_processor_id(): the pCPU this thread is on right now (-1 when not on any). */
  cpu: PcpuId;
  /** need_resched(): the host scheduler wants this pCPU back (time slice over). */
  needResched: () => boolean;
  /** The guest-visible clock (hvemu's TSC): µs since the machine's epoch, shared by all threads. */
  clockUs: () => number;
  /** The named bug patches this machine's code runs with (kvm/patches.ts); empty = every fix in. */
  readonly patches: PatchSet;
}

/** Reasons a guest run stops, as VM-exit reasons (SDM appendix C names). */
export const ExitReason = {
  /** EXIT_REASON_EXCEPTION_NMI: an exception or NMI (here: a host NMI) caused the exit. */
  EXCEPTION_NMI: 0,
  EXTERNAL_INTERRUPT: 1,
  HLT: 12,
  MSR_WRITE: 32,
  PREEMPTION_TIMER: 52,
  /** SVM_EXIT_AVIC_INCOMPLETE_IPI (0x401). */
  AVIC_INCOMPLETE_IPI: 0x401,
  /** SVM_EXIT_VMGEXIT (0x403): an SEV-ES/SNP guest's GHCB request (here: MSR_PROT WRMSR). */
  VMGEXIT: 0x403,
} as const;
/** A VM-exit reason number. */
export type ExitReason = (typeof ExitReason)[keyof typeof ExitReason];

/** A guest's next move, as the CPU model sees it. */
export type GuestAction =
  | { kind: 'wrmsr'; msr: number; lo: number; hi: number }
  | { kind: 'hlt' }
  | { kind: 'run' };

/** The guest program running on a vCPU (the workload). */
export interface GuestProgram {
  /** The CPU delivered `vector` to the guest; the guest runs its handler (and then EOIs). */
  onInterrupt(vector: number): void;
  /** The CPU delivered an NMI to the guest (the guest's handler runs, then IRET). */
  onNmi?(): void;
  /**
   * RFLAGS.IF: whether the CPU may deliver a maskable interrupt at this instruction boundary
   * (absent: always 1). A guest that does `sti; hlt` has IF = 1 again when it HLTs.
   */
  interruptsEnabled?(): boolean;
  /** The guest's next instruction of interest. */
  step(): GuestAction;
}

/** Result of one guest run (VM-entry to VM-exit). */
export interface GuestExit {
  reason: ExitReason;
  /**
   * SVM: the VMCB's exit_info_1 / exit_info_2 as 32-bit halves (AVIC_INCOMPLETE_IPI: the ICR
   * high:low, and the failure id : physical APIC ID table index).
   */
  exitInfo1?: { hi: number; lo: number };
  exitInfo2?: { hi: number; lo: number };
  /** For MSR_WRITE and VMGEXIT (MSR_PROT): the MSR and value. */
  msr?: number;
  lo?: number;
  hi?: number;
}

/**
 * Vendor operations. Names follow kvm-x86-ops.h.
 * @kvm arch/x86/include/asm/kvm-x86-ops.h
 */
export interface KvmX86Ops {
  readonly name: string;
  /** Deliver an accepted fixed interrupt to `target`. @kvm kvm_x86_ops.deliver_interrupt */
  deliverInterrupt(ctx: KvmCtx, target: VcpuId, vector: number, level: boolean): void;
  /** Move posted interrupts into the vIRR; returns max_irr. @kvm kvm_x86_ops.sync_pir_to_irr */
  syncPirToIrr(ctx: KvmCtx, v: VcpuId): number;
  /** Does the vCPU have an interrupt the guest can take? (kvm_cpu_has_interrupt path) */
  apicHasInterrupt(ctx: KvmCtx, v: VcpuId): boolean;
  /** Non-APICv software injection at entry (KVM_REQ_EVENT). @kvm kvm_x86_ops.inject_irq */
  injectPending(ctx: KvmCtx, v: VcpuId): void;
  /** Inject a pending NMI at entry (KVM_REQ_NMI -> process_nmi). @kvm kvm_x86_ops.inject_nmi */
  injectNmi?(ctx: KvmCtx, v: VcpuId): void;
  /** May an NMI be injected now? (default: yes) @kvm kvm_x86_ops.nmi_allowed */
  nmiAllowed?(ctx: KvmCtx, v: VcpuId): boolean;
  /** Are the guest's NMIs masked (in its NMI handler)? (default: no) @kvm kvm_x86_ops.get_nmi_mask */
  getNmiMask?(ctx: KvmCtx, v: VcpuId): boolean;
  /** Is a virtual NMI pending in hardware (vNMI)? (default: no) @kvm kvm_x86_ops.is_vnmi_pending */
  isVnmiPending?(ctx: KvmCtx, v: VcpuId): boolean;
  /** sched-in on `cpu`. @kvm kvm_x86_ops.vcpu_load */
  vcpuLoad(ctx: KvmCtx, v: VcpuId, cpu: PcpuId): void;
  /** sched-out. @kvm kvm_x86_ops.vcpu_put */
  vcpuPut(ctx: KvmCtx, v: VcpuId): void;
  /** Run the guest until a VM-exit (hardware). @kvm kvm_x86_ops.vcpu_run */
  vcpuRun(ctx: KvmCtx, v: VcpuId, guest: GuestProgram, maxSteps: number): GuestExit;
  /** Host interrupt handler for a system vector taken in root mode on this pCPU. */
  handleHostIrq(ctx: KvmCtx, vector: number): void;
  /** A vendor-specific VM-exit (e.g. AVIC_INCOMPLETE_IPI). @kvm kvm_x86_ops.handle_exit */
  handleExit?(ctx: KvmCtx, v: VcpuId, exit: GuestExit): void;
  /** Before the vCPU blocks. @kvm kvm_x86_ops.vcpu_blocking */
  vcpuBlocking?(ctx: KvmCtx, v: VcpuId): void;
  /** After the vCPU stops blocking. @kvm kvm_x86_ops.vcpu_unblocking */
  vcpuUnblocking?(ctx: KvmCtx, v: VcpuId): void;
  /** APICv (de)activated on this vCPU: program the VMCS/VMCB. @kvm kvm_x86_ops.refresh_apicv_exec_ctrl */
  refreshApicvExecCtrl?(ctx: KvmCtx, v: VcpuId, active: boolean): void;
  /** The guest's APIC state is protected (TDX, Secure AVIC): KVM_GET/SET_LAPIC fail with -EINVAL. */
  readonly protectedApic?: boolean;
}
