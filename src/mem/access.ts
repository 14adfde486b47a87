/**
 * The access layer: the one road from actor code to machine memory.
 *
 * Every read, write, locked read-modify-write, fence and wait on machine state goes through an
 * {@link Access} and names a race point (a label such as `'pi:on-set'`). Only this module and
 * the event ring ({@link ./ring}) touch `Atomics` or raw views of the machine's buffer.
 *
 * Vocabulary (Linux kernel names, x86-TSO meaning):
 * - {@link Access.readOnce} / {@link Access.writeOnce}: READ_ONCE / WRITE_ONCE. The write is a
 *   plain typed-array store, so on an x86 host it really sits in the store buffer and a later load
 *   to another address can pass it (store buffering). The read is `Atomics.load`, which V8 emits
 *   as a plain MOV on x86 (no fence) and which also stops the JIT from hoisting the load out of a
 *   polling loop — exactly READ_ONCE's job.
 * - {@link Access.loadAcquire} / {@link Access.storeRelease}: smp_load_acquire /
 *   smp_store_release; plain MOVs on x86, so the same as READ_ONCE / WRITE_ONCE here.
 * - {@link Access.xchg}, {@link Access.cmpxchg}, {@link Access.atomicOr}, {@link Access.atomicAnd},
 *   {@link Access.atomicAdd}, {@link Access.testAndSetBit}, {@link Access.testAndClearBit},
 *   {@link Access.setBit}, {@link Access.clearBit}: locked instructions; each is a full fence.
 * - {@link Access.smpMb}: smp_mb(), a locked RMW on the actor's private fence word.
 *
 * Instrumentation. With `widen` set, a labelled access may first spin for a seeded random
 * number of iterations (window widening); with `record` set, it takes a global sequence number
 * and writes an 'access' event to the actor's ring. Both are off by default and then cost one
 * predictable branch per access. The controlled runtime ({@link ./controlled}) subclasses
 * {@link Access} to run one labelled access at a time with x86-TSO store buffers: actor code
 * does not change.
 */
import { ACTOR, VM, RING, type Addr, type ActorId, type Layout, type LayoutConfig, createLayout } from './layout.js';
import { Prng, deriveSeed, fnv1a } from '../util/prng.js';

/** A race-point label: `subsystem:event`, e.g. `'pi:on-set'`, `'vcpu:mode-in'`. */
export type RacePoint = string;

/** The machine's memory: the buffer plus its layout. Cheap to rebuild in a worker from `config`. */
export interface MachineMemory {
  readonly sab: SharedArrayBuffer;
  readonly layout: Layout;
}

/** Allocate a zeroed machine memory for a layout configuration. */
export function createMachineMemory(cfg: LayoutConfig): MachineMemory {
  const layout = createLayout(cfg);
  return { sab: new SharedArrayBuffer(layout.totalBytes), layout };
}

/** Rebuild a {@link MachineMemory} around an existing buffer (in a worker). */
export function attachMachineMemory(sab: SharedArrayBuffer, cfg: LayoutConfig): MachineMemory {
  const layout = createLayout(cfg);
  if (sab.byteLength < layout.totalBytes) throw new RangeError(`buffer of ${sab.byteLength} bytes is smaller than the layout (${layout.totalBytes})`);
  return { sab, layout };
}

/** Seeded window widening: before a matching race point, spin a random number of iterations. */
export interface WidenConfig {
  /** Run seed; each actor derives its own stream from it. */
  seed: number;
  /** Probability (0..1) that a matching access is delayed. */
  probability: number;
  /** Upper bound of the spin count of one delay. */
  maxSpins: number;
  /** Label prefixes to widen (all labels when omitted). */
  points?: readonly string[];
}

/** Options of one actor's access layer. */
export interface AccessOptions {
  actor: ActorId;
  /** Human-readable actor name, e.g. 'vcpu3'. */
  name: string;
  widen?: WidenConfig;
  /** Record the global order of labelled accesses into the actor's event ring. */
  record?: boolean;
  /** Longest any single blocking wait of this actor may last before it is reported stuck (ms). */
  deadlineMs?: number;
  /**
   * Flight-recorder ring: the producer overwrites the oldest records instead of dropping the
   * newest; nobody drains during the run, the last records are read afterwards
   * (RingReader.readLast). For traces "around the first violation".
   */
  flightRecorder?: boolean;
}

/** Result of {@link Access.wait}, as Atomics.wait reports it. */
export type WaitResult = 'ok' | 'not-equal' | 'timed-out';

/** Event kind written for a recorded access (see trace/events). */
export const EV_ACCESS = 1;

/**
 * One actor's view of machine memory. Free runtime: real threads, real interleavings.
 */
