/**
 * tdx-apicv-inhibit — interrupts into a TD while KVM's view of its APIC changes: an APICv inhibit
 * raised at runtime (in half of the rounds) and TD vCPUs that halt between interrupts. Seed 000:
 * Binbin Wu's "Re: [PATCH 12/16] KVM: TDX: Inhibit APICv for TDX guest" (Jan 2025), which
 * replaced "inhibit APICv for TDs" by "force APICv active for TDs and bug the VM if anything
 * would deactivate it"; the same series' "[PATCH 01/16] KVM: TDX: Add support for find pending
 * IRQ in a protected local APIC"; domain notes 2.3 (TDX note), 4.3, 4.4 IN-4. README.md beside
 * this file.
 *
 *   CPU0/CPU1 TD vCPUs (vcpu_run, halting)          CPU2 vmm (irqfd MSIs; maybe a vCPU hot-add)
 *                                                    kvm_recalculate_apic_map: no memory ->
 *   KVM_REQ_APICV_UPDATE: apicv_active = 0            PHYSICAL_ID_ALIASED: REQ_APICV_UPDATE, kick
 *     buggy (tdx-apicv-inhibit-accepted): accepted — KVM runs the TD with apicv_active = 0 while
 *       the module keeps processing posted interrupts (the interrupts still arrive)
 *     fixed: KVM_BUG_ON -> the VM is dead, every KVM_RUN -EIO
 *   idle (IF = 0): notification processed, PIR -> RVI; STI; TDCALL(HLT)
 *     buggy-hlt-pid-only (tdx-has-interrupt-pid-only): ON clear -> "no interrupt" -> blocks with
 *       the vector in RVI
 *     fixed: HLT with IRQs on -> VCPU_STATE_DETAILS says RVI pending -> runnable -> delivered
 *
 * Everything runs the machine's code: vcpu_enter_guest (kvm/x86.ts), kvm_vcpu_block (kvm/block),
 * the TDX vendor ops (kvm/vmx/tdx.ts), the CPU and module (hw/tdx/td-cpu.ts), delivery through
 * kvm_irq_delivery_to_apic, the inhibit through kvm_set_or_clear_apicv_inhibit.
 */
import { APIC_IRR } from '../../mem/apicdef.js';
import { PID, VCPU, VM, planScratch, vecPos, vecWord, type Addr, type Layout, type VcpuId } from '../../mem/layout.js';
import type { Access } from '../../mem/access.js';
import { EmuError } from '../../errors.js';
import { APICV_INHIBIT_REASON_PHYSICAL_ID_ALIASED, kvmSetOrClearApicvInhibit } from '../../kvm/apicv.js';
import { kvmIrqDeliveryToApic } from '../../kvm/irq.js';
import { kvmRequestPending } from '../../kvm/requests.js';
import { kvmVmIsBugged } from '../../kvm/vm-bug.js';
import { kvmVcpuIoctlRun, type KvmRunEnd } from '../../kvm/vcpu-run.js';
import type { GuestAction, GuestProgram, KvmCtx, KvmX86Ops } from '../../kvm/x86-ops.js';
import { PATCH_TDX_APICV_INHIBIT_ACCEPTED, PATCH_TDX_HAS_INTERRUPT_PID_ONLY, PATCH_TDX_NO_PI_SELF_IPI, tdxX86Ops } from '../../kvm/vmx/tdx.js';
import { tdxApicvActiveAtEntry, tdxBuggedVmAllExited, tdxSentReachesGuest, type TdApicvRound, type TdKvmRunOutcome, type TdRerunOutcome } from '../../invariants/apicv.js';
import type { Violation } from '../../invariants/checks.js';
import { bitmapVectors, peekBitmap } from '../../invariants/snapshot.js';
import { thinkSpins, type ScenarioCtx, type ScenarioDef, type ScenarioParams } from '../define.js';
import { RecordingGuest, resetVmSlice, scenarioKvmCtx } from '../kvm-actor.js';

