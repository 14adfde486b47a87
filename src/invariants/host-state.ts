/**
 * Host-state invariants around TD entry/exit (domain notes 9.2 HS-1..HS-3, 11.13), pure
 * functions over what host code saw on one pCPU during one round.
 *
 * An observation is one piece of host code running on the pCPU — KVM itself when it re-enables
 * IRQs after a TD exit, an IRQ handler, an NMI (perf) handler, a context switch, a return to
 * user mode, a VMX vCPU loading its user-return MSRs — with the registers it found and what the
 * host expected there. Each kind of code consumes only some registers ({@link HOST_CONSUMES});
 * an NMI may also land inside the window where KVM accepts clobbered values
 * ({@link NMI_ACCEPTED}).
 */
import type { Violation } from './checks.js';
import { DR7_ENABLE_MASK, DR_GLOBAL_ENABLE_MASK, HOST_REGS, type HostRegName, type HostRegs } from '../host/msr.js';
import { KVM_URET_REGS, type UretCacheSnapshot } from '../host/uret.js';
import type { HostExpect, HostPoint } from '../host/host-state.js';

/** Which host code made an observation. @emulator */
export type HostObserverKind = 'irq-enable' | 'irq' | 'nmi' | 'context-switch' | 'user-return' | 'vmx-entry';

/**
 * What a piece of host code relies on:
 * - `DEBUGCTL`, `XCR0`, `XSS`, `PKRU`, `TSX_CTRL`, `UMWAIT_CONTROL`: the register equals the host value;
 * - `BREAKPOINTS`: with host breakpoints armed (a G bit in cpu_dr7), DR7 == cpu_dr7 and each
 *   armed DRn == cpu_debugreg[n]; with none armed, DR7 enables no breakpoint;
 * - `KERNEL_GS_BASE`: the inactive GS base is the task's user GS base (SWAPGS on return to user);
 * - `SAVED_GSBASE`: what the context switch saved as the outgoing task's GS base is its user GS base;
 * - `SYSCALL_MSRS`: STAR, LSTAR, SYSCALL_MASK, TSC_AUX hold the host values (user mode's SYSCALL, RDTSCP/RDPID).
 * @emulator
 */
export type HostConsumed = 'DEBUGCTL' | 'BREAKPOINTS' | 'XCR0' | 'XSS' | 'PKRU' | 'TSX_CTRL' | 'UMWAIT_CONTROL' | 'KERNEL_GS_BASE' | 'SAVED_GSBASE' | 'SYSCALL_MSRS';

const KERNEL_MODE: readonly HostConsumed[] = ['DEBUGCTL', 'BREAKPOINTS', 'XCR0', 'XSS', 'PKRU', 'TSX_CTRL', 'UMWAIT_CONTROL'];

/**
 * What each kind of host code consumes. Kernel-mode code uses perf's DEBUGCTL (LBR, BTF), the
 * host's breakpoints, the XSAVE feature state (kernel FPU use, the context switch's XSAVES),
 * PKRU (user-memory access checks), TSX and UMWAIT control; it never uses the inactive GS base
 * or the SYSCALL MSRs, which only user mode and its entry consume.
 * @kvm arch/x86/kernel/process_64.c __switch_to (save_fsgs), arch/x86/entry/entry_64.S (SWAPGS, entry_SYSCALL_64 via LSTAR)
 */
export const HOST_CONSUMES: Readonly<Record<HostObserverKind, readonly HostConsumed[]>> = {
  'irq-enable': ['DEBUGCTL', 'BREAKPOINTS', 'XCR0', 'XSS', 'PKRU'],
  irq: KERNEL_MODE,
  nmi: KERNEL_MODE,
  'context-switch': [...KERNEL_MODE, 'SAVED_GSBASE'],
  'user-return': [...KERNEL_MODE, 'KERNEL_GS_BASE', 'SYSCALL_MSRS'],
  'vmx-entry': KERNEL_MODE,
};

const DRS_TO_RESTORE: readonly HostConsumed[] = ['BREAKPOINTS'];
const XSAVE_TO_RESTORE: readonly HostConsumed[] = ['BREAKPOINTS', 'XCR0', 'XSS', 'PKRU'];
const ALL_TO_RESTORE: readonly HostConsumed[] = ['BREAKPOINTS', 'DEBUGCTL', 'XCR0', 'XSS', 'PKRU'];