export class Access {
  readonly layout: Layout;
  readonly actor: ActorId;
  readonly name: string;
  /** Longest a blocking wait may last before the actor is reported stuck (ms). */
  readonly deadlineMs: number;
  /** Instrumentation on: every labelled access calls {@link Access.point} first. */
  protected readonly hooked: boolean;
  /**
   * Controlled mode (one labelled access at a time, x86-TSO store buffers; see ./controlled):
   * waits never spin (a spin is only extra scheduling steps) and time is the scheduler's
   * logical clock.
   */
  readonly controlled: boolean = false;
  /** The machine's words (only the access layer and its controlled subclass touch them). */
  protected readonly m: Int32Array;
  private readonly fenceAddr: number;
  private readonly seqAddr: number;
  private readonly widen: WidenConfig | undefined;
  private readonly widenPrng: Prng | undefined;
  private readonly record: boolean;
  private readonly flightRecorder: boolean;
  private readonly labelIds = new Map<string, number>();
  private readonly widenCache = new Map<string, boolean>();
  /** Sink for delay spins so the JIT cannot remove them. */
  private spinSink = 0;

  constructor(mem: MachineMemory, opts: AccessOptions) {
    this.layout = mem.layout;
    this.actor = opts.actor;
    this.name = opts.name;
    this.deadlineMs = opts.deadlineMs ?? 10_000;
    this.m = new Int32Array(mem.sab, 0, mem.layout.totalBytes >> 2);
    this.fenceAddr = mem.layout.actor(opts.actor, ACTOR.FENCE);
    this.seqAddr = mem.layout.vm(VM.GLOBAL_SEQ);
    this.widen = opts.widen;
    this.widenPrng = opts.widen ? new Prng(deriveSeed(opts.widen.seed, opts.actor)) : undefined;
    this.record = opts.record ?? false;
    this.flightRecorder = opts.flightRecorder ?? false;
    this.hooked = this.widen !== undefined || this.record;
  }

  /**
   * Called before every labelled access when instrumentation is on: window widening, then
   * recording. The controlled runtime overrides this to wait for its turn.
   */
  protected point(label: RacePoint, addr: number, value: number): void {
    if (this.widen !== undefined && this.widenMatches(label)) {
      const prng = this.widenPrng!;
      if (prng.next() < this.widen.probability) {
        const n = prng.below(this.widen.maxSpins + 1);
        let s = this.spinSink;
        for (let i = 0; i < n; i++) s = (s + i) | 0;
        this.spinSink = s;
      }
    }
    if (this.record) {
      const seq = Atomics.add(this.m, this.seqAddr, 1);
      this.emitRaw(EV_ACCESS, this.labelId(label), addr, seq, value);
    }
  }

  private widenMatches(label: string): boolean {
    let hit = this.widenCache.get(label);
    if (hit === undefined) {
      const pts = this.widen!.points;
      hit = pts === undefined || pts.some((p) => label.startsWith(p));
      this.widenCache.set(label, hit);
    }
    return hit;
  }

  /** Stable numeric id of a label (FNV-1a), cached per actor. */
  labelId(label: RacePoint): number {
    let id = this.labelIds.get(label);
    if (id === undefined) {
      id = fnv1a(label);
      this.labelIds.set(label, id);
    }
    return id;
  }

  /** Every label this actor has recorded so far, with its id (to name ids in traces). */
  knownLabels(): [string, number][] {
    return [...this.labelIds.entries()];
  }

  /** READ_ONCE(*addr). */
  readOnce(addr: Addr, label: RacePoint): number {
    if (this.hooked) this.point(label, addr, 0);
    return Atomics.load(this.m, addr);
  }

  /** WRITE_ONCE(*addr, v): a plain store (store-buffered on x86). */
  writeOnce(addr: Addr, v: number, label: RacePoint): void {
    if (this.hooked) this.point(label, addr, v);
    this.m[addr] = v;
  }

  /** smp_load_acquire(addr): a plain load on x86-TSO. */
  loadAcquire(addr: Addr, label: RacePoint): number {
    return this.readOnce(addr, label);
  }

  /** smp_store_release(addr, v): a plain store on x86-TSO. */
  storeRelease(addr: Addr, v: number, label: RacePoint): void {
    this.writeOnce(addr, v, label);
  }

  /** xchg(addr, v): locked exchange, full fence; returns the old value. */
  xchg(addr: Addr, v: number, label: RacePoint): number {
    if (this.hooked) this.point(label, addr, v);
    return Atomics.exchange(this.m, addr, v);
  }

  /** cmpxchg(addr, old, new): locked compare-exchange, full fence; returns the value found. */
  cmpxchg(addr: Addr, expected: number, v: number, label: RacePoint): number {
    if (this.hooked) this.point(label, addr, v);
    return Atomics.compareExchange(this.m, addr, expected, v);
  }

  /** atomic_fetch_or: locked OR, full fence; returns the old value. */
  atomicOr(addr: Addr, mask: number, label: RacePoint): number {
    if (this.hooked) this.point(label, addr, mask);
    return Atomics.or(this.m, addr, mask);
  }

