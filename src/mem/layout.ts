/**
 * The layout of machine memory: the only module that computes offsets.
 *
 * A machine is one SharedArrayBuffer. Every region (APIC pages, posted-interrupt descriptors,
 * vCPU and pCPU control words, VM-wide words, actor stats and event rings) is an entry of the
 * region table built by {@link createLayout}; {@link assertLayout} checks size, alignment and
 * overlap at start-up. Addresses handed to the access layer are 32-bit word indexes ({@link Addr}).
 *
 * Regions (per = instance count):
 *
 * | region       | per    | bytes | align | contents                                               |
 * |--------------|--------|-------|-------|--------------------------------------------------------|
 * | vm           | 1      | 64*N  | 64    | one 64-byte line per VM-wide word ({@link VM})        |
 * | apic-page    | vCPU   | 4096  | 4096  | virtual-APIC page, architectural offsets (apicdef)     |
 * | pi-desc      | vCPU   | 64    | 64    | PIR[8] | control (ON, SN, NV) | NDST                 |
 * | vcpu         | vCPU   | 128   | 64    | mode, requests, cpu, rcuwait, NMIs, exit info ({@link VCPU}) |
 * | pcpu         | pCPU   | 128   | 64    | host IRR (system vectors), current vCPU, NMI latch and handler state, online |
 * | runq         | pCPU   | 2048  | 64    | ticket -> waiting actor id + 1 (run-queue hand-off)     |
 * | avic-physid  | vCPU   | 64    | 64    | AVIC physical APIC ID table entry (u64 as 2 words) + KVM's copy |
 * | srcu         | actor  | 64    | 64    | per-actor SRCU counters locks[2], unlocks[2]           |
 * | actor        | actor  | 64    | 64    | fence word, status, live totals ({@link ACTOR})       |
 * | ring         | actor  | 64+16R| 64    | event ring: head line, tail line, R records of 4 words |
 * | scratch      | 1      | 4S    | 64    | words for tests, examples and user scenarios           |
 * | savic-backing| vCPU*  | 4096  | 4096  | Secure AVIC guest-owned backing page (IRR, ISR, ALLOWED_IRR, NMI_REQUEST) |
 * | vmcb         | vCPU*  | 64    | 64    | Secure AVIC: UpdateIRR, RequestedIRR[8], vNMI, has_pending_ipi |
 * | vendor-area  | 1**    | 4V    | 64    | the vendor's own per-pCPU / per-vCPU blocks (TDX host state) |
 * | vmx-vcpu     | vCPU   | 64    | 64    | VMX: pi_wakeup_list node, IPI virtualization ({@link VMX_VCPU}) |
 * | vmx-pcpu     | pCPU   | 64    | 64    | VMX: wakeup_vcpus_on_cpu list head and its raw spinlock ({@link VMX_PCPU}) |
 * (* only with the `savic` option; ** only with `vendorWords` > 0)
 */
import { APIC_PAGE_BYTES, APIC_VECTOR_STRIDE_BYTES } from './apicdef.js';
import { EmuError } from '../errors.js';

/** A machine address: index of a 32-bit word in the machine's SharedArrayBuffer. */
export type Addr = number & { readonly __brand: 'Addr' };
/** A vCPU index (kvm_vcpu.vcpu_idx). */
export type VcpuId = number;
/** A physical CPU index. */
export type PcpuId = number;
/** An actor index: vCPUs first, then pCPUs, then extra actors, then the main thread. */
export type ActorId = number;

const LINE_WORDS = 16;
const LINE_BYTES = 64;

