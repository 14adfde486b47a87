/**
 * What a CPU does with host NMIs (Intel SDM vol. 3 "Nonmaskable Interrupt (NMI)", "Handling
 * Multiple NMIs"; FRED NMI-source reporting): an NMI sent to the CPU is latched (one deep: NMIs
 * that arrive while one is latched collapse into it); at an instruction boundary where NMIs are
 * not blocked the CPU accepts it — delivery through the IDT, or an NMI VM-exit in non-root
 * operation — and blocks NMIs until the next IRET.
 *
 * Words (per pCPU): `PCPU.NMI_PENDING` is the latch — bits 15:0 the NMI-source bitmap collected
 * since the last acceptance (non-zero = an NMI is pending), bits 30:16 an arrival count (an NMI's
 * number is taken in the same locked operation that latches it, so numbers are latch order);
 * `PCPU.NMI_BLOCKED` is "blocked by NMI"; `PCPU.NMI_ACCEPTED` the arrival number through which
 * the CPU has accepted NMIs (the emulator's label of what an acceptance covered).
 */
import { PCPU, type PcpuId } from '../mem/layout.js';
import type { Access } from '../mem/access.js';
import type { Addr } from '../mem/layout.js';
import { defaultDoNmi, NMI_DEVICE_RAISING, type DeliveredNmi } from '../host/nmi.js';

/** Latch word: the NMI-source bitmap (pending iff non-zero). */
const LATCH_SOURCES = 0xffff;
const LATCH_SEQ_SHIFT = 16;
const LATCH_SEQ_MASK = 0x7fff;

/** FRED NMI-source vector for an NMI without a source (bit 0 of the bitmap). */
export const NMI_SOURCE_UNKNOWN = 0;

/**
 * A pCPU's NMI state at power-on: nothing latched, not blocked (emulator set-up).
 * @emulator
 */
export function cpuNmiInit(acc: Access, pcpu: PcpuId): void {
  const L = acc.layout;
  for (const f of [PCPU.NMI_PENDING, PCPU.NMI_BLOCKED, PCPU.NMI_ACCEPTED, PCPU.SEAMCALL_NMI_BLOCKING]) acc.poke(L.pcpu(pcpu, f), 0);
}

/**
 * An NMI arrives at `pcpu` (an NMI IPI, a PMI, the watchdog): one locked operation ORs the
 * source's NMI-source vector into the latch (collapsing into an NMI already pending) and takes
 * the next arrival number, which it returns.
 * @sdm SDM vol. 3, APIC "Interrupt Command Register" (NMI delivery mode) and "Handling Multiple NMIs" (one NMI latched while blocked); FRED NMI-source reporting
 */
export function cpuNmiRaise(acc: Access, pcpu: PcpuId, sourceVector: number): number {
  const latch = acc.layout.pcpu(pcpu, PCPU.NMI_PENDING);
  let w = acc.readOnce(latch, 'nmi:raise-read');
  for (;;) {
    const seq = (((w >>> LATCH_SEQ_SHIFT) & LATCH_SEQ_MASK) + 1) & LATCH_SEQ_MASK;
    const next = (seq << LATCH_SEQ_SHIFT) | (w & LATCH_SOURCES) | (1 << (sourceVector & 15));
    const found = acc.cmpxchg(latch, w, next, 'nmi:raise-latch');
    if (found === w) return seq;
    w = found;
  }
}

/**
 * Is an NMI latched at `pcpu`?
 * @sdm SDM vol. 3, "Handling Multiple NMIs"
 */
export function cpuNmiPending(acc: Access, pcpu: PcpuId, label = 'nmi:pending-read'): boolean {
  return (acc.readOnce(acc.layout.pcpu(pcpu, PCPU.NMI_PENDING), label) & LATCH_SOURCES) !== 0;
}

/**
 * Are NMIs blocked on `pcpu` (inside an NMI handler, after an NMI VM-exit, in SEAM root)?
 * @sdm SDM vol. 3, "Handling Multiple NMIs" (blocked from delivery until IRET)
 */
export function cpuNmiBlocked(acc: Access, pcpu: PcpuId): boolean {
  return acc.readOnce(acc.layout.pcpu(pcpu, PCPU.NMI_BLOCKED), 'nmi:blocked-read') !== 0;
}

