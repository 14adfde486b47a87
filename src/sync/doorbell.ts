/**
 * Doorbell: a pending-bits word plus a waiter flag, the futex form of "send an interrupt to a
 * CPU that may be halted" (the pCPU host IRR at PCPU.HOST_IRR_SYS / HOST_IRR_WAITER).
 *
 * ```
 *  addr + 0  PENDING  bits rung and not yet taken (atomic OR to ring, xchg 0 to take)
 *  addr + 1  WAITER   1 while the (single) waiter is about to sleep or sleeping
 * ```
 *
 * Missed-wake-up-free protocol, a Dekker pair (each side stores, fences, then loads the other's
 * word):
 *   waiter  ({@link doorbellWait}): WRITE_ONCE(WAITER, 1) → smp_mb → READ_ONCE(PENDING) → sleep
 *                                   while PENDING == 0
 *   ringer  ({@link doorbellRing}): atomic_or(PENDING, bits) [locked, full fence] →
 *                                   READ_ONCE(WAITER) → notify if set
 * If the waiter's load misses the ringer's bits, the waiter's flag store was globally visible
 * before that load, hence before the ringer's RMW, so the ringer's flag load sees 1 and notifies;
 * the futex wait compares PENDING atomically, so a notify between check and sleep is not lost.
 * Without the waiter's smp_mb (store buffering) both loads can miss: the lost wake-up bug.
 * One waiter per doorbell (a pCPU waits on its own).
 */
import type { Addr } from '../mem/layout.js';
import type { Access, RacePoint } from '../mem/access.js';
import { waitWhileEqual } from './wait.js';
import { wordAt } from './owner.js';

/**
 * Word offsets of a doorbell; a pCPU's doorbell is at `layout.pcpu(p, PCPU.HOST_IRR_SYS)`, whose
 * next word is PCPU.HOST_IRR_WAITER.
 * @kvm arch/x86/include/asm/irq_vectors.h POSTED_INTR_VECTOR and friends (the host IRR bits rung)
 */
export const DOORBELL = { PENDING: 0, WAITER: 1 } as const;

/**
 * Ring: OR `bits` into PENDING (a locked RMW, full fence), then wake the waiter if its flag is
 * set. Returns the bits that were already pending.
 * @kvm kernel/exit.c rcuwait_wake_up (smp_mb, then check the waiting task); the hardware side is arch/x86/kvm/vmx/posted_intr.c __vmx_deliver_posted_interrupt sending the notification IPI
 */
export function doorbellRing(acc: Access, addr: Addr, bits: number, label: RacePoint): number {
  const old = acc.atomicOr(wordAt(addr, DOORBELL.PENDING), bits, label);
  if (acc.readOnce(wordAt(addr, DOORBELL.WAITER), 'doorbell:ring-check-waiter') !== 0) acc.notify(wordAt(addr, DOORBELL.PENDING), 1, 'doorbell:ring-notify');
  return old;
}

/**
 * Take and clear all pending bits (xchg to 0); returns them.
 * @kvm arch/x86/kernel/irq.c common_interrupt (the CPU acknowledging what its IRR holds)
 */
export function doorbellTake(acc: Access, addr: Addr, label: RacePoint): number {
  return acc.xchg(wordAt(addr, DOORBELL.PENDING), 0, label);
}

/**
 * Whether bits are pending (a snapshot).
 * @kvm arch/x86/kvm/lapic.c kvm_apic_has_interrupt (is anything pending in the IRR)
 */
export function doorbellPending(acc: Access, addr: Addr, label: RacePoint): number {
  return acc.readOnce(wordAt(addr, DOORBELL.PENDING), label);
}

/**
 * Sleep until some bit is pending (does not take them). Throws EMU_ERR_DEADLINE naming `what`
 * if nothing rings within `deadlineMs`, EMU_ERR_ABORTED if the run aborts.
 * @kvm include/linux/rcuwait.h rcuwait_wait_event (set_current_state → smp_mb → condition → schedule); as a CPU: kernel/sched/idle.c default_idle_call (sti; hlt)
 */
export function doorbellWait(acc: Access, addr: Addr, what: string, deadlineMs = acc.deadlineMs): void {
  const pending = wordAt(addr, DOORBELL.PENDING);
  const waiter = wordAt(addr, DOORBELL.WAITER);
  if (acc.readOnce(pending, 'doorbell:wait-fast-check') !== 0) return;
  acc.writeOnce(waiter, 1, 'doorbell:wait-flag');
  try {
    acc.smpMb('doorbell:wait-mb');
    while (acc.readOnce(pending, 'doorbell:wait-check') === 0) {
      waitWhileEqual(acc, pending, 0, 'doorbell:sleep', what, deadlineMs);
    }
  } finally {
    acc.writeOnce(waiter, 0, 'doorbell:wait-unflag');
  }
}

/**
 * One bounded idle sleep of a CPU's idle loop: announce the waiter, fence, and sleep at most
 * `sliceMs` while nothing is pending (same Dekker pairing as {@link doorbellWait}). Never throws
 * on time-out: the caller's loop re-checks its own stop conditions. Returns the pending bits
 * seen on return (0 after an empty slice).
 * @kvm kernel/sched/idle.c do_idle (arch_cpu_idle: sti; hlt until an interrupt arrives)
 */
export function doorbellIdle(acc: Access, addr: Addr, sliceMs: number, label: RacePoint): number {
  const pending = wordAt(addr, DOORBELL.PENDING);
  const waiter = wordAt(addr, DOORBELL.WAITER);
  acc.writeOnce(waiter, 1, 'doorbell:wait-flag');
  try {
    acc.smpMb('doorbell:wait-mb');
    if (acc.readOnce(pending, 'doorbell:wait-check') === 0) acc.wait(pending, 0, sliceMs, label);
    return acc.readOnce(pending, 'doorbell:wait-check');
  } finally {
    acc.writeOnce(waiter, 0, 'doorbell:wait-unflag');
  }
}