/** Word offsets of the VM-wide words; each sits on its own 64-byte line. */
export const VM = {
  /** {@link RunState} of the run: actors poll it at their yield points. */
  RUN_STATE: 0,
  /** Non-zero once any actor failed or a deadline passed: every wait gives up. */
  ABORT: 1,
  /** Start gate: actors spin/wait until it turns 1, so they start together. */
  START_GATE: 2,
  /** Global sequence of recorded accesses (record mode only). */
  GLOBAL_SEQ: 3,
  /** kvm_arch.apicv_inhibit_reasons (bit = enum kvm_apicv_inhibit). */
  APICV_INHIBIT_REASONS: 4,
  /** kvm_arch.apicv_update_lock (rw-semaphore, uses the whole line). */
  APICV_UPDATE_LOCK: 5,
  /** kvm->slots_lock (sleeping mutex). */
  SLOTS_LOCK: 6,
  /** kvm->srcu header: ctr index, grace-period sequence, grace-period mutex. */
  KVM_SRCU: 7,
  /** Number of actors that reached the start gate. */
  READY_COUNT: 8,
  /** Scenario rounds: barrier at the start of a round (COUNT, GEN). */
  ROUND_START: 9,
  /** Scenario rounds: barrier at the end of a round (COUNT, GEN). */
  ROUND_END: 10,
  /** Scenario rounds completed (written by the checking actor). */
  ITERATIONS: 11,
  /** Main asks the scenario to stop at the end of the current round. */
  STOP_REQUEST: 12,
  /** kvm->vm_bugged: set by KVM_BUG_ON; every vCPU exits and the VM never runs again. */
  VM_BUGGED: 13,
  /** kvm->arch.apic_access_memslot_enabled (word 0) and _inhibited (word 1). */
  APIC_ACCESS_MEMSLOT: 14,
  /** kvm->memslots[0]: index (0 or 1) of the published memslots generation. */
  MEMSLOTS: 15,
  /** The two memslots generations (MEMSLOTS_GEN words each), one line apiece. */
  MEMSLOTS_GEN0: 16,
  MEMSLOTS_GEN1: 17,
  /** Memslot update tracepoint (count, then one word per update; two lines). */
  MEMSLOT_LOG: 18,
} as const;
const VM_LINES = 20;

/** Values of {@link VM.RUN_STATE}. */
export const RunState = { INIT: 0, RUNNING: 1, DRAINING: 2, STOP: 3 } as const;
/** A run state value. */
export type RunState = (typeof RunState)[keyof typeof RunState];

/** Word offsets inside a posted-interrupt descriptor. @kvm arch/x86/include/asm/posted_intr.h struct pi_desc */
export const PID = {
  /** PIR: 256 bits as 8 x u32, bit v = vector v. */
  PIR: 0,
  /** Low half of the 64-bit control field: 0 ON, 1 SN, 23:16 NV. */
  CONTROL: 8,
  /** High half of the control field: NDST (destination APIC ID). */
  NDST: 9,
} as const;
/** Bytes of a posted-interrupt descriptor (__aligned(64)). */
export const PI_DESC_BYTES = 64;

/** Word offsets of per-vCPU control state (struct kvm_vcpu / vcpu_vmx fields). */
export const VCPU = {
  /** vcpu->mode: OUTSIDE_GUEST_MODE / IN_GUEST_MODE / EXITING_GUEST_MODE. */
  MODE: 0,
  /** vcpu->requests bitmap (KVM_REQ_*). */
  REQUESTS: 1,
  /** vcpu->cpu: pCPU the vCPU is loaded on, -1 if none. */
  CPU: 2,
  /** vcpu->wait.task (rcuwait): 1 while a task is registered as waiting. */
  WAIT_TASK: 3,
  /** Task state of the vCPU thread: TASK_RUNNING 0, TASK_INTERRUPTIBLE 1. */
  TASK_STATE: 4,
  /** kvm_vcpu_is_blocking(): 1 between kvm_arch_vcpu_blocking and _unblocking. */
  BLOCKING: 5,
  /** vcpu->arch.apic->apicv_active. */
  APICV_ACTIVE: 6,
  /** vcpu->preempted. */
  PREEMPTED: 7,
  /** VMCS GUEST_INTR_STATUS: RVI in 7:0, SVI in 15:8. */
  GUEST_INTR_STATUS: 8,
  /** vcpu->arch.apic_base (IA32_APIC_BASE, low 32 bits). */
  APIC_BASE: 9,
  /** apic->irr_pending (software hint, non-APICv only). */
  IRR_PENDING: 10,
  /** Guest activity state: 0 active, 1 HLT. */
  ACTIVITY: 11,
  /** vcpu->ready. */
  READY: 12,
  /** Vector injected by KVM through VM-entry event injection (non-APICv), -1 none. */
  INJECTED: 13,
  /** Armed TSC deadline of the LAPIC timer in µs of machine time (0 = disarmed). */
  TIMER_DEADLINE: 14,
  // Second line (words 16..31): NMI state and the last VM-exit's information.
  /** vcpu->arch.nmi_queued (atomic_t): NMIs kvm_inject_nmi() queued, not yet seen by process_nmi. */
  NMI_QUEUED: 16,
  /** vcpu->arch.nmi_pending: NMIs process_nmi() accepted (at most one or two), not yet injected. */
  NMI_PENDING: 17,
  /** vcpu->arch.nmi_injected: an NMI injection is in flight (VMX: until the next VM-exit completes it). */
  NMI_INJECTED: 18,
  /** vmx_get_exit_reason(vcpu).basic of the last VM-exit (TDX: of the last TD exit, TDVMCALL leaf for HLT). */
  EXIT_REASON: 19,
  /** TDX: vp_enter_args.r12 of a TDVMCALL(HLT): the guest halted with interrupts blocked. */
  TDX_HLT_IRQ_BLOCKED: 20,
  /** Exit qualification of an NMI exit: FRED NMI-source bitmap, and the arrival numbers it covers (first, last). */
  EXIT_NMI_SOURCES: 21,
  EXIT_NMI_FIRST: 22,
  EXIT_NMI_LAST: 23,
  /** vcpu->arch.handling_intr_from_guest (kvm_before_interrupt / kvm_after_interrupt). */
  HANDLING_INTR_FROM_GUEST: 24,
  /** TDX: the TD vCPU's PEND_NMI in its TDVPS (TDX module memory; KVM writes it with TDH.VP.WR). */
  TD_PEND_NMI: 25,
} as const;

