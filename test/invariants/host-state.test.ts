/**
 * Host-state checkers on hand-built observations: IRQs re-enabled with host values back, the
 * user-return cache describing the MSRs where KVM trusts it, and host code (IRQ/NMI handlers,
 * context switches, user mode, a VMX vCPU) finding host values — NMIs excused exactly inside the
 * window KVM accepts.
 */
import test from 'ava';
import { DEBUGCTLMSR_FREEZE_LBRS_ON_PMI, DEBUGCTLMSR_LBR, DR6_RESERVED, DR7_FIXED_1, HOST_REGS, type HostRegName, type HostRegs } from '../../src/host/msr.js';
import { HOST_POINTS, INIT_PKRU_VALUE, KVM_HOST_XCR0, KVM_HOST_XSS, type HostExpect, type HostPoint } from '../../src/host/host-state.js';
import { KVM_URET_REGS } from '../../src/host/uret.js';
import { HOST_CONSUMES, NMI_ACCEPTED, hostObserversSeeHostValues, hostStateRestoredBeforeIrqs, uretCacheCoherent, type HostObservation, type HostObserverKind, type HostStateRound } from '../../src/invariants/host-state.js';

const LBR = DEBUGCTLMSR_LBR | DEBUGCTLMSR_FREEZE_LBRS_ON_PMI;
const URET_HOST: Record<string, bigint> = { SYSCALL_MASK: 0x257fd5n, LSTAR: 0xffffffff81a00080n, TSC_AUX: 0x1000n, STAR: 0x0023001000000000n };
const GS = 0x7f3a2c000000n;

/** Host registers as the host wants them (perf LBR on, no breakpoints). */
function hostRegs(over: Partial<Record<HostRegName, bigint>> = {}): HostRegs {
  const r = Object.fromEntries(HOST_REGS.map((x) => [x.name, x.init])) as Record<HostRegName, bigint>;
  Object.assign(r, { DR6: DR6_RESERVED, DR7: DR7_FIXED_1, DEBUGCTL: LBR, XCR0: KVM_HOST_XCR0, XSS: KVM_HOST_XSS, PKRU: INIT_PKRU_VALUE, KERNEL_GS_BASE: GS, TSX_CTRL: 0n, UMWAIT_CONTROL: 0x186a0n, ...URET_HOST }, over);
  return r;
}
const EXPECT: HostExpect = {
  debugctl: LBR,
  cpuDr7: 0n,
  cpuDebugreg: [0n, 0n, 0n, 0n],
  xcr0: KVM_HOST_XCR0,
  xss: KVM_HOST_XSS,
  pkru: INIT_PKRU_VALUE,
  tsxCtrl: 0n,
  umwaitControl: 0x186a0n,
  userGsbase: GS,
  uretHost: KVM_URET_REGS.map((r) => URET_HOST[r]!),
};
/** What the TD exit leaves: DEBUGCTL without LBR, TD XCR0/XSS, PKRU 0, INIT DRs, zeroed lazy MSRs. */
const TD_EXIT: Partial<Record<HostRegName, bigint>> = { DEBUGCTL: 0n, XCR0: 0xe7n, XSS: 0n, PKRU: 0n, KERNEL_GS_BASE: 0n, STAR: 0n, LSTAR: 0n, TSC_AUX: 0n, SYSCALL_MASK: 0x20200n };

function obs(kind: HostObserverKind, point: HostPoint, regs: Partial<Record<HostRegName, bigint>> = {}, over: Partial<HostObservation> = {}): HostObservation {
  return { kind, pcpu: 0, point, task: 'vmm-vcpu-thread', regs: hostRegs(regs), expect: EXPECT, ...over };
}
const round = (...observations: HostObservation[]): HostStateRound => ({ pcpu: 0, observations });

