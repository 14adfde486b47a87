/**
 * tdx-offline-last-cpu — offlining the last online CPU of a package while a TD holds a key
 * (domain notes 8.4 TB-2; arch/x86/kvm/vmx/tdx.c tdx_offline_cpu; seed 004 and Sean's review of
 * the v2 rework: "tdx_enable() needs to be called under cpu_hotplug_lock to prevent *unplug*,
 * i.e. to prevent the last CPU on a package from being offlined"). README.md beside this file.
 *
 * Each round starts from a booted host with `--vcpus` CPUs (default 4) in two packages and
 * kvm_intel loaded with TDX up (the 6.16 bring-up, run by role 0 in reset). Two threads:
 *   vm (role 0, on CPU0)  KVM_CREATE_VM + KVM_TDX_INIT_VM (HKID, nr_configured_hkid++, key on
 *                         every package under cpus_read_lock), TD vCPUs on every active CPU,
 *                         then destruction (flush, VPFLUSHDONE, TDH.PHYMEM.CACHE.WB on a CPU of
 *                         every package, TDH.MNG.KEY.FREEID)
 *   hotplug               offline every CPU of the last package, one by one, then online them
 *
 *   CPU0 (vm)                             CPU1 (hotplug)
 *   tdx_td_init: nr_configured_hkid++
 *   cpus_read_lock; all packages online
 *   TDH.MNG.KEY.CONFIG pkg0, pkg1
 *   cpus_read_unlock                      cpu_down(CPU2): tdx_offline_cpu: CPU3 still up → 0
 *   TDH.VP.ENTER on CPU0, CPU1, CPU3      cpu_down(CPU3): tdx_offline_cpu: last of pkg1
 *                                           fixed: nr_configured_hkid > 0 → -EBUSY (stays up)
 *                                           buggy: allowed → pkg1 dark while the TD has a key
 *   destroy: TDH.PHYMEM.CACHE.WB only on pkg0 → TDH.MNG.KEY.FREEID: TDX_WBCACHE_NOT_COMPLETE,
 *   the HKID is leaked
 *
 * The one step that differs: tdx_offline_cpu's check (buggy: the patch tdx-offline-cpu-no-hkid-check).
 * Invariant: tdxTdKeepsPackagesOnline (src/invariants/tdx-bringup.ts).
 */
import { planScratch, type Addr, type Layout } from '../../mem/layout.js';
import type { Access } from '../../mem/access.js';
import { wordAt } from '../../sync/index.js';
import { cpuDown, cpuUp, CPUHP_CPU, perCpuWord, type CpuhpCallbacks } from '../../host/cpuhp.js';
import { kvmDisableVirtualization, kvmEnableVirtualization, kvmInitVirtualization, type KvmVirtOps } from '../../kvm/virt-enable.js';
import { PatchSet } from '../../kvm/patches.js';
import { tdxKotSnapshot, tdxStatusName } from '../../hw/tdx/module.js';
import {
  PATCH_TDX_OFFLINE_CPU_NO_HKID_CHECK,
  contiguousPackage,
  tdxBringup,
  tdxHostArea,
  tdxHostCpuhpCallbacks,
  tdxHostBoot,
  tdxMmuReleaseHkid,
  tdxTdInit,
  tdxVcpuRun,
  vtVirtOps,
  type TdxPlaces,
} from '../../kvm/vmx/tdx-bringup.js';
import { tdxTdKeepsPackagesOnline, type TdPackageSample } from '../../invariants/tdx-bringup.js';
import type { Violation } from '../../invariants/checks.js';
import { EmuError } from '../../errors.js';
import { thinkSpins, type ScenarioCtx, type ScenarioDef, type ScenarioParams } from '../define.js';

const NR_PKGS = 2;
const LOG_CAPACITY = 128;
const BOOT_CPU = 0;
/** Upper bounds of think times, in cpu_relax iterations. */
const VM_START_SPINS = 200;
const VM_RUN_SPINS = 2000;
/** Passes over the TD vCPUs (each on every active CPU) before the TD is destroyed. */
const VM_PASSES = 6;
const HOTPLUG_START_SPINS = 4000;
const HOTPLUG_GAP_SPINS = 300;
/** Package-sample log: count, then one word per sample. */
const MAX_SAMPLES = 15;
/** Words of one thread's sample log (count, then the samples); the vm thread logs into log 0, hotplug into log 1. */
const SAMPLE_LOG_WORDS = 16;
/** Sample word: key packages 7:0, online packages 15:8, where 19:16 (0 vm, 1 after cpu_down), CPU 27:20. */
const SAMPLE = { ONLINE_SHIFT: 8, WHERE_SHIFT: 16, CPU_SHIFT: 20 } as const;
/** Round words: HKID release outcome (1 + released, 0 = not destroyed) and its status. */
const ROUND = { RELEASE: 0, RELEASE_STATUS: 1 } as const;