/** Interrupts the VMM sends to each TD vCPU per round (distinct vectors within a round). */
const SENDS_PER_VCPU = 4;
/** Vector range of the VMM's MSIs. */
const FIRST_VECTOR = 0x30;
const LAST_VECTOR = 0xdf;
/** Guest steps per TD entry before a host-tick exit. */
const GUEST_STEPS = 8;
/** The guest idles (TDVMCALL(HLT)) after this many steps of work since it last woke. */
const GUEST_WORK_STEPS = 6;
/** Longest single sleep of a blocked vCPU before its thread looks at the round again (ms). */
const BLOCK_SLICE_MS = 2;
/** KVM_RUN iterations a vCPU keeps going once the VMM is done, at most. */
const SETTLE_ENTRIES = 64;
/** Upper bound (cpu_relax iterations) of the VMM's gap before each of its steps. */
const VMM_GAP_SPINS = 3000;

/**
 * Words of a vCPU's block: the sent bitmap (VMM-written) on its own line, then the vCPU's own
 * words: received bitmap, entry counts and how KVM_RUN ended.
 */
const BLK = { SENT: 0, RECEIVED: 16, ENTRIES: 24, INACTIVE_LIVE: 25, FIRST_INACTIVE_LIVE: 26, DYING: 27, KVM_RUN: 28, RERUN: 29, HALTS: 30, BLOCKED_AT_END: 31, WORDS: 32 } as const;
const KVM_RUN_OUTCOMES: readonly TdKvmRunOutcome[] = ['returned', 'eio'];
const RERUN_OUTCOMES: readonly TdRerunOutcome[] = ['not-tried', 'refused', 'ran'];

const plans = new Map<number, ReturnType<typeof makePlan>>();
function makePlan(vcpus: number) {
  return planScratch({ vmmDone: 1, vcpus: vcpus * BLK.WORDS });
}
function plan(p: ScenarioParams): ReturnType<typeof makePlan> {
  let pl = plans.get(p.vcpus);
  if (!pl) plans.set(p.vcpus, (pl = makePlan(p.vcpus)));
  return pl;
}

function block(L: Layout, p: ScenarioParams, v: VcpuId, word: number): Addr {
  return L.scratch(plan(p).at.vcpus + v * BLK.WORDS + word);
}

/**
 * The TDX vendor operations of this scenario: TDX's own, with a record of every TD entry (the
 * variants differ only in the machine patches they run with).
 */
function scenarioOps(p: ScenarioParams): KvmX86Ops {
  return {
    ...tdxX86Ops,
    vcpuRun(k, v, guest, maxSteps) {
      // Bookkeeping at TDH.VP.ENTER: entries, those with APICv inactive in a live VM, and those
      // after KVM_BUG_ON (the VM is dead; KVM_REQ_VM_DEAD and its kick are on the way).
      const { acc, L } = k;
      const n = acc.peek(block(L, p, v, BLK.ENTRIES));
      acc.poke(block(L, p, v, BLK.ENTRIES), n + 1);
      if (acc.peek(L.vm(VM.VM_BUGGED)) !== 0) acc.bump(block(L, p, v, BLK.DYING));
      else if (acc.peek(L.vcpu(v, VCPU.APICV_ACTIVE)) === 0) {
        if (acc.peek(block(L, p, v, BLK.INACTIVE_LIVE)) === 0) acc.poke(block(L, p, v, BLK.FIRST_INACTIVE_LIVE), n);
        acc.bump(block(L, p, v, BLK.INACTIVE_LIVE));
      }
      return tdxX86Ops.vcpuRun(k, v, guest, maxSteps);
    },
  };
}

/**
 * The TD's guest: it records every vector its handler takes and, after a little work since it
 * last woke, idles (TDVMCALL(HLT) with interrupts enabled).
 */