/**
 * The window KVM accepts (HS-3): an NMI that lands while IRQs are off around the TD run may see
 * what KVM has not restored yet, and nothing else:
 * - host breakpoints disabled from `set_debugreg(DR7_FIXED_1, 7)` before TD entry until
 *   `hw_breakpoint_restore()` (points `dr7-cleared` .. `guest-entered`);
 * - DEBUGCTL with only bits 1, 12, 14 from the TD exit until the DEBUGCTL restore (`seamret`,
 *   `vmx-handle-nmi`, `enter-exit-done`);
 * - XCR0 / XSS / PKRU at the TD's values from the TD exit until tdx_load_host_xsave_state
 *   (`seamret` .. `debugctl-restored`).
 * At every other point an NMI handler must find the host's values, like any other host code.
 * @kvm arch/x86/kvm/vmx/tdx.c tdx_vcpu_run; arch/x86/kvm/x86.c vcpu_enter_guest
 */
export const NMI_ACCEPTED: Readonly<Partial<Record<HostPoint, readonly HostConsumed[]>>> = {
  'dr7-cleared': DRS_TO_RESTORE,
  'debugctl-snapshot': DRS_TO_RESTORE,
  seamret: ALL_TO_RESTORE,
  'vmx-handle-nmi': ALL_TO_RESTORE,
  'enter-exit-done': ALL_TO_RESTORE,
  'debugctl-restored': XSAVE_TO_RESTORE,
  'xsave-restored': DRS_TO_RESTORE,
  'guest-entered': DRS_TO_RESTORE,
};

/** One piece of host code that ran on the pCPU, what it found and what it expected. @emulator */
export interface HostObservation {
  kind: HostObserverKind;
  pcpu: number;
  /** Where on the pCPU's path the code ran. */
  point: HostPoint;
  /** Task current on the pCPU (for messages). */
  task: string;
  regs: HostRegs;
  expect: HostExpect;
  /** context-switch: the GS base save_fsgs stored for the outgoing task. */
  savedGsbase?: bigint;
  /**
   * The user-return cache and the MSRs at a point where KVM trusts the cache: a return to user
   * mode before the notifiers run, or a VMX vCPU's prepare_switch_to_guest before it calls
   * kvm_set_user_return_msr.
   */
  uret?: UretCacheSnapshot;
}

/** What one round left behind on one pCPU. @emulator */
export interface HostStateRound {
  pcpu: number;
  observations: readonly HostObservation[];
}

const hex = (v: bigint) => '0x' + v.toString(16);
const INIT = new Map(HOST_REGS.map((r) => [r.name, r.init]));
/** A register value, tagged when it is the architectural INIT value. */
function val(reg: HostRegName, v: bigint): string {
  return INIT.get(reg) === v ? `${hex(v)} (INIT value)` : hex(v);
}

/** Mismatches of one consumed item, as "what: found ≠ expected" strings. */
function mismatches(o: HostObservation, c: HostConsumed): string[] {
  const { regs, expect } = o;
  const eq = (reg: HostRegName, want: bigint) => (regs[reg] === want ? [] : [`${reg} = ${val(reg, regs[reg])}, host value ${hex(want)}`]);
  switch (c) {
    case 'DEBUGCTL':
      return eq('DEBUGCTL', expect.debugctl);
    case 'XCR0':
      return eq('XCR0', expect.xcr0);
    case 'XSS':
      return eq('XSS', expect.xss);
    case 'PKRU':
      return eq('PKRU', expect.pkru);
    case 'TSX_CTRL':
      return eq('TSX_CTRL', expect.tsxCtrl);
    case 'UMWAIT_CONTROL':
      return eq('UMWAIT_CONTROL', expect.umwaitControl);
    case 'BREAKPOINTS': {
      if ((expect.cpuDr7 & DR_GLOBAL_ENABLE_MASK) === 0n) {
        return (regs.DR7 & DR7_ENABLE_MASK) === 0n ? [] : [`DR7 = ${hex(regs.DR7)} enables a breakpoint the host never armed`];
      }
      const out = eq('DR7', expect.cpuDr7).map((m) => `${m} (host breakpoints disarmed)`);
      (['DR0', 'DR1', 'DR2', 'DR3'] as const).forEach((dr, i) => {
        if (((expect.cpuDr7 >> BigInt(2 * i)) & 3n) !== 0n) out.push(...eq(dr, expect.cpuDebugreg[i] ?? 0n));
      });
      return out;
    }
    case 'KERNEL_GS_BASE':
      return eq('KERNEL_GS_BASE', expect.userGsbase).map((m) => `${m} (SWAPGS hands user mode a wrong GS base)`);
    case 'SAVED_GSBASE':
      return o.savedGsbase === undefined || o.savedGsbase === expect.userGsbase ? [] : [`save_fsgs stored GS base ${hex(o.savedGsbase)} for task ${o.task}, whose user GS base is ${hex(expect.userGsbase)}`];
    case 'SYSCALL_MSRS':
      return KVM_URET_REGS.flatMap((reg, s) => eq(reg, expect.uretHost[s] ?? 0n));
  }
}

