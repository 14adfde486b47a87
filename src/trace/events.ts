/**
 * Event vocabulary (`subsystem:event`, like undici's diagnostics channels) and the emitter
 * actors use. Events go to the actor's ring in machine memory (see mem/ring); the main thread
 * drains them into an rxjs Observable (trace/observable) and optionally a msgpack file.
 */
import type { Access } from '../mem/access.js';

/** Numeric event kinds as stored in the ring (w0 bits 7:0). Kind 1 is a recorded access. */
export const EV = {
  ACCESS: 1,
  IPI_SENT: 2,
  PIR_SET: 3,
  ON_SET: 4,
  NOTIFY: 5,
  WAKE: 6,
  PIR_SYNC: 7,
  ACK: 8,
  EOI: 9,
  MODE: 10,
  HALT: 11,
  VMEXIT: 12,
  COALESCED: 13,
  DELIVERED: 14,
  KICK: 15,
  HW_PI: 16,
  IRR_SET: 17,
  /** Secure AVIC: KVM moved its IRR into RequestedIRR (b = UpdateIRR set). */
  SAVIC_REQUESTED_IRR: 18,
  /** Secure AVIC: VMRUN merged RequestedIRR into the backing page (b = vectors merged). */
  SAVIC_VMRUN: 19,
  /** Secure AVIC: KVM set has_pending_ipi for an MSR_PROT ICR write (b = 1 doorbell, 0 kick). */
  SAVIC_PENDING_IPI: 20,
  /** An NMI taken by the guest (b = 1 vNMI from KVM, 2 NMI_REQUEST from a guest IPI). */
  NMI: 21,
} as const;

/** Event names by kind, as users see them. */
export const EVENT_NAMES: Readonly<Record<number, string>> = {
  [EV.ACCESS]: 'mem:access',
  [EV.IPI_SENT]: 'apic:ipi-sent',
  [EV.PIR_SET]: 'pi:pir-set',
  [EV.ON_SET]: 'pi:on-set',
  [EV.NOTIFY]: 'pi:notify',
  [EV.WAKE]: 'vcpu:wake',
  [EV.PIR_SYNC]: 'pi:sync',
  [EV.ACK]: 'apic:ack',
  [EV.EOI]: 'apic:eoi',
  [EV.MODE]: 'vcpu:mode',
  [EV.HALT]: 'vcpu:halt',
  [EV.VMEXIT]: 'vcpu:exit',
  [EV.COALESCED]: 'irq:coalesced',
  [EV.DELIVERED]: 'guest:delivered',
  [EV.KICK]: 'vcpu:kick',
  [EV.HW_PI]: 'pi:hw-process',
  [EV.IRR_SET]: 'apic:irr-set',
  [EV.SAVIC_REQUESTED_IRR]: 'savic:requested-irr',
  [EV.SAVIC_VMRUN]: 'savic:vmrun-merge',
  [EV.SAVIC_PENDING_IPI]: 'savic:pending-ipi',
  [EV.NMI]: 'guest:nmi',
};

/** Meaning of the a/b fields per kind, for readers of traces. */
export const EVENT_FIELDS: Readonly<Record<number, readonly [string, string]>> = {
  [EV.ACCESS]: ['label', 'addr'],
  [EV.IPI_SENT]: ['vcpu', 'vector'],
  [EV.PIR_SET]: ['vcpu', 'vector'],
  [EV.ON_SET]: ['vcpu', 'vector'],
  [EV.NOTIFY]: ['pcpu', 'vector'],
  [EV.WAKE]: ['vcpu', 'woken'],
  [EV.PIR_SYNC]: ['vcpu', 'maxIrr'],
  [EV.ACK]: ['vcpu', 'vector'],
  [EV.EOI]: ['vcpu', 'vector'],
  [EV.MODE]: ['vcpu', 'mode'],
  [EV.HALT]: ['vcpu', 'phase'],
  [EV.VMEXIT]: ['vcpu', 'reason'],
  [EV.COALESCED]: ['vcpu', 'vector'],
  [EV.DELIVERED]: ['vcpu', 'vector'],
  [EV.KICK]: ['vcpu', 'ipiSent'],
  [EV.HW_PI]: ['vcpu', 'maxIrr'],
  [EV.IRR_SET]: ['vcpu', 'vector'],
  [EV.SAVIC_REQUESTED_IRR]: ['vcpu', 'updateIrr'],
  [EV.SAVIC_VMRUN]: ['vcpu', 'merged'],
  [EV.SAVIC_PENDING_IPI]: ['vcpu', 'doorbell'],
  [EV.NMI]: ['vcpu', 'source'],
};

/** A decoded event. `t` is microseconds since the machine's epoch. */
export interface HvEvent {
  /** Event name, e.g. 'pi:on-set'. */
  type: string;
  /** Actor name, e.g. 'vcpu1'. */
  actor: string;
  a: number;
  b: number;
  /** Time in µs (events) or global sequence number (mem:access). */
  t: number;
  extra: number;
}

/**
 * Emits events for one actor. Disabled tracers cost one branch per call site.
 */
export class Tracer {
  constructor(
    private readonly acc: Access,
    readonly enabled: boolean,
    /** Machine epoch in ms on the shared clock (performance.timeOrigin + now()). */
    private readonly epochMs: number,
  ) {}

  /** Emit one event (kind from {@link EV}). */
  emit(kind: number, a: number, b: number, extra = 0): void {
    if (!this.enabled) return;
    const us = Math.round((performance.timeOrigin + performance.now() - this.epochMs) * 1000);
    this.acc.emitRaw(kind, a, b, us, extra);
  }
}

/** The shared clock every worker agrees on, in ms. */
export function sharedClockMs(): number {
  return performance.timeOrigin + performance.now();
}