  /** atomic_fetch_and: locked AND, full fence; returns the old value. */
  atomicAnd(addr: Addr, mask: number, label: RacePoint): number {
    if (this.hooked) this.point(label, addr, mask);
    return Atomics.and(this.m, addr, mask);
  }

  /** atomic_fetch_add: locked ADD, full fence; returns the old value. */
  atomicAdd(addr: Addr, delta: number, label: RacePoint): number {
    if (this.hooked) this.point(label, addr, delta);
    return Atomics.add(this.m, addr, delta);
  }

  /** test_and_set_bit(bit, addr): returns whether the bit was already set. */
  testAndSetBit(addr: Addr, bit: number, label: RacePoint): boolean {
    const mask = 1 << bit;
    return (this.atomicOr(addr, mask, label) & mask) !== 0;
  }

  /** test_and_clear_bit(bit, addr): returns whether the bit was set. */
  testAndClearBit(addr: Addr, bit: number, label: RacePoint): boolean {
    const mask = 1 << bit;
    return (this.atomicAnd(addr, ~mask, label) & mask) !== 0;
  }

  /** set_bit(bit, addr): locked on x86. */
  setBit(addr: Addr, bit: number, label: RacePoint): void {
    this.atomicOr(addr, 1 << bit, label);
  }

  /** clear_bit(bit, addr): locked on x86. */
  clearBit(addr: Addr, bit: number, label: RacePoint): void {
    this.atomicAnd(addr, ~(1 << bit), label);
  }

  /** smp_mb(): full fence (a locked RMW on this actor's private line). */
  smpMb(label: RacePoint): void {
    if (this.hooked) this.point(label, this.fenceAddr, 0);
    Atomics.add(this.m, this.fenceAddr, 0);
  }

  /** cpu_relax() in a spin loop: a scheduling point, no memory effect. */
  cpuRelax(label: RacePoint): void {
    if (this.hooked) this.point(label, this.fenceAddr, 0);
  }

  /**
   * Sleep while *addr == expected, at most `timeoutMs` (futex wait). Callers loop with a
   * deadline (see sync/wait) so no wait can hang a run.
   */
  wait(addr: Addr, expected: number, timeoutMs: number, label: RacePoint): WaitResult {
    if (this.hooked) this.point(label, addr, expected);
    return Atomics.wait(this.m, addr, expected, timeoutMs);
  }

  /** Wake up to `count` threads sleeping on addr (futex wake); returns how many woke. */
  notify(addr: Addr, count: number, label: RacePoint): number {
    if (this.hooked) this.point(label, addr, count);
    return Atomics.notify(this.m, addr, count);
  }

  /**
   * Emulator bookkeeping, not machine state: a plain add on a word only this actor writes
   * (live totals in the actor region). Not a race point.
   */
  bump(addr: Addr, delta = 1): void {
    this.m[addr] = (this.m[addr]! + delta) | 0;
  }

  /**
   * The clock deadlines are measured on, in ms: wall-clock time in free mode; in controlled mode
   * a logical clock that advances only when every actor waits (to the earliest timeout).
   */
  now(): number {
    return performance.now();
  }

  /** Emulator bookkeeping read (main thread progress, snapshots). Not a race point. */
  peek(addr: Addr): number {
    return Atomics.load(this.m, addr);
  }

  /** Emulator bookkeeping write (status words). Not a race point. */
  poke(addr: Addr, v: number): void {
    Atomics.store(this.m, addr, v);
  }

  /** Copy `n` consecutive words (snapshots for invariant checkers). Not a race point. */
  peekWords(addr: Addr, n: number): Int32Array {
    const out = new Int32Array(n);
    for (let i = 0; i < n; i++) out[i] = Atomics.load(this.m, addr + i);
    return out;
  }

  /**
   * Append one event to this actor's ring (single producer). Never blocks: a full ring drops
   * the event and counts it. Not a race point.
   */
  emitRaw(kind: number, a: number, b: number, c: number, d = 0): void {
    const L = this.layout;
    const headAddr = L.ring(this.actor, RING.HEAD);
    const head = this.m[headAddr]!;
    const cap = L.config.ringRecords;
    if (!this.flightRecorder && head - Atomics.load(this.m, L.ring(this.actor, RING.TAIL)) >= cap) {
      this.m[L.ring(this.actor, RING.DROPPED)]! += 1;
      return;
    }
    const rec = L.ring(this.actor, RING.RECORDS + (head & (cap - 1)) * RING.RECORD_WORDS);
    this.m[rec] = (kind & 0xff) | ((d & 0xffffff) << 8);
    this.m[rec + 1] = a;
    this.m[rec + 2] = b;
    this.m[rec + 3] = c;
    // Release: the record's plain stores are ordered before the head store on x86-TSO;
    // Atomics.store also keeps the JIT from reordering them.
    Atomics.store(this.m, headAddr, head + 1);
  }
}