function where(o: HostObservation): string {
  return `pCPU${o.pcpu} (${o.task}) at ${o.point}`;
}

/**
 * After a TD exit and before KVM re-enables IRQs (kvm_before_interrupt; local_irq_enable), the
 * host's DEBUGCTL, breakpoints, XCR0, XSS and PKRU are back: no IRQ handler can see the TD's
 * or the INIT values. Judges the `irq-enable` observations.
 * @kvm arch/x86/kvm/vmx/tdx.c tdx_vcpu_run (restores before returning to vcpu_enter_guest)
 */
export function hostStateRestoredBeforeIrqs(r: HostStateRound): Violation[] {
  const out: Violation[] = [];
  for (const o of r.observations) {
    if (o.kind !== 'irq-enable') continue;
    const bad = HOST_CONSUMES['irq-enable'].flatMap((c) => mismatches(o, c));
    if (bad.length > 0) out.push({ invariant: 'hostStateRestoredBeforeIrqs', message: `${where(o)}: IRQs re-enabled after a TD exit with ${bad.join('; ')}` });
  }
  return out;
}

/**
 * Wherever KVM trusts the user-return cache — a return to user mode (before the notifier runs,
 * or with none registered) and a VMX vCPU's kvm_set_user_return_msr — each slot's `curr` equals
 * the MSR in hardware. A stale `curr` makes the notifier skip the MSR (user mode runs with the
 * TD's value) or makes KVM skip a guest's WRMSR.
 * @kvm arch/x86/kvm/x86.c kvm_on_user_return, kvm_set_user_return_msr
 */
export function uretCacheCoherent(r: HostStateRound): Violation[] {
  const out: Violation[] = [];
  for (const o of r.observations) {
    if (!o.uret) continue;
    const stale = o.uret.slots.filter((s) => s.curr !== s.hw);
    if (stale.length === 0) continue;
    const what = stale.map((s) => `${s.reg}: cache curr ${hex(s.curr)}${s.curr === s.host ? ' (= host)' : ''}, MSR ${val(s.reg, s.hw)}`).join('; ');
    const who = o.kind === 'vmx-entry' ? 'a VMX vCPU loading its user-return MSRs' : `return to user mode (notifier ${o.uret.registered ? 'registered' : 'not registered'})`;
    out.push({ invariant: 'uretCacheCoherent', message: `${where(o)}, ${who}: the user-return cache does not describe the MSRs — ${what}` });
  }
  return out;
}

/**
 * Host code never finds a TD or INIT value where a host value belongs: each IRQ handler, NMI
 * handler, context switch, return to user mode and VMX vCPU entry checks what its kind of code
 * consumes ({@link HOST_CONSUMES}); an NMI is excused only for what {@link NMI_ACCEPTED} lists
 * at its point.
 * @kvm arch/x86/kvm/vmx/tdx.c tdx_vcpu_run, tdx_prepare_switch_to_host; arch/x86/kvm/x86.c kvm_on_user_return
 */
export function hostObserversSeeHostValues(r: HostStateRound): Violation[] {
  const out: Violation[] = [];
  for (const o of r.observations) {
    if (o.kind === 'irq-enable') continue;
    const excused = o.kind === 'nmi' ? (NMI_ACCEPTED[o.point] ?? []) : [];
    const bad = HOST_CONSUMES[o.kind].filter((c) => !excused.includes(c)).flatMap((c) => mismatches(o, c));
    if (bad.length > 0) out.push({ invariant: 'hostObserversSeeHostValues', message: `${where(o)}: ${o.kind} code found ${bad.join('; ')}` });
  }
  return out;
}