/**
 * Set or clear blocking by NMI on `pcpu` (VM entry/exit, SEAMCALL/SEAMRET); returns the old value.
 * @sdm SDM vol. 3C 25.4.2 / 27.3.4 (blocking by NMI in the guest interruptibility state)
 */
export function cpuSetNmiBlocked(acc: Access, pcpu: PcpuId, blocked: boolean, label: string): boolean {
  return acc.xchg(acc.layout.pcpu(pcpu, PCPU.NMI_BLOCKED), blocked ? 1 : 0, label) !== 0;
}

/**
 * `pcpu` accepts the latched NMI (IDT delivery, or an NMI VM-exit: the exit consumes it): take
 * the NMI-source bitmap, block NMIs. Returns what was accepted, or null when nothing is latched.
 * @sdm SDM vol. 3, "Handling Multiple NMIs" (delivery blocks NMIs) and VMX "NMI exiting" (the NMI is consumed by the VM exit)
 */
export function cpuNmiAccept(acc: Access, pcpu: PcpuId, label: string): DeliveredNmi | null {
  const L = acc.layout;
  const latch = L.pcpu(pcpu, PCPU.NMI_PENDING);
  let w = acc.readOnce(latch, `${label}-read`);
  for (;;) {
    if ((w & LATCH_SOURCES) === 0) return null;
    const found = acc.cmpxchg(latch, w, w & ~LATCH_SOURCES, label);
    if (found === w) break;
    w = found;
  }
  cpuSetNmiBlocked(acc, pcpu, true, 'nmi:blocked-set');
  const through = L.pcpu(pcpu, PCPU.NMI_ACCEPTED);
  const first = acc.readOnce(through, 'nmi:accepted-read') + 1;
  const last = (w >>> LATCH_SEQ_SHIFT) & LATCH_SEQ_MASK;
  acc.writeOnce(through, last, 'nmi:accepted-write');
  return { sources: w & LATCH_SOURCES, first, last };
}

/**
 * IRET at the end of an NMI handler: NMIs are no longer blocked.
 * @sdm SDM vol. 3, "Handling Multiple NMIs" (IRET unblocks NMIs)
 */
export function cpuNmiIret(acc: Access, pcpu: PcpuId): void {
  cpuSetNmiBlocked(acc, pcpu, false, 'nmi:iret');
}

/**
 * `pcpu` at an instruction boundary in (VMX) root operation at RIP `ip`: while NMIs are not
 * blocked and one is latched, deliver it through the host IDT — exc_nmi → default_do_nmi, then
 * IRET. An NMI latched while the handler ran is taken right after its IRET at the same RIP (the
 * back-to-back case). NMIs are delivered whatever RFLAGS.IF says. Returns how many were taken.
 * @sdm SDM vol. 3, "Priority Among Simultaneous Exceptions and Interrupts" (NMIs recognised at instruction boundaries when not blocked)
 */
export function cpuNmiWindow(acc: Access, pcpu: PcpuId, ip: number): number {
  if (pcpu < 0) return 0;
  let n = 0;
  for (;;) {
    if (cpuNmiBlocked(acc, pcpu) || !cpuNmiPending(acc, pcpu)) return n;
    const nmi = cpuNmiAccept(acc, pcpu, 'nmi:deliver');
    if (!nmi) return n;
    defaultDoNmi(acc, pcpu, nmi, 'host-idt', ip);
    cpuNmiIret(acc, pcpu);
    n++;
  }
}

/**
 * An NMI source device (a PMU counter, a watchdog, an NMI-raising device) signals an event to
 * `pcpu`: its status register first shows a raise in progress, then the NMI message is sent
 * (latched with the device's NMI-source vector), then the event is counted in the register (+1
 * clears the in-progress bit and adds one event). Returns the NMI's arrival number. Its
 * driver's handler is {@link nmiDeviceClaim} (host/nmi.ts).
 * @sdm SDM vol. 3, APIC "Interrupt Command Register" (NMI delivery mode); FRED NMI-source reporting
 */
export function nmiDeviceRaise(acc: Access, status: Addr, pcpu: PcpuId, sourceVector: number): number {
  acc.atomicOr(status, NMI_DEVICE_RAISING, 'nmi:src-status-set');
  const seq = cpuNmiRaise(acc, pcpu, sourceVector);
  acc.atomicAdd(status, 1, 'nmi:src-status-publish');
  return seq;
}
