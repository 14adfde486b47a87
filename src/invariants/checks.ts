/**
 * Named invariant checkers: pure functions over accounting, snapshots and events, returning
 * violations (never throwing). Shared by tests, the CLI and benchmarks.
 */
import type { Accounting } from './accounting.js';
import { bitmapVectors, type MachineSnapshot, type VcpuSnapshot } from './snapshot.js';
import type { HvEvent } from '../trace/events.js';
import { computePpr } from '../apic/index.js';

/** A broken invariant, with what it concerns and the last events that touched it. */
export interface Violation {
  invariant: string;
  message: string;
  vcpu?: number;
  vector?: number;
  events?: HvEvent[];
}

/** Where an interrupt of vector `vec` still sits on vCPU `s`, if anywhere. */
export function whereIsVector(s: VcpuSnapshot, vec: number): string {
  const places: string[] = [];
  if (bitmapVectors(s.pir).includes(vec)) places.push(`PIR (ON=${s.on ? 1 : 0})`);
  if (bitmapVectors(s.irr).includes(vec)) places.push('vIRR');
  if (bitmapVectors(s.isr).includes(vec)) places.push('vISR');
  if (s.savic) {
    if (bitmapVectors(s.savic.requestedIrr).includes(vec)) places.push(`RequestedIRR (UpdateIRR=${s.savic.updateIrr})`);
    if (bitmapVectors(s.savic.irr).includes(vec)) places.push('backing-page IRR');
    if (bitmapVectors(s.savic.isr).includes(vec)) places.push('backing-page ISR');
  }
  return places.length ? places.join(' + ') : 'nowhere (gone)';
}

/** vCPU sleeping in kvm_vcpu_block(). */
export function isSleeping(s: VcpuSnapshot): boolean {
  return s.waitTask !== 0 && s.taskState !== 0;
}

/**
 * Secure AVIC: something the CPU would deliver at or after the next VMRUN — RequestedIRR,
 * a backing-page IRR vector above the backing page's PPR, or an NMI request.
 */
function savicHasPending(s: NonNullable<VcpuSnapshot['savic']>): boolean {
  if (s.requestedIrr.some((w) => w !== 0) || s.nmiRequest !== 0 || s.vNmiPending !== 0) return true;
  const irr = bitmapVectors(s.irr);
  const top = irr.length ? irr[irr.length - 1]! : -1;
  const isr = bitmapVectors(s.isr);
  const ppr = computePpr(s.tpr, isr.length ? isr[isr.length - 1]! : -1);
  return top >= 0 && (top & 0xf0) > (ppr & 0xf0);
}

/** Does the vCPU hold an interrupt the guest could take (PIR, vIRR above PPR, Secure AVIC backing page)? */
export function hasPendingInterrupt(s: VcpuSnapshot): boolean {
  if (s.pir.some((w) => w !== 0)) return true;
  if (s.savic && savicHasPending(s.savic)) return true;
  const irr = bitmapVectors(s.irr);
  const top = irr.length ? irr[irr.length - 1]! : -1;
  return top >= 0 && (top & 0xf0) > (s.ppr & 0xf0);
}

/**
 * Nothing in flight: every vCPU asleep in HLT with empty PIR, vIRR and vISR, ON clear, and no
 * LAPIC timer armed. (The state in which sent = delivered + coalesced must hold.)
 */
export function isQuiescent(snap: MachineSnapshot): boolean {
  return snap.vcpus.every(
    (s) =>
      isSleeping(s) &&
      !s.on &&
      s.timerDeadline === 0 &&
      s.pir.every((w) => w === 0) &&
      s.irr.every((w) => w === 0) &&
      s.isr.every((w) => w === 0) &&
      (!s.savic || !savicHasPending(s.savic)),
  );
}

/**
 * Lost-wake-up freedom (domain notes 0.2): a vCPU asleep with an interrupt pending is a
 * violation once the machine has had time to settle (checked after the drain phase).
 */
export function noSleepingWithPending(snap: MachineSnapshot): Violation[] {
  const out: Violation[] = [];
  for (const s of snap.vcpus) {
    if (isSleeping(s) && hasPendingInterrupt(s)) {
      const vecs = [...bitmapVectors(s.pir), ...bitmapVectors(s.irr), ...(s.savic ? [...bitmapVectors(s.savic.requestedIrr), ...bitmapVectors(s.savic.irr)] : [])];
      out.push({
        invariant: 'noSleepingWithPending',
        vcpu: s.vcpu,
        vector: vecs[0] ?? -1,
        message: `vcpu${s.vcpu} sleeps in HLT with vectors ${vecs.map((v) => '0x' + v.toString(16)).join(', ')} pending (ON=${s.on ? 1 : 0}) and no wake-up in flight`,
      });
    }
  }
  return out;
}