const plans = new Map<number, ReturnType<typeof makePlan>>();
function makePlan(n: number) {
  const area = tdxHostArea(n, NR_PKGS, LOG_CAPACITY);
  return { area, ...planScratch({ host: area.words, samples: 2 * SAMPLE_LOG_WORDS, round: 16 }) };
}
function plan(p: ScenarioParams): ReturnType<typeof makePlan> {
  let pl = plans.get(p.vcpus);
  if (!pl) plans.set(p.vcpus, (pl = makePlan(p.vcpus)));
  return pl;
}

/** Where this scenario's host, sample log and round words live. @emulator */
export function tdxOfflineLastCpuPlaces(L: Layout, p: ScenarioParams): { b: TdxPlaces; samples: Addr; round: Addr } {
  const pl = plan(p);
  return { b: pl.area.placesAt(L.scratch(pl.at.host)), samples: L.scratch(pl.at.samples), round: L.scratch(pl.at.round) };
}

interface Model {
  b: TdxPlaces;
  samples: Addr;
  round: Addr;
  ops: KvmVirtOps;
  cbs: CpuhpCallbacks;
}

/** The machine's cpuhp callbacks with the variant's patches (tdx_offline_cpu's check or not), for an actor. */
function modelFor(acc: Access, p: ScenarioParams): Model {
  const { b, samples, round } = tdxOfflineLastCpuPlaces(acc.layout, p);
  const ops = vtVirtOps(acc, b);
  return { b, samples, round, ops, cbs: tdxHostCpuhpCallbacks(acc, b, ops, new PatchSet((p.variant.patches ?? []).map((x) => x.id))) };
}

const models = new WeakMap<Access, Model>();
function model(ctx: ScenarioCtx): Model {
  let m = models.get(ctx.acc);
  if (!m) models.set(ctx.acc, (m = modelFor(ctx.acc, ctx.params)));
  return m;
}


/** Record which packages hold the TD's key and which have an online CPU (bookkeeping reads). */
function sample(acc: Access, m: Model, where: number, cpu: number): void {
  const mod = m.b.module;
  let online = 0;
  for (let c = 0; c < mod.nrCpus; c++) if (acc.peek(perCpuWord(mod.cpuhp.cpu, c, CPUHP_CPU.ONLINE)) !== 0) online |= 1 << contiguousPackage(mod.nrCpus, mod.nrPkgs, c);
  const key = tdxKotSnapshot(acc, mod).keyPkgs;
  // Each thread appends to its own log (where = 0: the vm thread, 1: hotplug).
  const log = wordAt(m.samples, where * SAMPLE_LOG_WORDS);
  const i = acc.peek(log);
  if (i >= MAX_SAMPLES) throw new EmuError('EMU_ERR_INTERNAL', `${acc.name}: more than ${MAX_SAMPLES} package samples in one round`, { actor: acc.name });
  acc.poke(wordAt(log, 1 + i), key | (online << SAMPLE.ONLINE_SHIFT) | (where << SAMPLE.WHERE_SHIFT) | (cpu << SAMPLE.CPU_SHIFT));
  acc.poke(log, i + 1);
}

/** The VMM on CPU0: a TD from creation to destruction. */
function vmRound(ctx: ScenarioCtx, m: Model): void {
  const { acc } = ctx;
  thinkSpins(ctx, 'think:vm', VM_START_SPINS);
  if (kvmEnableVirtualization(acc, m.b.kvm, m.ops, m.cbs) !== 0) return; // kvm_create_vm
  if (tdxTdInit(acc, m.b, BOOT_CPU) === 0) {
    for (let pass = 0; pass < VM_PASSES; pass++) {
      for (let v = 0; v < ctx.params.vcpus; v++) tdxVcpuRun(acc, m.b, v);
      sample(acc, m, 0, BOOT_CPU);
      thinkSpins(ctx, 'think:vm', VM_RUN_SPINS);
    }
    const rel = tdxMmuReleaseHkid(acc, m.b, BOOT_CPU);
    acc.poke(wordAt(m.round, ROUND.RELEASE), rel.released ? 2 : 1);
    acc.poke(wordAt(m.round, ROUND.RELEASE_STATUS), rel.status | 0);
  }
  kvmDisableVirtualization(acc, m.b.kvm, m.ops, m.cbs); // kvm_destroy_vm
}

