/**
 * tdx-init-hotplug — TDX module bring-up at kvm_intel load racing CPU hotplug, and a TD created
 * afterwards running on every CPU (domain notes 8.1–8.4, TB-1; seed 004: "[PATCH v19 023/130]
 * KVM: TDX: Initialize the TDX module when loading the KVM intel kernel module", Kai Huang /
 * Sean Christopherson, Apr 2024). README.md beside this file has the interleavings and figures.
 *
 * Each round is a fresh boot of a host with `--vcpus` CPUs (default 4) in two packages: every CPU
 * online, VMX off, the TDX module loaded but uninitialised. Three threads:
 *   module-init (role 0, on CPU0)  kvm_intel load: vt_init (the machine's, with the variant's patches)
 *   hotplug                        cpu_down / cpu_up of random CPUs other than CPU0
 *   vm (on CPU0)                   after /dev/kvm exists: a TD (HKID, TDH.MNG.CREATE, key per
 *                                  package), TDH.VP.ENTER on every active CPU, destruction
 *
 *   fixed (6.16 tdx_bringup)           buggy-no-hotplug-lock (patch tdx-bringup-no-hotplug-lock)
 *   kvm_enable_virtualization()        kvm_enable_virtualization()
 *   cpus_read_lock()                   (no hotplug lock)
 *     cpuhp_setup_state(tdx, online)     cpuhp_setup_state(tdx, online)  ┐ a CPU comes up (or
 *     tdx_enable(): SYS.CONFIG,          tdx_enable(): SYS.CONFIG,       │ goes down) here:
 *                   SYS.KEY.CONFIG                     SYS.KEY.CONFIG    ┘ online, not ready
 *   cpus_read_unlock()
 *
 *   seed-v19 (patch tdx-v19-bringup, expected to hold): the v19 bring-up at load with VMX on
 *   and off around it and VMXON later only per VM — see README for why no CPU can end up
 *   without TDH.SYS.LP.INIT.
 *
 * Invariants (src/invariants/tdx-bringup.ts): tdxSeamcallOnReadyCpu, tdxConfigAllOnlineLpsInit,
 * kvmOnlineCpusVmxOn (after the round), tdxInitOnce. Window widening is the same for all variants.
 */
import { planScratch, type Addr, type Layout } from '../../mem/layout.js';
import type { Access } from '../../mem/access.js';
import { pollUntil } from '../../sync/wait.js';
import { wordAt } from '../../sync/index.js';
import { cpuDown, cpuOnline, cpuUp, type CpuhpCallbacks } from '../../host/cpuhp.js';
import { cpuInVmxOperation, cr4Vmxe } from '../../host/virt-cpu.js';
import { kvmUsageCount, type KvmVirtOps } from '../../kvm/virt-enable.js';
import { TdxLeaf, readSeamcallLog, tdxLeafName, tdxStatusName, tdxSysRuns } from '../../hw/tdx/module.js';
import {
  PATCH_TDX_BRINGUP_NO_HOTPLUG_LOCK,
  PATCH_TDX_V19_BRINGUP,
  kvmCreateVmVirt,
  kvmDestroyVmVirt,
  tdxEnabled,
  tdxHostArea,
  tdxHostBoot,
  tdxHostCpuhpCallbacks,
  tdxMmuReleaseHkid,
  tdxTdInit,
  tdxVcpuRun,
  vtInit,
  vtVirtOps,
  type TdxPlaces,
} from '../../kvm/vmx/tdx-bringup.js';
import { kvmOnlineCpusVmxOn, tdxConfigAllOnlineLpsInit, tdxInitOnce, tdxSeamcallOnReadyCpu, type SeamcallRecord, type SysConfigRecord, type TdxBringupRound } from '../../invariants/tdx-bringup.js';
import type { Violation } from '../../invariants/checks.js';
import { thinkSpins, type ScenarioCtx, type ScenarioDef, type ScenarioParams } from '../define.js';

/** Packages of the modelled host. */
const NR_PKGS = 2;
/** SEAMCALL log records per round (a round makes about 30). */
const LOG_CAPACITY = 256;
/** The CPU the module-init and VMM threads run on (never taken offline). */
const BOOT_CPU = 0;
/** Upper bounds of think times, in cpu_relax iterations. */
const MODULE_START_SPINS = 400;
const HOTPLUG_START_SPINS = 1200;
const HOTPLUG_GAP_SPINS = 300;
const VM_THINK_SPINS = 200;
/** cpu_down/cpu_up cycles the hotplug thread runs per round. */
const HOTPLUG_CYCLES = 2;

/** Round words: /dev/kvm registered (kvm_intel loaded), the bring-up result. */
const ROUND = { LOADED: 0, INIT_RESULT: 1 } as const;