/**
 * Word offsets of a vCPU's VMX line (struct vcpu_vt beside the descriptor, arch/x86/kvm/vmx/
 * common.h): its `pi_wakeup_list` node and whether IPI virtualization posts the guest's IPIs.
 * A list link holds the vCPU id + 1 of the next/previous node, or 0 for the list head of the
 * pCPU whose list the node is on (a node is on at most one list); -1 after list_del (poison).
 */
export const VMX_VCPU = {
  /** pi_wakeup_list.next. */
  PI_WAKEUP_NEXT: 0,
  /** pi_wakeup_list.prev. */
  PI_WAKEUP_PREV: 1,
  /**
   * IPI virtualization for this vCPU (KVM's enable_ipiv for a non-TD vCPU, reflected in the
   * VMCS tertiary control TERTIARY_EXEC_IPI_VIRT while APICv is active): 1 on, 0 off.
   */
  IPIV: 2,
} as const;

/**
 * Word offsets of a pCPU's VMX line (arch/x86/kvm/vmx/posted_intr.c per-CPU data): the list of
 * vCPUs blocked with the wakeup vector (`wakeup_vcpus_on_cpu`, links as in {@link VMX_VCPU})
 * and its raw spinlock (`wakeup_vcpus_on_cpu_lock`, two words: sync/spinlock.ts).
 */
export const VMX_PCPU = {
  /** wakeup_vcpus_on_cpu_lock (words 0-1). */
  WAKEUP_LOCK: 0,
  /** wakeup_vcpus_on_cpu.next (0 = the list is empty: the head points at itself). */
  WAKEUP_NEXT: 2,
  /** wakeup_vcpus_on_cpu.prev. */
  WAKEUP_PREV: 3,
} as const;

/** Word offsets of per-pCPU state. */
export const PCPU = {
  /** Pending host interrupts for the system vectors 0xE0-0xFF (bit = vector - 0xE0): the doorbell. */
  HOST_IRR_SYS: 0,
  /** Doorbell waiter flag: 1 while a thread of this pCPU sleeps on HOST_IRR_SYS. */
  HOST_IRR_WAITER: 1,
  /** vCPU currently loaded here (per_cpu current vcpu), -1 if none. */
  CURRENT_VCPU: 2,
  /** NMI latched and pending. */
  NMI_PENDING: 3,
  /** NMIs blocked (inside an NMI handler / SEAM root). */
  NMI_BLOCKED: 4,
  /** cpu_online(). */
  ONLINE: 5,
  /** Run-queue ticket lock: next ticket. */
  RUN_NEXT: 6,
  /** Run-queue ticket lock: ticket now served. */
  RUN_SERVING: 7,
  /** AMD AVIC doorbell (MSR_AMD64_SVM_AVIC_DOORBELL) pending on this pCPU: 1 = rung. */
  AVIC_DOORBELL: 8,
  /** Doorbell waiter flag for AVIC_DOORBELL (unused: the running vCPU polls it). */
  AVIC_DOORBELL_WAITER: 9,
  /** cpu_active(): the scheduler may place tasks here (cleared first when the pCPU goes offline). */
  ACTIVE: 10,
  // Second line (words 16..31): the CPU's and the host kernel's NMI state.
  /** Arrival number through which this CPU has accepted NMIs (labels NMIs for the checkers; the latch is one-deep). */
  NMI_ACCEPTED: 16,
  /** TDX: blocking-by-NMI in this LP's SEAMCALL VMCS (saved by SEAMCALL, reloaded by SEAMRET). */
  SEAMCALL_NMI_BLOCKING: 17,
  /** Linux per-CPU last_nmi_rip (default_do_nmi's back-to-back test). */
  NMI_LAST_RIP: 18,
  /** Linux per-CPU swallow_nmi. */
  NMI_SWALLOW: 19,
  /** Linux per-CPU nmi_stats.unknown and nmi_stats.swallow. */
  NMI_UNKNOWN: 20,
  NMI_SWALLOWED: 21,
} as const;