/**
 * Every interrupt sent was delivered or coalesced: for each (vCPU, vector),
 * sent == delivered + coalesced. Each violation says where the vector still sits.
 */
export function noLostInterrupt(acct: Accounting, snap: MachineSnapshot | undefined): Violation[] {
  return acct.unbalanced.map((u) => {
    const s = snap?.vcpus[u.vcpu];
    const where = s ? `; now in ${whereIsVector(s, u.vector)}` : '';
    const what = u.lost > 0 ? `${u.lost} lost` : `${-u.lost} delivered more often than sent`;
    return {
      invariant: 'noLostInterrupt',
      vcpu: u.vcpu,
      vector: u.vector,
      message: `vcpu${u.vcpu} vector 0x${u.vector.toString(16)}: sent ${u.sent}, delivered ${u.delivered}, coalesced ${u.coalesced} (${what})${where}`,
    };
  });
}

/** Attach the last `n` events that touched each violation's vCPU (and vector, if any). */
export function attachEvents(violations: Violation[], recent: readonly HvEvent[], n = 12): Violation[] {
  return violations.map((v) => {
    if (v.vcpu === undefined) return v;
    const hits: HvEvent[] = [];
    for (let i = recent.length - 1; i >= 0 && hits.length < n; i--) {
      const e = recent[i]!;
      const touchesVcpu = e.a === v.vcpu || e.actor === `vcpu${v.vcpu}`;
      const touchesVector = v.vector === undefined || v.vector < 0 || e.b === v.vector || e.type.startsWith('vcpu:');
      if (touchesVcpu && touchesVector) hits.push(e);
    }
    return { ...v, events: hits.reverse() };
  });
}

/**
 * No vCPU left with a stale apicv_active once the machine is quiet: apicv_active ==
 * (no inhibit reason set) for every vCPU (the per-entry WARN in vcpu_enter_guest, checked at
 * quiescence; APIC enabled is assumed, as for every vCPU the storm runs).
 */
export function apicvStateConsistent(snap: MachineSnapshot): Violation[] {
  const want = snap.apicvInhibitReasons === 0 ? 1 : 0;
  return snap.vcpus
    .filter((s) => s.apicvActive !== want)
    .map((s) => ({
      invariant: 'apicvStateConsistent',
      vcpu: s.vcpu,
      message: `vcpu${s.vcpu} has apicv_active=${s.apicvActive} but the VM's inhibit reasons are 0x${snap.apicvInhibitReasons.toString(16)}`,
    }));
}

/**
 * AVIC: IsRunning implies the vCPU is loaded on a pCPU and not blocking (domain notes §11.5).
 * Checked on a quiet machine, where every vCPU blocks: no entry may still say IsRunning.
 */
export function avicIsRunningConsistent(snap: MachineSnapshot): Violation[] {
  const IS_RUNNING = 1 << 30;
  return snap.vcpus
    .filter((s) => (s.avicEntry & IS_RUNNING) !== 0 && (s.blocking !== 0 || s.loadedOn < 0))
    .map((s) => ({
      invariant: 'avicIsRunningConsistent',
      vcpu: s.vcpu,
      message: `vcpu${s.vcpu}'s physical APIC ID entry says IsRunning but the vCPU is ${s.blocking ? 'blocking' : 'not loaded'}: senders would ring a doorbell instead of waking it`,
    }));
}

/**
 * For every pCPU with host state in the snapshot, each user-return slot's cached `curr` equals
 * the MSR (domain notes 9.2 HS-2): at quiescence every TD vCPU is put, so the cache must describe
 * the MSRs exactly — a stale entry makes the notifier skip a needed WRMSR or a later
 * kvm_set_user_return_msr skip its write.
 */
export function uretCacheMatchesMsrs(snap: MachineSnapshot): Violation[] {
  const out: Violation[] = [];
  for (const p of snap.pcpus) {
    for (const sl of p.host?.uret.slots ?? []) {
      if (sl.curr !== sl.msr) {
        out.push({ invariant: 'uretCacheMatchesMsrs', vcpu: -1, vector: -1, message: `pCPU ${p.pcpu}: user-return cache says ${sl.reg} = ${sl.curr}, the MSR holds ${sl.msr}` });
      }
    }
  }
  return out;
}