const plans = new Map<number, ReturnType<typeof makePlan>>();
function makePlan(n: number) {
  const area = tdxHostArea(n, NR_PKGS, LOG_CAPACITY);
  return { area, ...planScratch({ host: area.words, round: 16 }) };
}
function plan(p: ScenarioParams): ReturnType<typeof makePlan> {
  let pl = plans.get(p.vcpus);
  if (!pl) plans.set(p.vcpus, (pl = makePlan(p.vcpus)));
  return pl;
}

/** Where this scenario's host lives in a machine laid out with its `layout(p)`. @emulator */
export function tdxInitHotplugPlaces(L: Layout, p: ScenarioParams): { b: TdxPlaces; round: Addr } {
  const pl = plan(p);
  return { b: pl.area.placesAt(L.scratch(pl.at.host)), round: L.scratch(pl.at.round) };
}

/** One actor's view: the places, the vendor hooks and the machine's cpuhp callbacks (with the variant's patches). */
interface Model {
  b: TdxPlaces;
  round: Addr;
  ops: KvmVirtOps;
  cbs: CpuhpCallbacks;
}

const models = new WeakMap<Access, Model>();
function model(ctx: ScenarioCtx): Model {
  let m = models.get(ctx.acc);
  if (!m) {
    const { acc } = ctx;
    const { b, round } = tdxInitHotplugPlaces(ctx.L, ctx.params);
    const ops = vtVirtOps(acc, b);
    models.set(acc, (m = { b, round, ops, cbs: tdxHostCpuhpCallbacks(acc, b, ops, ctx.patches) }));
  }
  return m;
}

/** kvm_intel load on CPU0: the machine's vt_init (TDX bring-up, then kvm_init; /dev/kvm last). */
function moduleInitRound(ctx: ScenarioCtx, m: Model): void {
  const { acc } = ctx;
  thinkSpins(ctx, 'think:module', MODULE_START_SPINS);
  const r = vtInit(acc, m.b, m.ops, m.cbs, BOOT_CPU, ctx.patches);
  acc.writeOnce(wordAt(m.round, ROUND.INIT_RESULT), r, 'kvm:load-result');
  acc.writeOnce(wordAt(m.round, ROUND.LOADED), 1, 'kvm:dev-kvm-registered');
}

/** The admin: take random CPUs other than CPU0 down and up again. */
function hotplugRound(ctx: ScenarioCtx, m: Model): void {
  const { acc, prng } = ctx;
  const n = ctx.params.vcpus;
  thinkSpins(ctx, 'think:hotplug', HOTPLUG_START_SPINS);
  for (let k = 0; k < HOTPLUG_CYCLES; k++) {
    const cpu = 1 + prng.below(n - 1);
    cpuDown(acc, m.b.module.cpuhp, cpu, m.cbs);
    thinkSpins(ctx, 'think:hotplug', HOTPLUG_GAP_SPINS);
    cpuUp(acc, m.b.module.cpuhp, cpu, m.cbs);
    thinkSpins(ctx, 'think:hotplug', HOTPLUG_GAP_SPINS);
  }
}

/** The VMM on CPU0: once /dev/kvm exists and TDX is on, a TD that runs a vCPU on every CPU. */
function vmRound(ctx: ScenarioCtx, m: Model): void {
  const { acc } = ctx;
  const loaded = wordAt(m.round, ROUND.LOADED);
  pollUntil(acc, loaded, 'vm:wait-dev-kvm', () => acc.readOnce(loaded, 'vm:wait-dev-kvm') !== 0, () => '/dev/kvm (kvm_intel load)');
  if (!tdxEnabled(acc, m.b)) return;
  thinkSpins(ctx, 'think:vm', VM_THINK_SPINS);
  const ref = kvmCreateVmVirt(acc, m.b, m.ops, m.cbs, ctx.patches);
  if (ref !== 0) return;
  if (tdxTdInit(acc, m.b, BOOT_CPU) === 0) {
    for (let pass = 0; pass < 2; pass++) {
      for (let v = 0; v < ctx.params.vcpus; v++) tdxVcpuRun(acc, m.b, v);
      thinkSpins(ctx, 'think:vm', VM_THINK_SPINS);
    }
    tdxMmuReleaseHkid(acc, m.b, BOOT_CPU);
  }
  kvmDestroyVmVirt(acc, m.b, m.ops, m.cbs, ctx.patches);
}