/** Word offsets of per-actor bookkeeping. */
export const ACTOR = {
  /** Private word used for full fences (a locked RMW on an uncontended line). */
  FENCE: 0,
  /** {@link ActorStatus}. */
  STATUS: 1,
  /** Live totals the main thread reads for progress (owner writes, plain stores). */
  SENT: 2,
  DELIVERED: 3,
  VMEXITS: 4,
  WAKEUPS: 5,
  HALTS: 6,
  NOTIFICATIONS: 7,
  /** While blocked: hash of the race-point label waited on, else 0. */
  WAIT_LABEL: 8,
  /** While blocked: address waited on. */
  WAIT_ADDR: 9,
  /** Incremented at every yield: proves the actor makes progress. */
  HEARTBEAT: 10,
  /** Run-queue hand-off word: the releaser of a pCPU sets it to 1 when this actor's ticket is served. */
  RUNQ_WAKE: 11,
} as const;

/** Values of {@link ACTOR.STATUS}. */
export const ActorStatus = { IDLE: 0, READY: 1, RUNNING: 2, BLOCKED: 3, DONE: 4, FAILED: 5 } as const;

/** Word offsets of the per-actor SRCU counters (srcu_data.srcu_lock_count / srcu_unlock_count). */
export const SRCU_CTR = { LOCKS0: 0, LOCKS1: 1, UNLOCKS0: 2, UNLOCKS1: 3 } as const;
/**
 * Word offsets in the SRCU header line at {@link VM.KVM_SRCU}: the current counter index, the
 * grace-period sequence, the grace-period mutex (state word, then its owner word) and the
 * grace-period state (SRCU_GP.IDLE / SCAN1 / SCAN2).
 */
export const SRCU_HDR = { CTR_IDX: 0, GP_SEQ: 1, GP_MUTEX: 2, GP_MUTEX_OWNER: 3, GP_STATE: 4 } as const;

/**
 * Word offsets of the Secure AVIC fields of a vCPU's VMCB control area modelled here
 * (APM: VMCB offset 0x134 bit 0 UpdateIRR, offset 0x150 RequestedIRR as 8 x u32).
 */
export const VMCB = {
  /** UpdateIRR (bit 0): VMRUN must merge RequestedIRR into the backing page IRR. */
  UPDATE_IRR: 0,
  /** RequestedIRR[0..7]: vectors KVM asks VMRUN to inject (filtered by ALLOWED_IRR). */
  REQUESTED_IRR: 1,
  /** VMSA vintr_ctrl V_NMI_PENDING (vNMI): set by KVM's inject_nmi, taken by the CPU. */
  V_NMI_PENDING: 9,
  /** VMSA vintr_ctrl V_NMI_BLOCKING: the guest is inside its NMI handler (until IRET). */
  V_NMI_BLOCKING: 10,
  /**
   * vcpu_svm's sev_savic_has_pending_ipi (RFC v2; software state, kept on this line): set by
   * the sender's KVM on an MSR_PROT ICR write, cleared just before VMRUN.
   */
  HAS_PENDING_IPI: 11,
} as const;

/**
 * Words of a vCPU's `avic-physid` line. The AVIC physical APIC ID table entry is a u64 that the
 * hardware reads and KVM writes; the access layer is 32-bit, so it is two words (bits 31:0 and
 * 63:32; field masks in hw/svm/avic.ts, named as avic.c names them). The same line holds KVM's
 * own copy of the entry, `vcpu_svm.avic_physical_id_entry` (software state, written only by the
 * vCPU's thread), which can say IsRunning while the table does not (IPI virtualization off).
 */
export const AVIC_PHYSID = {
  /** Entry bits 31:0: host physical APIC ID (11:0), backing-page address bits 31:12. */
  ENTRY_LO: 0,
  /** Entry bits 63:32: backing-page address bits 51:32 (19:0), IsRunning (bit 62), Valid (bit 63). */
  ENTRY_HI: 1,
  /** vcpu_svm.avic_physical_id_entry, bits 31:0. */
  KVM_ENTRY_LO: 2,
  /** vcpu_svm.avic_physical_id_entry, bits 63:32. */
  KVM_ENTRY_HI: 3,
} as const;

