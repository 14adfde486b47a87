/**
 * Posted-interrupt invariants (domain notes 2.6 PI-1 and PI-3; 11.1 lost-wake-up freedom and
 * 11.4 the wakeup list), pure functions over one round's record.
 */
import type { Violation } from './checks.js';
import { bitmapVectors } from './snapshot.js';
import { POSTED_INTR_WAKEUP_VECTOR } from '../kvm/kick.js';
import { IN_GUEST_MODE } from '../kvm/modes.js';

const hex = (v: number) => '0x' + v.toString(16);


/** Is vector v set in a 256-bit bitmap of 8 u32 words? */
function hasVector(words: ArrayLike<number>, v: number): boolean {
  return (((words[v >>> 5] ?? 0) >>> (v & 31)) & 1) === 1;
}

const list = (vs: readonly number[]) => (vs.length ? vs.map(hex).join(', ') : 'none');

/** What one round of the store-buffering notification scenario left behind (domain notes PI-1). */
export interface PiEntryRound {
  /** The target vCPU. */
  target: number;
  /** Its vcpu->mode after the round (it entered the guest and stayed there). */
  mode: number;
  /** PIR words 0..7 of its posted-interrupt descriptor. */
  pir: ArrayLike<number>;
  /** PID.ON. */
  on: boolean;
  /** A POSTED_INTR_VECTOR IPI is still pending in the host IRR of the target's pCPU. */
  notificationPending: boolean;
  /** Vectors the senders posted this round. */
  posted: readonly number[];
  /**
   * vIRR words 0..7: what the entry sync and the CPU's posted-interrupt processing moved there
   * (with APICv the CPU may already have delivered it to the guest: count those in as well).
   */
  virr: ArrayLike<number>;
  /** Vectors the pre-entry sync (vmx_sync_pir_to_irr) picked up, and those a notification delivered in the guest. */
  syncedAtEntry: readonly number[];
  notified: readonly number[];
}

/**
 * PI-1 at the target's VM-entry commit, evaluated once the round's senders are done: a vCPU in
 * guest mode never holds PIR≠0 ∧ ON=1 with no notification pending for its pCPU — nobody would
 * move those vectors before an unrelated VM-exit.
 * @emulator checker of arch/x86/kvm/x86.c vcpu_enter_guest ↔ arch/x86/kvm/vmx/common.h __vmx_deliver_posted_interrupt (O1 + O2)
 */
export function piNoStrandedAtEntry(r: PiEntryRound): Violation[] {
  const pir = bitmapVectors(r.pir);
  if (r.mode !== IN_GUEST_MODE || pir.length === 0 || !r.on || r.notificationPending) return [];
  return [
    {
      invariant: 'piNoStrandedAtEntry',
      vcpu: r.target,
      vector: pir[pir.length - 1]!,
      message: `vcpu${r.target} is in IN_GUEST_MODE with PIR = {${list(pir)}}, ON = 1 and no notification pending for its pCPU: the entry sync saw ON = 0 and the sender saw the vCPU outside guest mode, so the interrupt is stranded until an unrelated VM-exit`,
    },
  ];
}

/**
 * Every posted vector reached the target's vIRR, through the pre-entry sync or through a
 * notification the CPU processed in guest mode.
 * @emulator
 */
export function piPostedReachesTarget(r: PiEntryRound): Violation[] {
  const out: Violation[] = [];
  for (const v of r.posted) {
    if (hasVector(r.virr, v)) continue;
    const where = hasVector(r.pir, v) ? `still in PIR (ON=${r.on ? 1 : 0})` : 'nowhere (gone)';
    out.push({
      invariant: 'piPostedReachesTarget',
      vcpu: r.target,
      vector: v,
      message: `vcpu${r.target} vector ${hex(v)} was posted but never reached the vIRR: ${where}; entry sync took {${list(r.syncedAtEntry)}}, notifications delivered {${list(r.notified)}}`,
    });
  }
  return out;
}

/** What one round of the posted-interrupt-vs-blocking scenario left behind (domain notes PI-3, 2.4). */
export interface PiBlockRound {
  /** The blocking vCPU. */
  vcpu: number;
  /** Its thread sleeps in kvm_vcpu_block (TASK_INTERRUPTIBLE, registered on its rcuwait, not woken). */
  sleeping: boolean;
  /** PID fields. */
  on: boolean;
  sn: boolean;
  nv: number;
  ndst: number;
  /** PIR words 0..7 and vIRR words 0..7. */
  pir: ArrayLike<number>;
  virr: ArrayLike<number>;
  /** POSTED_INTR_WAKEUP_VECTOR is pending in the host IRR of pCPU `ndst`. */
  wakeupPendingAtNdst: boolean;
  /** pCPUs whose wakeup list (wakeup_vcpus_on_cpu) holds the vCPU. */
  onListOf: readonly number[];
  /** Vectors posted to it this round. */
  posted: readonly number[];
}

/**
 * Lost-wake-up freedom for a vCPU blocked with posted-interrupt wakeup enabled (PI-3): a sleeping
 * vCPU with an interrupt pending (ON, PIR or vIRR) has a wake in flight — NV is the wakeup vector
 * and that vector is pending at the NDST CPU (whose handler wakes vCPUs with ON set).
 * @emulator checker of arch/x86/kvm/vmx/posted_intr.c pi_enable_wakeup_handler / pi_wakeup_handler
 */
export function piBlockedHasWakeInFlight(r: PiBlockRound): Violation[] {
  if (!r.sleeping) return [];
  const pir = bitmapVectors(r.pir);
  const virr = bitmapVectors(r.virr);
  if (!r.on && pir.length === 0 && virr.length === 0) return [];
  if (r.on && r.nv === POSTED_INTR_WAKEUP_VECTOR && r.wakeupPendingAtNdst) return [];
  return [
    {
      invariant: 'piBlockedHasWakeInFlight',
      vcpu: r.vcpu,
      vector: [...pir, ...virr][0] ?? -1,
      message: `vcpu${r.vcpu} sleeps in kvm_vcpu_block with ON=${r.on ? 1 : 0}, PIR = {${list(pir)}}, vIRR = {${list(virr)}}, NV = ${hex(r.nv)}, NDST = ${r.ndst}, and no wakeup vector pending at CPU ${r.ndst}: no wake is in flight`,
    },
  ];
}

/**
 * The wakeup list and the descriptor agree (domain notes 11.4): the vCPU is on the list of pCPU c
 * exactly when NV == POSTED_INTR_WAKEUP_VECTOR and NDST == c, and on at most one list.
 * @emulator checker of arch/x86/kvm/vmx/posted_intr.c vmx_vcpu_pi_put / vmx_vcpu_pi_load
 */
export function piWakeupListMatchesNv(r: PiBlockRound): Violation[] {
  const wakeup = r.nv === POSTED_INTR_WAKEUP_VECTOR;
  const ok = wakeup ? r.onListOf.length === 1 && r.onListOf[0] === r.ndst : r.onListOf.length === 0;
  if (ok) return [];
  const lists = r.onListOf.length ? `the wakeup list of CPU ${r.onListOf.join(', ')}` : 'no wakeup list';
  return [{ invariant: 'piWakeupListMatchesNv', vcpu: r.vcpu, message: `vcpu${r.vcpu} is on ${lists} but PID.NV = ${hex(r.nv)}, NDST = ${r.ndst}` }];
}
