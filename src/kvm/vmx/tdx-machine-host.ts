/**
 * Host CPU state of a TDX machine (domain notes 9): every pCPU has its host registers (DRs,
 * DEBUGCTL, XCR0/XSS/PKRU, KERNEL_GS_BASE, the SYSCALL MSRs, TSC_AUX, TSX_CTRL, UMWAIT) and its
 * user-return MSR cache in the machine's vendor area; every TD vCPU its host-state bookkeeping.
 * A TD vCPU's trip through the run loop then does what the kernel does around TDH.VP.ENTER:
 *
 *   vcpu_load:   vcpu->cpu, host PKRU snapshot                      (kvm_arch_vcpu_load)
 *   entry:       tdx_prepare_switch_to_guest (save KERNEL_GS_BASE once per load),
 *                host DEBUGCTL snapshot with IRQs off
 *   run:         TDH.VP.ENTER … TD exit: the module leaves INIT/reset values (host-state.ts)
 *                → DEBUGCTL restore → xsave restore → guest_entered   (tdx_vcpu_run)
 *   vcpu_put:    KERNEL_GS_BASE back, user-return cache told what the module left
 *                (tdx_prepare_switch_to_host); the MSRs themselves are restored lazily by the
 *                user-return notifier when the vCPU thread returns to user space.
 *
 * Block layout inside the vendor area: per pCPU its registers, user-return cache, host software
 * block and TDX-module LP block; per task (one per vCPU thread, then one idle task per pCPU) a
 * task block; per vCPU a TD host-state block.
 */
import type { Access } from '../../mem/access.js';
import type { HostVirtState, PcpuHostState } from '../../host/host-state.js';
import type { HotplugCallbacks } from '../../host/hotplug-callbacks.js';
import type { TdxPlaces } from './tdx-bringup.js';
import { tdxMachineBringup, tdxMachineBringupPlaces, tdxMachineCheckSeamcallCpu, tdxMachineBringupWords, tdxMachineCpuStartup, tdxMachineCpuTeardown, tdxMachineHostVirt, tdxMachinePcpuVirt } from './tdx-machine-bringup.js';
import type { Addr, Layout, PcpuId, VcpuId } from '../../mem/layout.js';
import { HOST_REG_BLOCK_WORDS, initHostRegs, snapshotHostRegs, type HostRegs } from '../../host/msr.js';
import { URET_BLOCK_WORDS, kvmUserReturnMsrCpuOnline, snapshotUretCache, type UretCacheSnapshot } from '../../host/uret.js';
import { HOST_CPU, HOST_CPU_BLOCK_WORDS, TASK_BLOCK_WORDS, hostBootRegs, initHostCpu, initTask } from '../../host/host-state.js';
import {
  TDX_LP_BLOCK_WORDS,
  TD_HS_BLOCK_WORDS,
  TD_LINUX_GUEST,
  kvmSnapshotHostDebugctl,
  tdxPrepareSwitchToGuest,
  tdxVcpuHostStateInit,
  tdxVcpuLoad,
  tdxVcpuPut,
  tdxHandleExitHostState,
  tdxVcpuRun,
  type TdExitReason,
  type TdxHostStatePlaces,
  type TdxRunHooks,
} from './tdx-host-state.js';
import type { PatchSet } from '../patches.js';

const PER_PCPU = HOST_REG_BLOCK_WORDS + URET_BLOCK_WORDS + HOST_CPU_BLOCK_WORDS + TDX_LP_BLOCK_WORDS;
const PER_VCPU = TD_HS_BLOCK_WORDS + TASK_BLOCK_WORDS;

/** Words of the host-state blocks (the first part of the vendor area). */
function hostStateWords(vcpus: number, pcpus: number): number {
  return pcpus * (PER_PCPU + TASK_BLOCK_WORDS) + vcpus * PER_VCPU;
}

/** Words of the vendor area a TDX machine needs: host-state blocks, then the TDX host (bring-up) state. @emulator */
export function tdxMachineAreaWords(vcpus: number, pcpus: number, packages = 1): number {
  return hostStateWords(vcpus, pcpus) + tdxMachineBringupWords(pcpus, packages);
}

/** The TDX host (bring-up, cpuhp, module) state of this machine, or null without a vendor area. @emulator */
export function tdxMachineHost(L: Layout): TdxPlaces | null {
  if (!tdxMachinePlaces(L)) return null;
  return tdxMachineBringupPlaces(L, hostStateWords(L.config.vcpus, L.config.pcpus));
}

