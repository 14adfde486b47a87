/**
 * Interrupt accounting, kept per actor in the actor's own heap (single writer, no shared-memory
 * traffic on the hot path) and handed to the main thread at the end of a run (comlink
 * `counters()` or the task result). Live totals for progress go to the actor region instead.
 *
 * Per (target vCPU, vector): sent (by the sender), coalesced (by whoever found the bit already
 * set: the sender in PIR/IRR, or the receiver when PIR bits land on already-set vIRR bits);
 * per (vCPU, vector): delivered (by the guest's handler on that vCPU).
 */
import { ACTOR, type ActorId } from '../mem/layout.js';
import type { Access } from '../mem/access.js';

/** Plain-data counters of one actor, as returned over the worker boundary. */
export interface ActorCounters {
  actor: ActorId;
  name: string;
  /** sent[target * 256 + vector] */
  sent: Uint32Array;
  /** coalesced[target * 256 + vector] */
  coalesced: Uint32Array;
  /** delivered[vcpu * 256 + vector] (only the vCPU's own row is used) */
  delivered: Uint32Array;
  /** Misc event counts: VM exits, notifications sent, wake-ups, halts, PIR syncs, ... */
  misc: Record<string, number>;
}

/** Mutable accounting of one actor. */
export class ActorStats {
  readonly sent: Uint32Array;
  readonly coalesced: Uint32Array;
  readonly delivered: Uint32Array;
  readonly misc: Record<string, number> = {
    vmexits: 0,
    notifications: 0,
    wakeups: 0,
    kicks: 0,
    halts: 0,
    pirSyncs: 0,
    hwPiProcessed: 0,
    rootModeNotifications: 0,
    preemptions: 0,
  };
  private readonly sentAddr;
  private readonly deliveredAddr;

  constructor(
    private readonly acc: Access,
    nrVcpus: number,
  ) {
    this.sent = new Uint32Array(nrVcpus * 256);
    this.coalesced = new Uint32Array(nrVcpus * 256);
    this.delivered = new Uint32Array(nrVcpus * 256);
    this.sentAddr = acc.layout.actor(acc.actor, ACTOR.SENT);
    this.deliveredAddr = acc.layout.actor(acc.actor, ACTOR.DELIVERED);
  }

  countSent(target: number, vector: number): void {
    this.sent[target * 256 + vector]! += 1;
    this.acc.bump(this.sentAddr);
  }
  countCoalesced(target: number, vector: number, n = 1): void {
    this.coalesced[target * 256 + vector]! += n;
  }
  countDelivered(vcpu: number, vector: number): void {
    this.delivered[vcpu * 256 + vector]! += 1;
    this.acc.bump(this.deliveredAddr);
  }
  count(key: string, n = 1): void {
    this.misc[key] = (this.misc[key] ?? 0) + n;
  }

  /** Snapshot as plain data. */
  toCounters(): ActorCounters {
    return {
      actor: this.acc.actor,
      name: this.acc.name,
      sent: this.sent.slice(),
      coalesced: this.coalesced.slice(),
      delivered: this.delivered.slice(),
      misc: { ...this.misc },
    };
  }
}