/** Secure AVIC guest backing page: ALLOWED_IRR word i lives at 0x204 + 0x10 * i. */
export const SAVIC_ALLOWED_IRR = 0x204;
/** Secure AVIC guest backing page: NMI_REQUEST (bit 0). */
export const SAVIC_NMI_REQUEST = 0x278;

/** Event ring: word offsets of the header lines and the record size. */
export const RING = {
  /** Producer index (monotonic). */
  HEAD: 0,
  /** Consumer index (monotonic), on its own line. */
  TAIL: LINE_WORDS,
  /** Records dropped because the ring was full. */
  DROPPED: LINE_WORDS + 1,
  /** First record. */
  RECORDS: 2 * LINE_WORDS,
  /** Words per record: kind, a, b, time (µs). */
  RECORD_WORDS: 4,
} as const;

/** Parameters a layout is built from. */
export interface LayoutConfig {
  vcpus: number;
  pcpus: number;
  /** Actors beyond vCPUs and pCPUs (devices, VMM, NMI sources, test workers). */
  extraActors?: number;
  /**
   * Names of the extra actors in order (a scenario's roles, e.g. 'vmm'), so lock and deadlock
   * reports name the thread that holds a lock as the scenario does; `extraN` when omitted.
   */
  extraActorNames?: readonly string[];
  /** Records per actor event ring (power of two). */
  ringRecords?: number;
  /** Words of scratch space for tests and user scenarios. */
  scratchWords?: number;
  /** Add the AMD Secure AVIC regions (guest backing page and VMCB fields per vCPU). */
  savic?: boolean;
  /** Physical packages the pCPUs are split into (consecutive pCPUs per package; default 1). */
  packages?: number;
  /**
   * Words of the vendor area: per-pCPU and per-vCPU state a vendor model lays out itself
   * (TDX: host registers, the user-return MSR cache, TD vCPU host-state bookkeeping).
   */
  vendorWords?: number;
}

/** One entry of the region table. */
export interface RegionInfo {
  name: string;
  /** How many instances (per vCPU, per pCPU, per actor, or 1). */
  count: number;
  /** Bytes of one instance. */
  bytes: number;
  /** Byte distance between instances (>= bytes, multiple of align). */
  stride: number;
  align: number;
  /** Byte offset of instance 0. */
  base: number;
}

/** A computed, checked machine layout with address functions. */
export interface Layout {
  readonly config: Required<LayoutConfig>;
  readonly regions: readonly RegionInfo[];
  readonly totalBytes: number;
  /** Number of actors including the main thread (the last one). */
  readonly actors: number;
  /** Actor id of the main thread. */
  readonly mainActor: ActorId;
  vcpuActor(v: VcpuId): ActorId;
  pcpuActor(p: PcpuId): ActorId;
  extraActor(k: number): ActorId;
  /** A VM-wide word ({@link VM}); `word` addresses further words of that line. */
  vm(field: number, word?: number): Addr;
  /** A register of vCPU v's APIC page, by architectural byte offset (e.g. APIC_TASKPRI). */
  apicReg(v: VcpuId, offset: number): Addr;
  /** Word i (0..7) of a 256-bit APIC bitmap at `offset` (APIC_IRR/ISR/TMR): REG_POS. */
  apicBitmapWord(v: VcpuId, offset: number, i: number): Addr;
  /** A posted-interrupt descriptor word ({@link PID}) of vCPU v; `i` indexes PIR words. */
  pid(v: VcpuId, field: number, i?: number): Addr;
  /** A per-vCPU control word ({@link VCPU}). */
  vcpu(v: VcpuId, field: number): Addr;
  /** A per-pCPU word ({@link PCPU}). */
  pcpu(p: PcpuId, field: number): Addr;
  /** Run-queue slot of pCPU p for ticket t: holds the waiting actor's id + 1, or 0. */
  runqSlot(p: PcpuId, ticket: number): Addr;
  /** A word ({@link AVIC_PHYSID}, default the entry's low word) of the AVIC physical APIC ID table line of APIC ID `id`. */
  avicPhysId(id: VcpuId, word?: number): Addr;
  /** The machine physical (byte) address of a word, as hardware tables hold addresses (e.g. the AVIC backing page). */
  physAddrOf(a: Addr): number;
  /** The word at machine physical (byte) address `pa` (what hardware reaches through an address it was given). */
  wordAtPhys(pa: number): Addr;
  /** A per-actor bookkeeping word ({@link ACTOR}). */
  actor(a: ActorId, field: number): Addr;
  /** A per-actor SRCU counter ({@link SRCU_CTR}). */
  srcu(a: ActorId, field: number): Addr;
  /** Word `w` of actor a's event ring ({@link RING}). */
  ring(a: ActorId, w: number): Addr;
  /** Scratch word i. */
  scratch(i: number): Addr;
  /** Word i of the vendor area (needs `vendorWords` > i). */
  vendorArea(i: number): Addr;
  /** Word at byte `offset` of vCPU v's Secure AVIC guest backing page (needs `savic`). */
  savicBacking(v: VcpuId, offset: number): Addr;
  /** A Secure AVIC VMCB control word of vCPU v ({@link VMCB}; needs `savic`). */
  vmcb(v: VcpuId, field: number, i?: number): Addr;
  /** A word of vCPU v's VMX line ({@link VMX_VCPU}). */
  vmxVcpu(v: VcpuId, field: number): Addr;
  /** A word of pCPU p's VMX line ({@link VMX_PCPU}). */
  vmxPcpu(p: PcpuId, field: number): Addr;
  /** Region by name. */
  region(name: string): RegionInfo;
}