/** The task index of vCPU v's thread, and of pCPU p's idle task. */
function vcpuTask(v: VcpuId): number {
  return v;
}
function idleTask(L: Layout, p: PcpuId): number {
  return L.config.vcpus + p;
}

const placesCache = new WeakMap<Layout, TdxHostStatePlaces | null>();

/**
 * Where the blocks of this machine live (in the vendor area), or null for a layout without one
 * (a scenario's slice of a machine: host-state tracking is then off).
 * @emulator
 */
export function tdxMachinePlaces(L: Layout): TdxHostStatePlaces | null {
  let P = placesCache.get(L);
  if (P !== undefined) return P;
  const { vcpus, pcpus } = L.config;
  if (L.config.vendorWords < tdxMachineAreaWords(vcpus, pcpus, L.config.packages)) {
    placesCache.set(L, null);
    return null;
  }
  const base = L.vendorArea(0);
  const at = (off: number) => (base + off) as Addr;
  const regs0 = 0;
  const uret0 = regs0 + pcpus * HOST_REG_BLOCK_WORDS;
  const cpu0 = uret0 + pcpus * URET_BLOCK_WORDS;
  const lp0 = cpu0 + pcpus * HOST_CPU_BLOCK_WORDS;
  const task0 = lp0 + pcpus * TDX_LP_BLOCK_WORDS;
  const td0 = task0 + (vcpus + pcpus) * TASK_BLOCK_WORDS;
  P = {
    regs: (p) => at(regs0 + p * HOST_REG_BLOCK_WORDS),
    uret: (p) => at(uret0 + p * URET_BLOCK_WORDS),
    hostCpu: (p) => at(cpu0 + p * HOST_CPU_BLOCK_WORDS),
    tdxLp: (p) => at(lp0 + p * TDX_LP_BLOCK_WORDS),
    task: (t) => at(task0 + t * TASK_BLOCK_WORDS),
    td: (v) => at(td0 + v * TD_HS_BLOCK_WORDS),
  };
  placesCache.set(L, P);
  return P;
}

/**
 * Boot state: every pCPU's registers at its boot values, its user-return cache set up
 * (kvm_user_return_msr_cpu_online), its idle task current; every vCPU thread a task with its own
 * user GS base; every TD vCPU not loaded. Emulator set-up.
 * @kvm arch/x86/kvm/x86.c kvm_user_return_msr_cpu_online; arch/x86/kvm/vmx/tdx.c tdx_vcpu_create
 */
export function tdxMachineHostInit(acc: Access): void {
  const L = acc.layout;
  const P = tdxMachinePlaces(L);
  if (!P) return;
  for (let t = 0; t < L.config.vcpus + L.config.pcpus; t++) initTask(acc, P, t, 0x7f0000000000n + BigInt(t) * 0x200000n);
  for (let p = 0; p < L.config.pcpus; p++) {
    initHostRegs(acc, P, p, { ...hostBootRegs(p), KERNEL_GS_BASE: 0x7f0000000000n + BigInt(idleTask(L, p)) * 0x200000n });
    kvmUserReturnMsrCpuOnline(acc, P, p);
    initHostCpu(acc, P, p, 0n, idleTask(L, p));
  }
  for (let v = 0; v < L.config.vcpus; v++) tdxVcpuHostStateInit(acc, P, v, vcpuTask(v));
  tdxMachineBringup(acc, tdxMachineHost(L)!);
}

/**
 * The cpuhp callbacks of a TDX machine's pCPU hotplug, as thread `acc` runs them (none without
 * a vendor area).
 * @kvm kernel/cpu.c cpuhp_invoke_callback (CPUHP_AP_KVM_ONLINE, "kvm/cpu/tdx:online")
 */
export function tdxMachineHotplug(acc: Access, patches?: PatchSet): HotplugCallbacks {
  const b = tdxMachineHost(acc.layout);
  if (!b) return {};
  return { teardown: (p) => tdxMachineCpuTeardown(acc, b, p, patches), startup: (p) => tdxMachineCpuStartup(acc, b, p, patches) };
}

/** The VM-wide host virtualization state for snapshots (undefined without a vendor area). @emulator */
export function tdxMachineHostSnapshot(acc: Access): HostVirtState | undefined {
  const b = tdxMachineHost(acc.layout);
  return b ? tdxMachineHostVirt(acc, b) : undefined;
}