test('hostStateRestoredBeforeIrqs: IRQs on with the host values is fine; with perf LBR lost or the TD XCR0 it is not', (t) => {
  t.deepEqual(hostStateRestoredBeforeIrqs(round(obs('irq-enable', 'irqs-on'))), []);
  // The lazy MSRs may still hold TD-exit values when IRQs come on: nothing in the kernel uses them.
  t.deepEqual(hostStateRestoredBeforeIrqs(round(obs('irq-enable', 'irqs-on', { LSTAR: 0n, KERNEL_GS_BASE: 0n }))), []);
  const lost = hostStateRestoredBeforeIrqs(round(obs('irq-enable', 'irqs-on', { DEBUGCTL: 0n })));
  t.is(lost.length, 1);
  t.is(lost[0]?.invariant, 'hostStateRestoredBeforeIrqs');
  t.regex(lost[0]?.message ?? '', /pCPU0 \(vmm-vcpu-thread\) at irqs-on: IRQs re-enabled after a TD exit with DEBUGCTL = 0x0 \(INIT value\), host value 0x801/);
  const xsave = hostStateRestoredBeforeIrqs(round(obs('irq-enable', 'irqs-on', { XCR0: 0xe7n, PKRU: 0n })));
  t.regex(xsave[0]?.message ?? '', /XCR0 = 0xe7, host value 0x2e7; PKRU = 0x0 \(INIT value\), host value 0x55555554/);
});

test('breakpoints: armed host breakpoints must be back; unarmed ones need only a DR7 that enables nothing', (t) => {
  const armed: HostExpect = { ...EXPECT, cpuDr7: DR7_FIXED_1 | 2n, cpuDebugreg: [0xffffffff81234560n, 0n, 0n, 0n] };
  const ok = obs('irq', 'irqs-on', { DR7: DR7_FIXED_1 | 2n, DR0: 0xffffffff81234560n }, { expect: armed });
  t.deepEqual(hostObserversSeeHostValues(round(ok)), []);
  const disarmed = hostObserversSeeHostValues(round(obs('irq', 'irqs-on', { DR7: DR7_FIXED_1, DR0: 0n }, { expect: armed })));
  t.regex(disarmed[0]?.message ?? '', /DR7 = 0x400 \(INIT value\), host value 0x402 \(host breakpoints disarmed\); DR0 = 0x0 \(INIT value\), host value 0xffffffff81234560/);
  t.deepEqual(hostObserversSeeHostValues(round(obs('irq', 'run-loop', { DR0: 0x1234n }))), [], 'a stale DR0 that DR7 does not enable is harmless');
  const stray = hostObserversSeeHostValues(round(obs('irq', 'run-loop', { DR7: DR7_FIXED_1 | 1n })));
  t.regex(stray[0]?.message ?? '', /enables a breakpoint the host never armed/);
});

test('NMI inside the accepted window may see exactly what is not restored yet; outside it, nothing', (t) => {
  // Right after the TD exit: DEBUGCTL, XSAVE state and breakpoints may all be clobbered.
  t.deepEqual(hostObserversSeeHostValues(round(obs('nmi', 'vmx-handle-nmi', TD_EXIT), obs('nmi', 'enter-exit-done', TD_EXIT), obs('nmi', 'seamret', TD_EXIT))), []);
  // After the DEBUGCTL restore only the XSAVE state and breakpoints are excused.
  t.deepEqual(hostObserversSeeHostValues(round(obs('nmi', 'debugctl-restored', { ...TD_EXIT, DEBUGCTL: LBR }))), []);
  const late = hostObserversSeeHostValues(round(obs('nmi', 'debugctl-restored', TD_EXIT)));
  t.is(late.length, 1);
  t.regex(late[0]?.message ?? '', /at debugctl-restored: nmi code found DEBUGCTL = 0x0 \(INIT value\), host value 0x801$/);
  // Before the TD entry only the deliberately cleared DR7 is excused.
  const armed: HostExpect = { ...EXPECT, cpuDr7: DR7_FIXED_1 | 2n, cpuDebugreg: [0x10n, 0n, 0n, 0n] };
  t.deepEqual(hostObserversSeeHostValues(round(obs('nmi', 'dr7-cleared', { DR0: 0x10n }, { expect: armed }))), []);
  t.is(hostObserversSeeHostValues(round(obs('nmi', 'dr7-cleared', { DR0: 0x10n, DEBUGCTL: 0n }, { expect: armed }))).length, 1);
  // With IRQs on again nothing is excused, for an NMI as for an IRQ.
  for (const kind of ['nmi', 'irq'] as const) t.is(hostObserversSeeHostValues(round(obs(kind, 'irqs-on', { DEBUGCTL: 0n }))).length, 1, kind);
  for (const p of ['run-loop', 'irqs-on', 'preempt-enable', 'handle-exit', 'vcpu-put', 'user-return', 'other-task', 'switch-to-guest', 'irqs-off'] as const) t.is(NMI_ACCEPTED[p], undefined, p);
  for (const p of Object.keys(NMI_ACCEPTED)) t.true((HOST_POINTS as readonly string[]).includes(p), p);
});