const MAX_VCPUS = 256;
/** Run-queue slots per pCPU: more than the actors that can ever queue for one pCPU. */
const RUNQ_SLOTS = 512;

function roundUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

/**
 * Build the region table for a machine and return its address functions.
 * Throws EMU_ERR_BAD_PARAM naming the parameter when a size is out of range.
 */
export function createLayout(cfg: LayoutConfig): Layout {
  const config: Required<LayoutConfig> = {
    vcpus: cfg.vcpus,
    pcpus: cfg.pcpus,
    extraActors: cfg.extraActors ?? 0,
    extraActorNames: cfg.extraActorNames ?? [],
    ringRecords: cfg.ringRecords ?? 4096,
    scratchWords: cfg.scratchWords ?? 256,
    savic: cfg.savic ?? false,
    vendorWords: cfg.vendorWords ?? 0,
    packages: cfg.packages ?? 1,
  };
  const check = (name: string, v: number, lo: number, hi: number) => {
    if (!Number.isInteger(v) || v < lo || v > hi) {
      throw new EmuError('EMU_ERR_BAD_PARAM', `invalid ${name}: ${v} (must be an integer in ${lo}..${hi})`, { detail: { param: name } });
    }
  };
  check('vcpus', config.vcpus, 1, MAX_VCPUS);
  check('pcpus', config.pcpus, 1, 256);
  check('extraActors', config.extraActors, 0, 256);
  check('ringRecords', config.ringRecords, 16, 1 << 20);
  if ((config.ringRecords & (config.ringRecords - 1)) !== 0) {
    throw new EmuError('EMU_ERR_BAD_PARAM', `invalid ringRecords: ${config.ringRecords} (must be a power of two)`, { detail: { param: 'ringRecords' } });
  }
  check('scratchWords', config.scratchWords, 0, 1 << 24);
  check('vendorWords', config.vendorWords, 0, 1 << 24);
  check('packages', config.packages, 1, config.pcpus);

  const actors = config.vcpus + config.pcpus + config.extraActors + 1;
  const ringBytes = LINE_BYTES * 2 + config.ringRecords * RING.RECORD_WORDS * 4;
  const regions: RegionInfo[] = [];
  let cursor = 0;
  const add = (name: string, count: number, bytes: number, align: number) => {
    const stride = roundUp(bytes, align);
    const base = roundUp(cursor, align);
    regions.push({ name, count, bytes, stride, align, base });
    cursor = base + stride * count;
  };
  add('vm', 1, VM_LINES * LINE_BYTES, LINE_BYTES);
  add('apic-page', config.vcpus, APIC_PAGE_BYTES, APIC_PAGE_BYTES);
  add('pi-desc', config.vcpus, PI_DESC_BYTES, 64);
  add('vcpu', config.vcpus, 2 * LINE_BYTES, LINE_BYTES);
  add('pcpu', config.pcpus, 2 * LINE_BYTES, LINE_BYTES);
  add('runq', config.pcpus, RUNQ_SLOTS * 4, LINE_BYTES);
  add('avic-physid', config.vcpus, LINE_BYTES, LINE_BYTES);
  add('srcu', actors, LINE_BYTES, LINE_BYTES);
  add('actor', actors, LINE_BYTES, LINE_BYTES);
  add('ring', actors, ringBytes, LINE_BYTES);
  add('scratch', 1, Math.max(4, config.scratchWords * 4), LINE_BYTES);
  add('savic-backing', config.savic ? config.vcpus : 0, APIC_PAGE_BYTES, APIC_PAGE_BYTES);
  add('vmcb', config.savic ? config.vcpus : 0, LINE_BYTES, LINE_BYTES);
  add('vendor-area', config.vendorWords > 0 ? 1 : 0, Math.max(4, config.vendorWords * 4), LINE_BYTES);
  add('vmx-vcpu', config.vcpus, LINE_BYTES, LINE_BYTES);
  add('vmx-pcpu', config.pcpus, LINE_BYTES, LINE_BYTES);
  const totalBytes = roundUp(cursor, 4096);

  const byName = new Map(regions.map((r) => [r.name, r]));
  const reg = (name: string): RegionInfo => {
    const r = byName.get(name);
    if (!r) throw new EmuError('EMU_ERR_LAYOUT', `no region named ${name}`);
    return r;
  };
  const vmR = reg('vm');
  const apicR = reg('apic-page');
  const pidR = reg('pi-desc');
  const vcpuR = reg('vcpu');
  const pcpuR = reg('pcpu');
  const runqR = reg('runq');
  const physR = reg('avic-physid');
  const srcuR = reg('srcu');
  const actorR = reg('actor');
  const ringR = reg('ring');
  const scratchR = reg('scratch');
  const savicR = reg('savic-backing');
  const vmcbR = reg('vmcb');
  const vendorR = reg('vendor-area');
  const vmxVcpuR = reg('vmx-vcpu');
  const vmxPcpuR = reg('vmx-pcpu');
  const needSavic = (what: string) => {
    if (!config.savic) throw new EmuError('EMU_ERR_LAYOUT', `${what}: this machine has no Secure AVIC regions (layout option savic)`);
  };
  const w = (r: RegionInfo, i: number, byteOff: number) => ((r.base + r.stride * i + byteOff) >> 2) as Addr;

  const layout: Layout = {
    config,
    regions,
    totalBytes,
    actors,
    mainActor: actors - 1,
    vcpuActor: (v) => v,
    pcpuActor: (p) => config.vcpus + p,
    extraActor: (k) => config.vcpus + config.pcpus + k,
    vm: (field, word = 0) => w(vmR, 0, field * LINE_BYTES + word * 4),
    apicReg: (v, offset) => w(apicR, v, offset),
    apicBitmapWord: (v, offset, i) => w(apicR, v, offset + i * APIC_VECTOR_STRIDE_BYTES),
    pid: (v, field, i = 0) => w(pidR, v, (field + i) * 4),
    vcpu: (v, field) => w(vcpuR, v, field * 4),
    pcpu: (p, field) => w(pcpuR, p, field * 4),
    runqSlot: (p, ticket) => w(runqR, p, (ticket & (RUNQ_SLOTS - 1)) * 4),
    avicPhysId: (id, word = 0) => w(physR, id, word * 4),
    physAddrOf: (a) => a * 4,
    wordAtPhys: (pa) => (pa >>> 2) as Addr,
    actor: (a, field) => w(actorR, a, field * 4),
    srcu: (a, field) => w(srcuR, a, field * 4),
    ring: (a, word) => w(ringR, a, word * 4),
    scratch: (i) => w(scratchR, 0, i * 4),
    vendorArea: (i) => {
      if (i < 0 || i >= config.vendorWords) throw new EmuError('EMU_ERR_LAYOUT', `vendorArea(${i}): outside the ${config.vendorWords}-word vendor area`);
      return w(vendorR, 0, i * 4);
    },
    savicBacking: (v, offset) => {
      needSavic('savicBacking');
      return w(savicR, v, offset);
    },
    vmcb: (v, field, i = 0) => {
      needSavic('vmcb');
      return w(vmcbR, v, (field + i) * 4);
    },
    vmxVcpu: (v, field) => w(vmxVcpuR, v, field * 4),
    vmxPcpu: (p, field) => w(vmxPcpuR, p, field * 4),
    region: reg,
  };
  assertLayout(layout);
  return layout;
}

