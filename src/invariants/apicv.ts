/**
 * APICv-inhibit invariants (domain notes 2.6 PI-6, 4.2, 4.3, 4.4 IN-4; 11.3 and 11.6), pure
 * functions over one round's record:
 *
 * - apicv-deactivate-pir: nothing a device posts is lost while APICv is inhibited
 *   ({@link apicvPostedNotLost});
 * - tdx-apicv-inhibit: a TD never runs with APICv inactive in a live VM
 *   ({@link tdxApicvActiveAtEntry}), a live TD takes every interrupt sent to it
 *   ({@link tdxSentReachesGuest}), and an inhibit that bugs the VM ends with every vCPU out of
 *   KVM_RUN with -EIO and refused from then on ({@link tdxBuggedVmAllExited}).
 */
import type { Violation } from './checks.js';
import { apicvInhibitNames } from '../kvm/apicv.js';

const hex = (v: number) => '0x' + v.toString(16);

/** Is vector v set in a 256-bit bitmap of 8 u32 words? */
function hasVector(words: ArrayLike<number>, v: number): boolean {
  return ((((words[v >>> 5] ?? 0) >>> 0) >>> (v & 31)) & 1) === 1;
}

/** Reason names of an inhibit mask, for messages. */
function reasons(mask: number): string {
  const names = apicvInhibitNames(mask);
  return names.length ? names.join('|') : 'none';
}

/** Where a vector that did not reach the guest still sits. */
function whereIs(v: number, s: { pir: ArrayLike<number>; on: boolean; irr: ArrayLike<number>; isr?: ArrayLike<number>; injected?: number }): string {
  const places: string[] = [];
  if (hasVector(s.pir, v)) places.push(`PIR with ON=${s.on ? 1 : 0}`);
  if (hasVector(s.irr, v)) places.push('vIRR');
  if (s.isr && hasVector(s.isr, v)) places.push('vISR');
  if (s.injected === v) places.push('VM-entry injection (not yet taken)');
  return places.length ? places.join(' + ') : 'nowhere (gone)';
}

/** What one target vCPU of apicv-deactivate-pir left behind at the end of a round (inhibit still set). */
export interface ApicvPirRound {
  /** The target vCPU. */
  vcpu: number;
  /** apic->apicv_active at the end of the round. */
  apicvActive: boolean;
  /** kvm->arch.apicv_inhibit_reasons at the end of the round. */
  inhibitReasons: number;
  /** Vectors the device posted to this vCPU this round (each at most once). */
  posted: readonly number[];
  /** Vectors the guest's handler took this round. */
  received: readonly number[];
  /** Posted-interrupt descriptor: PIR words 0..7 and ON. */
  pir: ArrayLike<number>;
  on: boolean;
  /** vIRR and vISR words 0..7. */
  irr: ArrayLike<number>;
  isr: ArrayLike<number>;
  /** Vector queued for VM-entry injection (-1 none). */
  injected: number;
  /** VM-entries this round with APICv inactive. */
  inactiveEntries: number;
}

/**
 * Nothing posted is lost (PI-6): at the end of a round — APICv still inhibited, the vCPU settled —
 * every vector the device posted reached the guest. A vector left behind is reported with where it
 * sits (typically the PIR with ON=1: the notification VM-exited and no entry looked at the PIR).
 * @emulator
 */
export function apicvPostedNotLost(rounds: readonly ApicvPirRound[]): Violation[] {
  const out: Violation[] = [];
  for (const r of rounds) {
    const got = new Set(r.received);
    for (const v of r.posted) {
      if (got.has(v)) continue;
      out.push({
        invariant: 'apicvPostedNotLost',
        vcpu: r.vcpu,
        vector: v,
        message:
          `vcpu${r.vcpu} vector ${hex(v)} was posted by the device but never reached the guest: it sits in ${whereIs(v, r)} ` +
          `(apicv_active=${r.apicvActive ? 1 : 0}, inhibit reasons ${reasons(r.inhibitReasons)}; ${r.inactiveEntries} VM-entries with APICv inactive this round)`,
      });
    }
  }
  return out;
}

/** How a TD vCPU's KVM_RUN ended this round. */
export type TdKvmRunOutcome = 'returned' | 'eio';
/** What the VMM's next KVM_RUN on the vCPU did after an -EIO: refused at once, or ran the vCPU. */
export type TdRerunOutcome = 'not-tried' | 'refused' | 'ran';