test('kernel-mode code never consumes the lazy MSRs; user mode and the context switch do', (t) => {
  t.deepEqual(hostObserversSeeHostValues(round(obs('irq', 'handle-exit', { KERNEL_GS_BASE: 0n, LSTAR: 0n, SYSCALL_MASK: 0x20200n }))), []);
  const user = hostObserversSeeHostValues(round(obs('user-return', 'user-return', { LSTAR: 0n, KERNEL_GS_BASE: 0n })));
  t.is(user.length, 1);
  t.regex(user[0]?.message ?? '', /KERNEL_GS_BASE = 0x0 \(INIT value\), host value 0x7f3a2c000000 \(SWAPGS hands user mode a wrong GS base\); LSTAR = 0x0 \(INIT value\), host value 0xffffffff81a00080/);
  const hs1 = hostObserversSeeHostValues(round(obs('context-switch', 'preempt-enable', {}, { savedGsbase: 0n })));
  t.regex(hs1[0]?.message ?? '', /save_fsgs stored GS base 0x0 for task vmm-vcpu-thread, whose user GS base is 0x7f3a2c000000/);
  t.deepEqual(hostObserversSeeHostValues(round(obs('context-switch', 'run-loop', {}, { savedGsbase: GS }))), []);
  t.true(HOST_CONSUMES['user-return'].includes('SYSCALL_MSRS'));
  t.false(HOST_CONSUMES.irq.includes('KERNEL_GS_BASE'));
});

test('uretCacheCoherent: curr must equal the MSR where the cache is trusted', (t) => {
  const slots = (hw: Partial<Record<HostRegName, bigint>>, curr: Partial<Record<HostRegName, bigint>> = {}) =>
    KVM_URET_REGS.map((reg) => ({ reg, host: URET_HOST[reg]!, curr: curr[reg] ?? URET_HOST[reg]!, hw: hw[reg] ?? URET_HOST[reg]! }));
  t.deepEqual(uretCacheCoherent(round(obs('user-return', 'user-return', {}, { uret: { registered: false, slots: slots({}) } }))), []);
  // After a TD exit the cache told at vcpu_put: curr = the TD-exit values = the MSRs.
  const told = { LSTAR: 0n, STAR: 0n, TSC_AUX: 0n, SYSCALL_MASK: 0x20200n };
  t.deepEqual(uretCacheCoherent(round(obs('vmx-entry', 'other-task', {}, { uret: { registered: true, slots: slots(told, told) } }))), []);
  // Not told: curr still says host.
  const stale = uretCacheCoherent(round(obs('user-return', 'user-return', {}, { uret: { registered: false, slots: slots(told) } })));
  t.is(stale.length, 1);
  t.regex(stale[0]?.message ?? '', /return to user mode \(notifier not registered\): the user-return cache does not describe the MSRs — SYSCALL_MASK: cache curr 0x257fd5 \(= host\), MSR 0x20200; LSTAR: cache curr 0xffffffff81a00080 \(= host\), MSR 0x0 \(INIT value\)/);
  const vmx = uretCacheCoherent(round(obs('vmx-entry', 'other-task', {}, { uret: { registered: true, slots: slots({ STAR: 0n }) } })));
  t.regex(vmx[0]?.message ?? '', /a VMX vCPU loading its user-return MSRs/);
  t.deepEqual(uretCacheCoherent(round(obs('irq', 'irqs-on'))), [], 'observations without a cache snapshot are not judged');
});