/**
 * Check the region table: every region aligned, inside the buffer, and no two overlapping.
 * Throws EMU_ERR_LAYOUT naming the regions at fault.
 */
export function assertLayout(layout: Pick<Layout, 'regions' | 'totalBytes'>): void {
  const spans = layout.regions.map((r) => ({ r, start: r.base, end: r.base + r.stride * r.count }));
  for (const { r, start, end } of spans) {
    if (start % r.align !== 0) throw new EmuError('EMU_ERR_LAYOUT', `region ${r.name} at ${start} is not ${r.align}-byte aligned`);
    if (r.stride % r.align !== 0 || r.stride < r.bytes) throw new EmuError('EMU_ERR_LAYOUT', `region ${r.name} has a bad stride ${r.stride}`);
    if (end > layout.totalBytes) throw new EmuError('EMU_ERR_LAYOUT', `region ${r.name} ends past the buffer`);
  }
  const sorted = [...spans].sort((a, b) => a.start - b.start);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    const cur = sorted[i]!;
    if (cur.start < prev.end && cur.end > cur.start && prev.end > prev.start) {
      throw new EmuError('EMU_ERR_LAYOUT', `regions ${prev.r.name} and ${cur.r.name} overlap`);
    }
  }
}

/** Bit position of vector v inside its 32-bit word (VEC_POS). */
export function vecPos(vector: number): number {
  return vector & 31;
}
/** Word index of vector v inside a 256-bit bitmap (REG_POS / 16). */
export function vecWord(vector: number): number {
  return vector >>> 5;
}