const GUEST_RUN: GuestAction = { kind: 'run' };
const GUEST_HLT: GuestAction = { kind: 'hlt' };

class HaltingGuest extends RecordingGuest {
  private work = 0;
  override onInterrupt(vector: number): void {
    super.onInterrupt(vector);
    this.work = 0;
  }
  override step(): GuestAction {
    if (++this.work < GUEST_WORK_STEPS) return GUEST_RUN;
    this.work = 0;
    return GUEST_HLT;
  }
}

/** This actor's KvmCtx (vCPU v on pCPU v; the device and the VMM on no pCPU of the VM). */
function kvmCtxOf(ctx: ScenarioCtx): KvmCtx {
  return scenarioKvmCtx(ctx, (c) => scenarioOps(c.params));
}

/** KVM_RUN on TD vCPU v (the machine's kvm_vcpu_ioctl / vcpu_run), as this scenario's VMM thread issues it. */
export function tdKvmRun(k: KvmCtx, v: VcpuId, guest: GuestProgram, stop: () => boolean, onHalt: () => void = () => undefined): KvmRunEnd {
  return kvmVcpuIoctlRun(k, v, guest, { maxSteps: GUEST_STEPS, signalPending: stop, sleepMs: BLOCK_SLICE_MS, onHalt });
}

function isVmDead(e: unknown): boolean {
  return e instanceof EmuError && e.code === 'EMU_ERR_VM_BUGGED';
}


/**
 * A TD vCPU's thread (the VMM's vCPU loop): KVM_RUN until the VMM is done and everything sent
 * arrived (or it settled; the VMM then takes the vCPU back, as with a signal). If KVM_RUN came
 * back while the VM is dead — another vCPU's KVM_BUG_ON set vm_bugged but its KVM_REQ_VM_DEAD
 * has not reached this vCPU yet — the VMM issues KVM_RUN again, which meets vm_dead. After an
 * -EIO, one more KVM_RUN, as a VMM would.
 */
function vcpuRound(ctx: ScenarioCtx): void {
  const k = kvmCtxOf(ctx);
  const { acc, L, params } = ctx;
  const v = ctx.index;
  const at = plan(params).at;
  const sent = block(L, params, v, BLK.SENT);
  const received = block(L, params, v, BLK.RECEIVED);
  const guest = new HaltingGuest(acc, received);
  const onHalt = () => acc.bump(block(L, params, v, BLK.HALTS));
  let blockedAtEnd = false;
  let settle = 0;
  const stop = (): boolean => {
    if (acc.peek(L.scratch(at.vmmDone)) === 0) return false;
    if (++settle >= SETTLE_ENTRIES) return true;
    if (kvmRequestPending(acc, v)) return false;
    for (let i = 0; i < 8; i++) {
      const s = acc.peek((sent + i) as Addr);
      if ((acc.peek((received + i) as Addr) & s) !== s) return false;
    }
    return true;
  };
  let outcome: TdKvmRunOutcome = 'returned';
  let rerun: TdRerunOutcome = 'not-tried';
  // At most twice: the second KVM_RUN only when the first came back on a dead VM.
  for (let call = 0; call < 2; call++) {
    try {
      blockedAtEnd = tdKvmRun(k, v, guest, stop, onHalt) === 'signalled-while-blocked';
    } catch (e) {
      if (!isVmDead(e)) throw e;
      outcome = 'eio';
      break;
    }
    if (!kvmVmIsBugged(k)) break;
  }
  if (outcome === 'eio') {
    try {
      tdKvmRun(k, v, guest, () => true);
      rerun = 'ran';
    } catch (e) {
      if (!isVmDead(e)) throw e;
      rerun = 'refused';
    }
  }
  acc.poke(block(L, params, v, BLK.KVM_RUN), KVM_RUN_OUTCOMES.indexOf(outcome));
  acc.poke(block(L, params, v, BLK.RERUN), RERUN_OUTCOMES.indexOf(rerun));
  acc.poke(block(L, params, v, BLK.BLOCKED_AT_END), blockedAtEnd ? 1 : 0);
}

