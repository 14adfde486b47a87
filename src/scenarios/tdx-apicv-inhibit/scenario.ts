/**
 * tdx-apicv-inhibit — an APICv inhibit raised at runtime in a TD while its vCPUs take
 * interrupts from another thread (the VMM's). Seed 000: Binbin Wu's "Re: [PATCH 12/16] KVM:
 * TDX: Inhibit APICv for TDX guest" (Jan 2025), which replaced "inhibit APICv for TDs" by
 * "force APICv active for TDs and bug the VM if anything would deactivate it"; domain notes 2.3
 * (TDX note), 4.2, 4.3, 4.4 IN-4. See README.md beside this file.
 *
 *   CPU0/CPU1 TD vCPUs (vcpu_run)                   CPU2 vmm (irqfd MSIs; vCPU hot-add)
 *                                                    kvm_recalculate_apic_map: no memory ->
 *                                                    set PHYSICAL_ID_ALIASED: REQ_APICV_UPDATE,
 *   kicked out; KVM_REQ_APICV_UPDATE:                kick, publish
 *     apicv_active = 0; refresh_apicv_exec_ctrl
 *   buggy (old approach): accepted — the TD vCPU runs with APICv inactive;
 *                                                    kvm_set_msi: PIR |= v; ON; NV -> CPU0
 *     the notification is a VM-exit, sync_pir_to_irr is a no-op for a TD, KVM cannot inject
 *     into a TD: v never reaches the guest (and each entry's self-IPI exits at once)
 *   fixed (new approach): KVM_BUG_ON(!apicv_active) -> kvm_vm_bugged: KVM_REQ_VM_DEAD + kick to
 *     every vCPU; each vCPU's KVM_RUN fails with -EIO, every later KVM_RUN too
 *
 * Entries are the emulator's vcpu_enter_guest (src/kvm/x86.ts) over the TDX vendor ops
 * (src/kvm/vmx/tdx.ts); the interrupts go through kvm_irq_delivery_to_apic (src/kvm/irq.ts); the
 * inhibit through kvm_set_or_clear_apicv_inhibit (src/kvm/apicv.ts).
 */
import { APIC_IRR } from '../../mem/apicdef.js';
import { PID, VCPU, VM, planScratch, vecPos, vecWord, type Addr, type Layout, type VcpuId } from '../../mem/layout.js';
import type { Access } from '../../mem/access.js';
import { EmuError } from '../../errors.js';
import { APICV_INHIBIT_REASON_PHYSICAL_ID_ALIASED, kvmSetOrClearApicvInhibit } from '../../kvm/apicv.js';
import { kvmIrqDeliveryToApic } from '../../kvm/irq.js';
import { kvmRequestPending } from '../../kvm/requests.js';
import { kvmVmIsBugged, vmDeadError } from '../../kvm/vm-bug.js';
import { vcpuEnterGuest } from '../../kvm/x86.js';
import type { GuestProgram, KvmCtx, KvmX86Ops } from '../../kvm/x86-ops.js';
import { tdxX86Ops } from '../../kvm/vmx/tdx.js';
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
/** Guest steps per TD entry before a preemption-timer exit. */
const GUEST_STEPS = 8;
/** KVM_RUN iterations a vCPU keeps going once the VMM is done, at most. */
const SETTLE_ENTRIES = 64;
/** Upper bound (cpu_relax iterations) of the VMM's gap before each of its steps. */
const VMM_GAP_SPINS = 3000;

/**
 * Words of a vCPU's block: the sent bitmap (VMM-written) on its own line, then the vCPU's own
 * words: received bitmap, entry counts and how KVM_RUN ended.
 */
const BLK = { SENT: 0, RECEIVED: 16, ENTRIES: 24, INACTIVE_LIVE: 25, FIRST_INACTIVE_LIVE: 26, DYING: 27, KVM_RUN: 28, RERUN: 29, WORDS: 32 } as const;
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
 * The TDX vendor operations of this scenario: TDX's own, with a record of every TD entry and
 * (buggy) the old approach's refresh_apicv_exec_ctrl.
 */
function scenarioOps(p: ScenarioParams): KvmX86Ops {
  const buggy = p.variant.buggy;
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
    refreshApicvExecCtrl(k, v, active) {
      if (buggy) {
        // BUG (deliberate): the old approach — APICv is inhibited for TDs like for any VMX guest,
        // so the deactivation is accepted and the TD vCPU goes on running with APICv inactive,
        // instead of KVM_BUG_ON(!kvm_vcpu_apicv_active(vcpu), vcpu->kvm).
        return;
      }
      tdxX86Ops.refreshApicvExecCtrl?.(k, v, active);
    },
  };
}

/** This actor's KvmCtx (vCPU v on pCPU v; the device and the VMM on no pCPU of the VM). */
function kvmCtxOf(ctx: ScenarioCtx): KvmCtx {
  return scenarioKvmCtx(ctx, (c) => scenarioOps(c.params));
}

/**
 * KVM_RUN on a TD vCPU: refused with -EIO on a dead VM, else vcpu_run's loop of
 * vcpu_enter_guest until `stop()` (the VMM's signal) — or until KVM_REQ_VM_DEAD fails it with
 * -EIO (an EmuError EMU_ERR_VM_BUGGED).
 * @kvm virt/kvm/kvm_main.c kvm_vcpu_ioctl (kvm->vm_dead -> -EIO); arch/x86/kvm/x86.c vcpu_run
 */
export function tdKvmRun(k: KvmCtx, v: VcpuId, guest: GuestProgram, stop: () => boolean): void {
  if (kvmVmIsBugged(k)) throw vmDeadError(k, v);
  for (;;) {
    vcpuEnterGuest(k, v, guest, GUEST_STEPS);
    if (stop()) return;
  }
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
  const guest = new RecordingGuest(acc, received);
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
      tdKvmRun(k, v, guest, stop);
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
  const inhibitAt = ctx.prng.below(total + 1);
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
    };
  });
  return { vmBugged: acc.peek(L.vm(VM.VM_BUGGED)) !== 0, inhibitReasons: acc.peek(L.vm(VM.APICV_INHIBIT_REASONS)), vcpus };
}

/** The scenario. */
export const tdxApicvInhibit: ScenarioDef = {
  id: 'tdx-apicv-inhibit',
  title: 'An APICv inhibit raised at runtime in a TD taking interrupts: inhibit APICv for TDs (old) vs force it active and bug the VM (new)',
  seedFile: '000_12335ea9bf6ce8f5.txt',
  variants: [
    {
      name: 'buggy',
      buggy: true,
      differs: 'refresh_apicv_exec_ctrl accepts the TD vCPU\'s APICv deactivation (the old approach: APICv inhibited for TDs like for a VMX guest) instead of KVM_BUG_ON(!apicv_active)',
    },
    { name: 'fixed', buggy: false, differs: '' },
  ],
  invariants: [
    { name: 'tdxApicvActiveAtEntry', description: 'no TD entry in a live VM runs with APICv inactive (entries after KVM_BUG_ON, the VM already dead, are its last slice)' },
    { name: 'tdxSentReachesGuest', description: 'unless the VM was bugged, every interrupt sent to a TD vCPU reached its guest (a missing one is reported where it sits)' },
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