/** The admin: offline every CPU of the last package, then bring them back. */
function hotplugRound(ctx: ScenarioCtx, m: Model): void {
  const { acc, prng } = ctx;
  const n = ctx.params.vcpus;
  const last = Array.from({ length: n }, (_, c) => c).filter((c) => contiguousPackage(n, NR_PKGS, c) === NR_PKGS - 1);
  if (prng.next() < 0.5) last.reverse();
  thinkSpins(ctx, 'think:hotplug', HOTPLUG_START_SPINS);
  for (const cpu of last) {
    if (cpuDown(acc, m.b.module.cpuhp, cpu, m.cbs) === 0) sample(acc, m, 1, cpu);
    thinkSpins(ctx, 'think:hotplug', HOTPLUG_GAP_SPINS);
  }
  for (const cpu of last) cpuUp(acc, m.b.module.cpuhp, cpu, m.cbs);
}

function roundSamples(acc: Access, m: Model): TdPackageSample[] {
  const out: TdPackageSample[] = [];
  for (let k = 0; k < 2; k++) {
    const log = wordAt(m.samples, k * SAMPLE_LOG_WORDS);
    const n = Math.min(acc.peek(log), MAX_SAMPLES);
    for (let i = 0; i < n; i++) {
      const w = acc.peek(wordAt(log, 1 + i));
      const where = (w >>> SAMPLE.WHERE_SHIFT) & 0xf;
      const cpu = (w >>> SAMPLE.CPU_SHIFT) & 0xff;
      out.push({ when: where === 1 ? `right after cpu_down(CPU${cpu}) returned 0` : 'while the TD vCPUs run', keyPackages: w & 0xff, onlinePackages: (w >>> SAMPLE.ONLINE_SHIFT) & 0xff, nrPackages: NR_PKGS });
    }
  }
  return out;
}

/** A fresh boot, then kvm_intel load with TDX (single-threaded: nothing races it here). */
function bootAndLoad(acc: Access, p: ScenarioParams): void {
  const L = acc.layout;
  for (let i = 0; i < plan(p).words; i++) acc.poke(L.scratch(i), 0);
  const m = modelFor(acc, p);
  tdxHostBoot(acc, m.b);
  const r = tdxBringup(acc, m.b, m.ops, m.cbs, BOOT_CPU);
  if (r !== 0) throw new EmuError('EMU_ERR_INTERNAL', `${acc.name}: TDX bring-up failed with every CPU online (${r})`, { actor: acc.name });
  kvmInitVirtualization(acc, m.b.kvm, m.ops, m.cbs);
}

/** The scenario. */
export const tdxOfflineLastCpu: ScenarioDef = {
  id: 'tdx-offline-last-cpu',
  title: 'TDX: offlining the last online CPU of a package while a TD holds a key',
  seedFile: '004_caa808ce7e54f28d.txt',
  variants: [
    { name: 'buggy', buggy: true, differs: 'tdx_offline_cpu lets the last online CPU of a package go offline although a TD holds an HKID', patches: [PATCH_TDX_OFFLINE_CPU_NO_HKID_CHECK] },
    { name: 'fixed', buggy: false, differs: '', kernel: 'every posted TDX KVM and v6.16 (tdx_offline_cpu returns -EBUSY)' },
  ],
  invariants: [{ name: 'tdxTdKeepsPackagesOnline', description: 'while a TD\'s key is programmed on some package, every package has an online CPU (else its HKID cannot be reclaimed)' }],
  widen: { probability: 0.3, maxSpins: 400, points: ['cpuhp:', 'kvm-tdx:', 'tdx:'] },
  vcpus: { default: 4, min: 2, max: 8 },
  roles: () => ['vm', 'hotplug'],
  layout: (p) => ({ vcpus: p.vcpus, pcpus: p.vcpus, scratchWords: plan(p).words }),
  init(acc, p) {
    bootAndLoad(acc, p);
  },
  round(ctx) {
    const m = model(ctx);
    if (ctx.index === 0) vmRound(ctx, m);
    else hotplugRound(ctx, m);
  },
  check(ctx): Violation[] {
    const m = model(ctx);
    const rel = ctx.acc.peek(wordAt(m.round, ROUND.RELEASE));
    const release = rel === 0 ? null : { released: rel === 2, status: tdxStatusName(ctx.acc.peek(wordAt(m.round, ROUND.RELEASE_STATUS))) };
    return tdxTdKeepsPackagesOnline({ samples: roundSamples(ctx.acc, m), release });
  },
  reset(ctx) {
    bootAndLoad(ctx.acc, ctx.params);
  },
};