const FIELD_NAMES: Record<string, Record<number, string>> = {
  vm: Object.fromEntries(Object.entries(VM).map(([k, v]) => [v * LINE_WORDS, k])),
  'pi-desc': { 0: 'PIR0', 1: 'PIR1', 2: 'PIR2', 3: 'PIR3', 4: 'PIR4', 5: 'PIR5', 6: 'PIR6', 7: 'PIR7', 8: 'CONTROL', 9: 'NDST' },
  vcpu: Object.fromEntries(Object.entries(VCPU).map(([k, v]) => [v, k])),
  'avic-physid': Object.fromEntries(Object.entries(AVIC_PHYSID).map(([k, v]) => [v, k])),
  vmcb: { 0: 'UPDATE_IRR', 1: 'REQUESTED_IRR0', 2: 'REQUESTED_IRR1', 3: 'REQUESTED_IRR2', 4: 'REQUESTED_IRR3', 5: 'REQUESTED_IRR4', 6: 'REQUESTED_IRR5', 7: 'REQUESTED_IRR6', 8: 'REQUESTED_IRR7', 9: 'V_NMI_PENDING', 10: 'V_NMI_BLOCKING', 11: 'HAS_PENDING_IPI' },
  pcpu: Object.fromEntries(Object.entries(PCPU).map(([k, v]) => [v, k])),
  actor: Object.fromEntries(Object.entries(ACTOR).map(([k, v]) => [v, k])),
  'vmx-vcpu': Object.fromEntries(Object.entries(VMX_VCPU).map(([k, v]) => [v, k])),
  'vmx-pcpu': { ...Object.fromEntries(Object.entries(VMX_PCPU).map(([k, v]) => [v, k])), 1: 'WAKEUP_LOCK_SLEEPERS' },
};

/**
 * Name the machine word at `addr` for reports: region, instance and field,
 * e.g. "pcpu[1].RUN_SERVING" or "apic-page[2]+0x200".
 */
export function describeAddr(layout: Pick<Layout, 'regions'>, addr: Addr | number): string {
  const byte = addr * 4;
  for (const r of layout.regions) {
    if (byte < r.base || byte >= r.base + r.stride * r.count) continue;
    const inst = Math.floor((byte - r.base) / r.stride);
    const off = byte - r.base - inst * r.stride;
    const field = FIELD_NAMES[r.name]?.[off >> 2];
    const where = r.count > 1 || r.name !== 'vm' ? `${r.name}[${inst}]` : r.name;
    return field ? `${where}.${field}` : `${where}+0x${off.toString(16)}`;
  }
  return `word ${addr} (outside the machine)`;
}

/**
 * Plan named areas in the scratch region, each starting on its own 64-byte line (so hot words
 * of different writers never share a line). Returns the first scratch word of each area and the
 * total words needed (pass it as `scratchWords`).
 */
export function planScratch<K extends string>(areas: Readonly<Record<K, number>>): { at: Record<K, number>; words: number } {
  const at = {} as Record<K, number>;
  let next = 0;
  for (const k of Object.keys(areas) as K[]) {
    at[k] = next;
    next += Math.ceil(Math.max(1, areas[k]) / LINE_WORDS) * LINE_WORDS;
  }
  return { at, words: next };
}
