/**
 * Guest programs: what the software inside a vCPU does. They talk to their (virtual) local
 * APIC only the way a guest can: WRMSR to the x2APIC ICR, HLT, and their interrupt handlers.
 * Each holds its own seeded PRNG, so a run seed reproduces the guest's choices.
 */
import { Prng } from '../util/prng.js';
import type { GuestAction, GuestProgram } from '../kvm/x86-ops.js';

/** x2APIC ICR MSR. */
export const MSR_X2APIC_ICR = 0x830;
/** IA32_TSC_DEADLINE (hvemu's TSC counts µs of machine time). */
export const MSR_TSC_DEADLINE = 0x6e0;
/** The guest's LAPIC timer vector (Linux LOCAL_TIMER_VECTOR). */
export const TIMER_VECTOR = 0xec;

/** Parameters of the IPI storm workload. */
export interface IpiStormParams {
  /** IPIs sent between two HLTs; 0 = never halt (pure storm). */
  burst: number;
  /** Lowest and highest vector used (inclusive, 16..255). */
  vectorLo: number;
  vectorHi: number;
  /** Before each HLT the guest arms its LAPIC timer this many µs ahead (its idle tick). */
  haltTimerUs?: number;
  /**
   * Tickless idle (NOHZ): every vCPU but vCPU 0 halts without arming its timer, so only an
   * interrupt wakes it; vCPU 0 keeps the idle tick, so the storm cannot stall. A lost wake-up
   * then loses the interrupt instead of delaying it to the next tick.
   */
  tickless?: boolean;
}

/** The storm's defaults: bursts of 8, vectors 0x40..0xdf, a 250 µs idle tick. */
export const DEFAULT_STORM: IpiStormParams = { burst: 8, vectorLo: 0x40, vectorHi: 0xdf, haltTimerUs: 250 };

/**
 * IPI storm: send `burst` fixed IPIs to random other vCPUs (physical destination), arm the
 * LAPIC timer (the idle tick, so that two vCPUs that halt together still wake up), then HLT;
 * handle every interrupt. When the run drains, disarm the timer, stop sending and keep
 * handling (then HLT stays idle).
 */
export class IpiStormGuest implements GuestProgram {
  private sentInBurst = 0;
  private armed = false;
  private readonly prng: Prng;
  constructor(
    private readonly self: number,
    private readonly nrVcpus: number,
    private readonly p: IpiStormParams,
    seed: number,
    /** Returns false once the workload should stop sending (drain). */
    private readonly sending: () => boolean,
    /** RDTSC: µs of machine time. */
    private readonly clockUs: () => number = () => 0,
  ) {
    this.prng = new Prng(seed);
  }
  /** HLT, arming the idle tick first (or disarming it when draining). */
  private halt(draining: boolean): GuestAction {
    if (draining) {
      if (!this.armed) return { kind: 'hlt' };
      this.armed = false;
      return { kind: 'wrmsr', msr: MSR_TSC_DEADLINE, lo: 0, hi: 0 };
    }
    const tick = this.p.tickless && this.self !== 0 ? 0 : (this.p.haltTimerUs ?? 0);
    if (tick > 0 && !this.armed) {
      this.armed = true;
      return { kind: 'wrmsr', msr: MSR_TSC_DEADLINE, lo: (this.clockUs() + tick) | 0, hi: 0 };
    }
    this.armed = false;
    this.sentInBurst = 0;
    return { kind: 'hlt' };
  }
  onInterrupt(vector: number): void {
    // The handler body: nothing to do besides the EOI the CPU model performs — except that the
    // idle tick has fired, so the next HLT arms a new one (a host preemption between the arming
    // WRMSR and the HLT can let the deadline pass first).
    if (vector === TIMER_VECTOR) this.armed = false;
  }
  step(): GuestAction {
    if (this.nrVcpus < 2 || !this.sending()) return this.halt(true);
    if (this.p.burst > 0 && this.sentInBurst >= this.p.burst) return this.halt(false);
    this.sentInBurst++;
    let dest = this.prng.below(this.nrVcpus - 1);
    if (dest >= this.self) dest++;
    const vector = this.p.vectorLo + this.prng.below(this.p.vectorHi - this.p.vectorLo + 1);
    return { kind: 'wrmsr', msr: MSR_X2APIC_ICR, lo: vector, hi: dest };
  }
}

/**
 * Ping-pong: vCPU `pinger` sends `pingVector` to `ponger`; the ponger's handler answers with
 * `pongVector`; the pinger's handler counts a round trip and sends the next ping. Other vCPUs
 * idle in HLT. Used for round-trip latency.
 */
export class PingPongGuest implements GuestProgram {
  private owe = false;
  roundTrips = 0;
  constructor(
    private readonly self: number,
    private readonly pinger: number,
    private readonly ponger: number,
    private readonly pingVector: number,
    private readonly pongVector: number,
    private readonly sending: () => boolean,
    /** Spin in the guest while waiting (true) or HLT (false). */
    private readonly spin: boolean,
  ) {
    this.owe = self === pinger;
  }
  onInterrupt(vector: number): void {
    if (this.self === this.ponger && vector === this.pingVector) this.owe = true;
    if (this.self === this.pinger && vector === this.pongVector) {
      this.roundTrips++;
      this.owe = true;
    }
  }
  step(): GuestAction {
    if (this.owe && this.sending()) {
      this.owe = false;
      const dest = this.self === this.pinger ? this.ponger : this.pinger;
      const vector = this.self === this.pinger ? this.pingVector : this.pongVector;
      return { kind: 'wrmsr', msr: MSR_X2APIC_ICR, lo: vector, hi: dest };
    }
    if (this.self !== this.pinger && this.self !== this.ponger) return { kind: 'hlt' };
    return this.spin && this.sending() ? { kind: 'run' } : { kind: 'hlt' };
  }
}

/** One guest WRMSR. */
export interface MsrWrite {
  msr: number;
  lo: number;
  hi: number;
}

/**
 * A scripted guest: performs its WRMSRs in order (e.g. x2APIC ICR / SELF_IPI writes), then
 * idles in HLT, handling whatever arrives. For scenarios written by hand.
 */
export class ScriptGuest implements GuestProgram {
  private next = 0;
  readonly received: number[] = [];
  constructor(private readonly writes: readonly MsrWrite[]) {}
  onInterrupt(vector: number): void {
    this.received.push(vector);
  }
  step(): GuestAction {
    const w = this.writes[this.next];
    if (w === undefined) return { kind: 'hlt' };
    this.next++;
    return { kind: 'wrmsr', msr: w.msr, lo: w.lo, hi: w.hi };
  }
}