/**
 * The VMM's I/O thread: injects distinct MSIs into every TD vCPU through irqfd at seeded random
 * times and, at a seeded random point among them, hot-adds a vCPU whose APIC-map recalculation
 * fails to allocate the map — kvm_recalculate_apic_map: !new -> PHYSICAL_ID_ALIASED.
 */
function vmmRound(ctx: ScenarioCtx): void {
  const k = kvmCtxOf(ctx);
  const { acc, L, params } = ctx;
  const n = params.vcpus;
  const total = SENDS_PER_VCPU * n;
  // Half of the rounds raise the inhibit, at a random point among the sends; the others never do.
  const inhibitAt = ctx.prng.below(2 * (total + 1));
  for (let i = 0; i <= total; i++) {
    thinkSpins(ctx, 'vmm:gap', VMM_GAP_SPINS);
    if (i === inhibitAt) kvmSetOrClearApicvInhibit(k, APICV_INHIBIT_REASON_PHYSICAL_ID_ALIASED, true);
    if (i === total) break;
    const v = i % n;
    const sent = block(L, params, v, BLK.SENT);
    let vector: number;
    do vector = FIRST_VECTOR + ctx.prng.below(LAST_VECTOR - FIRST_VECTOR + 1);
    while ((acc.peek((sent + vecWord(vector)) as Addr) >>> vecPos(vector)) & 1);
    const w = (sent + vecWord(vector)) as Addr;
    acc.poke(w, acc.peek(w) | (1 << vecPos(vector)));
    // kvm_set_msi -> kvm_irq_delivery_to_apic -> kvm_apic_set_irq -> deliver_interrupt
    kvmIrqDeliveryToApic(k, v, vector);
  }
  acc.poke(L.scratch(plan(params).at.vmmDone), 1);
}

/** A fresh TD for every round: APICv forced active, no inhibit, not bugged, vCPU v loaded on pCPU v. */
function setup(acc: Access, p: ScenarioParams): void {
  resetVmSlice(acc, 'tdx', p.vcpus, plan(p).words);
}


/** The round's record for the checkers (role 0, after the round). */
function roundRecord(ctx: ScenarioCtx): TdApicvRound {
  const { acc, L, params } = ctx;
  const words = (at: (i: number) => Addr) => Array.from({ length: 8 }, (_, i) => acc.peek(at(i)) >>> 0);
  const vcpus = Array.from({ length: params.vcpus }, (_, v) => {
    const b = (w: number) => block(L, params, v, w);
    const inactiveLive = acc.peek(b(BLK.INACTIVE_LIVE));
    return {
      vcpu: v,
      apicvActive: acc.peek(L.vcpu(v, VCPU.APICV_ACTIVE)) !== 0,
      entries: acc.peek(b(BLK.ENTRIES)),
      inactiveLiveEntries: inactiveLive,
      firstInactiveLiveEntry: inactiveLive > 0 ? acc.peek(b(BLK.FIRST_INACTIVE_LIVE)) : -1,
      dyingEntries: acc.peek(b(BLK.DYING)),
      kvmRun: KVM_RUN_OUTCOMES[acc.peek(b(BLK.KVM_RUN))] ?? 'returned',
      rerun: RERUN_OUTCOMES[acc.peek(b(BLK.RERUN))] ?? 'not-tried',
      sent: bitmapVectors(peekBitmap(acc, (i) => (b(BLK.SENT) + i) as Addr)),
      received: bitmapVectors(peekBitmap(acc, (i) => (b(BLK.RECEIVED) + i) as Addr)),
      pir: words((i) => L.pid(v, PID.PIR, i)),
      on: (acc.peek(L.pid(v, PID.CONTROL)) & 1) !== 0,
      irr: words((i) => L.apicBitmapWord(v, APIC_IRR, i)),
      halts: acc.peek(b(BLK.HALTS)),
      blockedAtEnd: acc.peek(b(BLK.BLOCKED_AT_END)) !== 0,
    };
  });
  return { vmBugged: acc.peek(L.vm(VM.VM_BUGGED)) !== 0, inhibitReasons: acc.peek(L.vm(VM.APICV_INHIBIT_REASONS)), vcpus };
}