/** The round's record for the checkers (role 0, after the round: every actor is done). */
function roundRecord(ctx: ScenarioCtx, m: Model): TdxBringupRound {
  const { acc, L, roles } = ctx;
  const role = (actor: number) => roles[actor - L.extraActor(0)] ?? `actor${actor}`;
  const mask = (bits: number) => Array.from({ length: ctx.params.vcpus }, (_, c) => c).filter((c) => bits & (1 << c));
  const { entries } = readSeamcallLog(acc, m.b.module);
  const seamcalls: SeamcallRecord[] = entries.map((e) => ({ cpu: e.cpu, leaf: tdxLeafName(e.leaf), by: role(e.actor), vmxe: e.vmxe, inVmx: e.inVmx, lpInit: e.lpInit, status: tdxStatusName(e.status) }));
  const configs: SysConfigRecord[] = entries
    .filter((e) => e.leaf === TdxLeaf.SYS_CONFIG)
    .map((e) => ({ cpu: e.cpu, by: role(e.actor), online: mask(e.onlineMask), lpInitialized: mask(e.lpInitMask), status: tdxStatusName(e.status) }));
  const runs = tdxSysRuns(acc, m.b.module);
  const hp = m.b.module.cpuhp;
  const virt = m.b.module.virt;
  const cpus = Array.from({ length: ctx.params.vcpus }, (_, c) => ({ cpu: c, online: cpuOnline(acc, hp, c), vmxe: cr4Vmxe(acc, virt, c), inVmx: cpuInVmxOperation(acc, virt, c) }));
  return { seamcalls, configs, sysInitRuns: runs.sysInit, sysConfigRuns: runs.sysConfig, quiescent: { usageCount: kvmUsageCount(acc, m.b.kvm), cpus } };
}

/** A fresh boot: zero the area, then power-on state. */
function boot(acc: Access, p: ScenarioParams): void {
  const L = acc.layout;
  const { words } = plan(p);
  for (let i = 0; i < words; i++) acc.poke(L.scratch(i), 0);
  const { b } = tdxInitHotplugPlaces(L, p);
  tdxHostBoot(acc, b);
}

/** The scenario. */
export const tdxInitHotplug: ScenarioDef = {
  id: 'tdx-init-hotplug',
  title: 'TDX module bring-up at kvm_intel load racing CPU hotplug, then a TD on every CPU',
  seedFile: '004_caa808ce7e54f28d.txt',
  variants: [
    {
      name: 'buggy-no-hotplug-lock',
      buggy: true,
      differs: 'the TDX cpuhp registration and tdx_enable() run without cpus_read_lock(): a CPU can come up or go down between the tdx_cpu_enable pass and TDH.SYS.CONFIG / TDH.SYS.KEY.CONFIG',
      patches: [PATCH_TDX_BRINGUP_NO_HOTPLUG_LOCK],
    },
    {
      name: 'seed-v19',
      buggy: false,
      expected: 'holds',
      differs: 'the seed\'s (v19) bring-up: VMXON + tdx_cpu_enable, tdx_enable, VMXOFF under cpus_read_lock at load; VMXON later only per VM (pre-6.10 KVM enabling) — holds: every LP runs TDH.SYS.LP.INIT before TDH.SYS.CONFIG and keeps it',
      patches: [PATCH_TDX_V19_BRINGUP],
    },
    { name: 'fixed', buggy: false, differs: '', kernel: 'v6.16 and later (tdx_bringup under cpus_read_lock with the TDX cpuhp state)' },
  ],
  invariants: [
    { name: 'tdxSeamcallOnReadyCpu', description: 'a SEAMCALL on CPU c finds c post-VMXON and (except TDH.SYS.INIT / TDH.SYS.LP.INIT) c\'s LP initialised' },
    { name: 'tdxConfigAllOnlineLpsInit', description: 'TDH.SYS.CONFIG runs only while every online CPU has completed TDH.SYS.LP.INIT' },
    { name: 'kvmOnlineCpusVmxOn', description: 'after the round: kvm_usage_count > 0 implies every online CPU is post-VMXON' },
    { name: 'tdxInitOnce', description: 'TDH.SYS.INIT and TDH.SYS.CONFIG each execute at most once' },
  ],
  widen: { probability: 0.3, maxSpins: 400, points: ['cpuhp:', 'tdx:', 'kvm:', 'vmx:'] },
  vcpus: { default: 4, min: 2, max: 8 },
  roles: () => ['module-init', 'hotplug', 'vm'],
  layout: (p) => ({ vcpus: p.vcpus, pcpus: p.vcpus, scratchWords: plan(p).words }),
  init(acc, p) {
    boot(acc, p);
  },
  round(ctx) {
    const m = model(ctx);
    if (ctx.index === 0) moduleInitRound(ctx, m);
    else if (ctx.index === 1) hotplugRound(ctx, m);
    else vmRound(ctx, m);
  },
  check(ctx): Violation[] {
    const rec = roundRecord(ctx, model(ctx));
    return [...tdxSeamcallOnReadyCpu(rec), ...tdxConfigAllOnlineLpsInit(rec), ...kvmOnlineCpusVmxOn(rec), ...tdxInitOnce(rec)];
  },
  reset(ctx) {
    boot(ctx.acc, ctx.params);
  },
};