/**
 * Sched-in of TD vCPU v on pCPU p: its thread becomes current there; vcpu->cpu and the host PKRU.
 * @kvm arch/x86/kvm/x86.c kvm_arch_vcpu_load
 */
export function tdxMachineVcpuLoad(acc: Access, v: VcpuId, p: PcpuId): void {
  const P = tdxMachinePlaces(acc.layout);
  if (!P) return;
  acc.writeOnce((P.hostCpu(p) + HOST_CPU.CURRENT_TASK) as Addr, vcpuTask(v), 'sched:current-task');
  tdxVcpuLoad(acc, P, v, p);
}

/**
 * Sched-out of TD vCPU v: tdx_prepare_switch_to_host, then the pCPU's idle task is current.
 * @kvm arch/x86/kvm/vmx/tdx.c tdx_vcpu_put
 */
export function tdxMachineVcpuPut(acc: Access, v: VcpuId, p: PcpuId): void {
  const P = tdxMachinePlaces(acc.layout);
  if (!P) return;
  tdxVcpuPut(acc, P, v);
  if (p >= 0) acc.writeOnce((P.hostCpu(p) + HOST_CPU.CURRENT_TASK) as Addr, idleTask(acc.layout, p), 'sched:current-task');
}

/**
 * A TD run on pCPU p with the host-state handling around it: prepare_switch_to_guest, the
 * DEBUGCTL snapshot with IRQs off, then tdx_vcpu_run's TDH.VP.ENTER (`hooks.guest`: SEAMCALL,
 * the TD, the exit into SEAM root), the module's host-state writes, SEAMRET (`hooks.seamret`),
 * the exit decode and NMI handling, and KVM's restores (with `patches`). Without a vendor area
 * (a scenario's slice of a machine) only the hooks run, in the same order.
 * @kvm arch/x86/kvm/vmx/tdx.c tdx_vcpu_run
 */
export function tdxMachineVcpuRun(acc: Access, v: VcpuId, p: PcpuId, hooks: TdxRunHooks, patches: PatchSet): TdExitReason {
  const P = tdxMachinePlaces(acc.layout);
  if (!P || p < 0) {
    const reason = hooks.guest();
    hooks.seamret?.();
    hooks.at('seamret');
    hooks.exitDecode?.();
    if (reason === 'nmi') hooks.handleNmi();
    return reason;
  }
  tdxMachineCheckSeamcallCpu(acc, tdxMachineHost(acc.layout)!, p, v);
  tdxPrepareSwitchToGuest(acc, P, v);
  kvmSnapshotHostDebugctl(acc, P, v, p);
  return tdxVcpuRun(acc, P, v, TD_LINUX_GUEST, hooks, patches);
}

/**
 * The exit handler's host-state part on a TDX machine (nothing without a vendor area).
 * @kvm arch/x86/kvm/vmx/tdx.c tdx_handle_exit
 */
export function tdxMachineHandleExit(acc: Access, v: VcpuId, patches: PatchSet): void {
  const P = tdxMachinePlaces(acc.layout);
  if (P) tdxHandleExitHostState(acc, P, v, patches);
}

const hex = (x: bigint) => '0x' + x.toString(16);

/** Snapshot pCPU p's host state (bookkeeping reads, not race points); undefined without a vendor area. @emulator */
export function tdxMachinePcpuHostState(acc: Access, p: PcpuId): PcpuHostState | undefined {
  const L = acc.layout;
  const P = tdxMachinePlaces(L);
  if (!P) return undefined;
  const regs: HostRegs = snapshotHostRegs(acc, P, p);
  const u: UretCacheSnapshot = snapshotUretCache(acc, P, p);
  const cur = acc.peek((P.hostCpu(p) + HOST_CPU.CURRENT_TASK) as Addr);
  return {
    regs: Object.fromEntries(Object.entries(regs).map(([k, x]) => [k, hex(x)])),
    uret: { registered: u.registered, slots: u.slots.map((s) => ({ reg: s.reg, host: hex(s.host), curr: hex(s.curr), msr: hex(s.hw) })) },
    current: cur < L.config.vcpus ? `vcpu${cur}` : `idle${cur - L.config.vcpus}`,
    virt: tdxMachinePcpuVirt(acc, tdxMachineHost(L)!, p),
  };
}