/** The scenario. */
export const tdxApicvInhibit: ScenarioDef = {
  id: 'tdx-apicv-inhibit',
  title: 'Interrupts into halting TD vCPUs while KVM may inhibit APICv: KVM\'s view of a protected APIC (inhibit accepted or VM bugged; PID-only or VCPU_STATE_DETAILS wake-up check)',
  seedFile: '000_12335ea9bf6ce8f5.txt',
  variants: [
    {
      name: 'buggy',
      buggy: true,
      differs: 'refresh_apicv_exec_ctrl accepts the TD vCPU\'s APICv deactivation (the old approach: APICv inhibited for TDs like for a VMX guest) instead of KVM_BUG_ON(!apicv_active)',
      patches: [PATCH_TDX_APICV_INHIBIT_ACCEPTED],
    },
    {
      name: 'buggy-hlt-pid-only',
      buggy: true,
      differs: 'tdx_protected_apic_has_interrupt checks only the posted-interrupt descriptor, not the module\'s VCPU_STATE_DETAILS for a TDVMCALL(HLT) with interrupts enabled',
      patches: [PATCH_TDX_HAS_INTERRUPT_PID_ONLY],
    },
    {
      name: 'buggy-no-self-ipi',
      buggy: true,
      differs: 'tdx_vcpu_run does not send itself POSTED_INTR_VECTOR before TDH.VP.ENTER when ON is set (hypothetical: shows why the self-IPI is there)',
      patches: [PATCH_TDX_NO_PI_SELF_IPI],
    },
    { name: 'fixed', buggy: false, differs: '', kernel: 'v6.16 and later (APICv forced active for TDs, KVM_BUG_ON on a deactivation; VCPU_STATE_DETAILS read for HLT)' },
  ],
  invariants: [
    { name: 'tdxApicvActiveAtEntry', description: 'no TD entry in a live VM runs with APICv inactive (entries after KVM_BUG_ON, the VM already dead, are its last slice)' },
    { name: 'tdxSentReachesGuest', description: 'no interrupt sent to a TD is lost: in a live VM every one reached its guest; in a VM killed by KVM_BUG_ON each one not taken still sits in the TD\'s PIR or vIRR (a missing one is reported where it sits)' },
    { name: 'tdxBuggedVmAllExited', description: 'a bugged VM (the expected outcome of an inhibit in the fixed variant) ends with every vCPU out of KVM_RUN with -EIO and every later KVM_RUN refused' },
  ],
  widen: { probability: 0.3, maxSpins: 400, points: ['apicv:', 'pi:pir-', 'pi:on-', 'vcpu:mode-', 'kvm:vm-bugged', 'kvm:request-make'] },
  vcpus: { default: 2, min: 1, max: 4 },
  roles: (p) => [...Array.from({ length: p.vcpus }, (_, i) => `vcpu${i}`), 'vmm'],
  layout: (p) => ({ vcpus: p.vcpus, pcpus: p.vcpus, scratchWords: plan(p).words }),
  init(acc, p) {
    setup(acc, p);
  },
  round(ctx) {
    if (ctx.index < ctx.params.vcpus) vcpuRound(ctx);
    else vmmRound(ctx);
  },
  check(ctx): Violation[] {
    const r = roundRecord(ctx);
    return [...tdxApicvActiveAtEntry(r), ...tdxSentReachesGuest(r), ...tdxBuggedVmAllExited(r)];
  },
  reset(ctx) {
    setup(ctx.acc, ctx.params);
  },
};
