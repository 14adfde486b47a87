/**
 * The Linux NMI handler of a pCPU (arch/x86/kernel/nmi.c): exc_nmi → default_do_nmi. Every
 * NMI_LOCAL handler polls its own source (perf, watchdog, a device), so one invocation may
 * service the events of several NMIs; a back-to-back NMI at the same RIP that finds nothing is
 * swallowed if the previous invocation handled more than one event, otherwise it is reported
 * as "Uhhuh. NMI received for unknown reason".
 *
 * Per-CPU state (the kernel's per-CPU variables, in the pCPU's second line): last_nmi_rip,
 * swallow_nmi, nmi_stats.unknown and nmi_stats.swallow. The handler chain is per thread (the
 * drivers a scenario's thread registered with register_nmi_handler); an emulator observer may
 * watch every invocation (the checkers' record).
 */
import { PCPU, type Addr, type PcpuId } from '../mem/layout.js';
import type { Access } from '../mem/access.js';
import { pollUntil } from '../sync/wait.js';

/** Bit 0 of an NMI source device's status register: a raise is in progress (bits 31:1 count unclaimed events). */
export const NMI_DEVICE_RAISING = 1;

/**
 * The NMI_LOCAL handler of an NMI source device's driver: wait out a raise in progress (the
 * device's register write and its NMI message are one device action that the emulator splits,
 * so a poll between the two waits for the second, bounded), then read-and-clear the events it
 * counts. Returns how many it handled.
 * @kvm arch/x86/events/core.c perf_event_nmi_handler (the pattern: poll the own source, claim what is there)
 */
export function nmiDeviceClaim(acc: Access, status: Addr, what: string): number {
  const raising = () => (acc.readOnce(status, 'nmi:handler-poll') & NMI_DEVICE_RAISING) !== 0;
  if (raising()) pollUntil(acc, status, 'nmi:handler-poll-wait', () => !raising(), () => `${what} to finish raising its NMI`);
  return acc.atomicAnd(status, NMI_DEVICE_RAISING, 'nmi:handler-claim') >>> 1;
}

/** Who called the NMI handler: the CPU through the host IDT, or KVM for an NMI VM-exit. */
export type NmiEntry = 'host-idt' | 'kvm-exit';

/** How one invocation of default_do_nmi ended. */
export type NmiOutcome = 'handled' | 'swallowed' | 'unknown';

/** An NMI as the CPU handed it over: its NMI-source bitmap and the arrivals it covers. */
export interface DeliveredNmi {
  /** FRED NMI-source bitmap (event data, or the exit qualification of an NMI exit). */
  sources: number;
  /** Arrival numbers covered (NMIs collapsed in the one-deep latch): first..last. */
  first: number;
  last: number;
}

/** One invocation of the handler, as the emulator's observer sees it. */
export interface NmiInvocationRecord {
  pcpu: PcpuId;
  nmi: DeliveredNmi;
  entry: NmiEntry;
  /** The interrupted RIP (regs->ip). */
  ip: number;
  /** Events the NMI_LOCAL handlers claimed. */
  handled: number;
  /** regs->ip == last_nmi_rip. */
  b2b: boolean;
  outcome: NmiOutcome;
}

/** An NMI_LOCAL handler: polls its source, returns how many events it handled (0 = not mine). */
export type NmiHandler = () => number;

interface NmiChain {
  handlers: NmiHandler[];
  observer?: (r: NmiInvocationRecord) => void;
}

const chains = new WeakMap<Access, NmiChain>();

function chain(acc: Access): NmiChain {
  let c = chains.get(acc);
  if (!c) chains.set(acc, (c = { handlers: [] }));
  return c;
}

/**
 * Register an NMI_LOCAL handler for NMIs this thread takes.
 * @kvm arch/x86/kernel/nmi.c register_nmi_handler (NMI_LOCAL)
 */
export function registerNmiHandler(acc: Access, handler: NmiHandler): void {
  chain(acc).handlers.push(handler);
}

/**
 * Watch every invocation of the handler on this thread (emulator bookkeeping for checkers).
 * @emulator
 */
export function setNmiObserver(acc: Access, observer: ((r: NmiInvocationRecord) => void) | undefined): void {
  const c = chain(acc);
  if (observer) c.observer = observer;
  else delete c.observer;
}

/**
 * A pCPU's Linux NMI state at boot: no last RIP, no swallow armed, counters zero (emulator set-up).
 * @emulator
 */
export function nmiHostStateInit(acc: Access, pcpu: PcpuId): void {
  const L = acc.layout;
  for (const f of [PCPU.NMI_LAST_RIP, PCPU.NMI_SWALLOW, PCPU.NMI_UNKNOWN, PCPU.NMI_SWALLOWED]) acc.poke(L.pcpu(pcpu, f), 0);
}

/**
 * The NMI handler for one NMI on `pcpu` at RIP `ip`: back-to-back detection by RIP, every
 * NMI_LOCAL handler polls its source, more than one event handled arms swallow_nmi, and an NMI
 * nobody claims is swallowed only as the second half of a back-to-back pair, else counted and
 * reported unknown. Returns the outcome.
 * @kvm arch/x86/kernel/nmi.c default_do_nmi (nmi_handle(NMI_LOCAL), unknown_nmi_error)
 */
export function defaultDoNmi(acc: Access, pcpu: PcpuId, nmi: DeliveredNmi, entry: NmiEntry, ip: number): NmiOutcome {
  const L = acc.layout;
  const lastRip = L.pcpu(pcpu, PCPU.NMI_LAST_RIP);
  const swallow = L.pcpu(pcpu, PCPU.NMI_SWALLOW);
  const b2b = acc.readOnce(lastRip, 'nmi:last-rip-read') === ip;
  if (!b2b) acc.writeOnce(swallow, 0, 'nmi:swallow-reset');
  acc.writeOnce(lastRip, ip, 'nmi:last-rip-write');
  const c = chain(acc);
  let handled = 0;
  for (const h of c.handlers) handled += h();
  let outcome: NmiOutcome;
  if (handled > 0) {
    if (handled > 1) acc.writeOnce(swallow, 1, 'nmi:swallow-arm');
    outcome = 'handled';
  } else if (b2b && acc.readOnce(swallow, 'nmi:swallow-read') !== 0) {
    acc.atomicAdd(L.pcpu(pcpu, PCPU.NMI_SWALLOWED), 1, 'nmi:stats-swallow');
    outcome = 'swallowed';
  } else {
    // unknown_nmi_error(): "Uhhuh. NMI received for unknown reason %02x on CPU %d."
    acc.atomicAdd(L.pcpu(pcpu, PCPU.NMI_UNKNOWN), 1, 'nmi:stats-unknown');
    outcome = 'unknown';
  }
  c.observer?.({ pcpu, nmi, entry, ip, handled, b2b, outcome });
  return outcome;
}

/**
 * nmi_stats of a pCPU (bookkeeping read).
 * @emulator
 */
export function nmiStats(acc: Access, pcpu: PcpuId): { unknown: number; swallow: number } {
  const L = acc.layout;
  return { unknown: acc.peek(L.pcpu(pcpu, PCPU.NMI_UNKNOWN)), swallow: acc.peek(L.pcpu(pcpu, PCPU.NMI_SWALLOWED)) };
}