/** What one TD vCPU of tdx-apicv-inhibit did and holds at the end of a round. */
export interface TdVcpuRound {
  vcpu: number;
  /** apic->apicv_active at the end of the round. */
  apicvActive: boolean;
  /** TD entries (TDH.VP.ENTER) this round. */
  entries: number;
  /** Entries with apicv_active = 0 while the VM was not bugged, and the first one's index (0-based, -1 none). */
  inactiveLiveEntries: number;
  firstInactiveLiveEntry: number;
  /** Entries made after the VM was bugged (KVM_REQ_VM_DEAD and its kick still on the way to this vCPU). */
  dyingEntries: number;
  /** How KVM_RUN ended, and what a further KVM_RUN did. */
  kvmRun: TdKvmRunOutcome;
  rerun: TdRerunOutcome;
  /** Vectors sent to this vCPU this round (each at most once), and those its guest took. */
  sent: readonly number[];
  received: readonly number[];
  /** Posted-interrupt descriptor (PIR words 0..7, ON) and the TD's vIRR words 0..7. */
  pir: ArrayLike<number>;
  on: boolean;
  irr: ArrayLike<number>;
  /** TDVMCALL(HLT) exits this round, and whether the vCPU was blocked (halted) when the round ended. */
  halts?: number;
  blockedAtEnd?: boolean;
}

/** One round of tdx-apicv-inhibit. */
export interface TdApicvRound {
  /** kvm->vm_bugged at the end of the round (KVM_BUG_ON fired). */
  vmBugged: boolean;
  /** kvm->arch.apicv_inhibit_reasons at the end of the round. */
  inhibitReasons: number;
  vcpus: readonly TdVcpuRound[];
}

/**
 * A TD never runs with APICv inactive (domain notes 4.3, 11.6 "TD ⇒ active"): no TD entry in a
 * live VM has apicv_active = 0. Entries after KVM_BUG_ON (the VM already bugged, KVM_REQ_VM_DEAD
 * and its kick still in flight to this vCPU) are the dying VM's last slice and are not counted.
 * @emulator
 */
export function tdxApicvActiveAtEntry(r: TdApicvRound): Violation[] {
  return r.vcpus
    .filter((s) => s.inactiveLiveEntries > 0)
    .map((s) => ({
      invariant: 'tdxApicvActiveAtEntry',
      vcpu: s.vcpu,
      message:
        `vcpu${s.vcpu} entered the TD with APICv inactive in a live VM: ${s.inactiveLiveEntries} of ${s.entries} TD entries (first: entry #${s.firstInactiveLiveEntry}), ` +
        `inhibit reasons ${reasons(r.inhibitReasons)}; the TDX module runs every TD with APICv, so KVM's apicv_active = 0 misdescribes the vCPU (KVM must never run a TD so)`,
    }));
}

/**
 * No interrupt sent to a TD is lost, in every round and every variant: in a live VM every vector
 * sent this round reached the guest; in a VM that KVM_BUG_ON killed, a vector that did not reach
 * the guest must still sit in the TD's posted-interrupt state (PIR, vIRR) — stranded by the kill,
 * which is the kernel's designed outcome — never gone. A vector left behind is reported with
 * where it sits.
 * @emulator
 */
export function tdxSentReachesGuest(r: TdApicvRound): Violation[] {
  const out: Violation[] = [];
  for (const s of r.vcpus) {
    const got = new Set(s.received);
    for (const v of s.sent) {
      if (got.has(v)) continue;
      const where = whereIs(v, s);
      if (r.vmBugged && !where.startsWith('nowhere')) continue;
      out.push({
        invariant: 'tdxSentReachesGuest',
        vcpu: s.vcpu,
        vector: v,
        message:
          `vcpu${s.vcpu} vector ${hex(v)} was sent to the TD but never reached the guest: it sits in ${where} ` +
          `(apicv_active=${s.apicvActive ? 1 : 0}, VM ${r.vmBugged ? 'bugged' : 'not bugged'}, ${s.entries} TD entries, ${s.halts ?? 0} TDVMCALL(HLT)s this round${s.blockedAtEnd ? ', the vCPU blocked at the end' : ''})`,
      });
    }
  }
  return out;
}

/**
 * KVM_BUG_ON ends the VM (the expected outcome of an inhibit in a TD): if the VM is bugged, every
 * vCPU's KVM_RUN failed with -EIO and the next KVM_RUN was refused without entering; if it is
 * not, no KVM_RUN failed with -EIO.
 * @emulator
 */
export function tdxBuggedVmAllExited(r: TdApicvRound): Violation[] {
  const out: Violation[] = [];
  for (const s of r.vcpus) {
    let why: string | undefined;
    if (r.vmBugged && s.kvmRun !== 'eio') why = 'the VM is bugged but its KVM_RUN returned without -EIO';
    else if (r.vmBugged && s.rerun !== 'refused') why = `the VM is bugged but the KVM_RUN after -EIO ${s.rerun === 'ran' ? 'ran the vCPU again' : 'was never tried'}`;
    else if (!r.vmBugged && s.kvmRun === 'eio') why = 'its KVM_RUN failed with -EIO but the VM is not bugged';
    if (why) out.push({ invariant: 'tdxBuggedVmAllExited', vcpu: s.vcpu, message: `vcpu${s.vcpu}: ${why} (${s.entries} TD entries, ${s.dyingEntries} after KVM_BUG_ON)` });
  }
  return out;
}
