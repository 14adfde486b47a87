/**
 * The Intel TDX module as the host sees it through SEAMCALL, and the host kernel's management of
 * it (arch/x86/virt/vmx/tdx/tdx.c): TDH.SYS.INIT exactly once under a raw spinlock,
 * TDH.SYS.LP.INIT per logical processor, tdx_module_status under tdx_module_lock, TDH.SYS.CONFIG,
 * the global key per package, HKIDs for TDs.
 *
 * Module (SEAM memory), global ({@link TDX_SEAM}): sys_state, the module's global lock (shared /
 * exclusive, try-only: contention is TDX_SYS_BUSY), num_of_lps — every logical processor MCHECK
 * counted when the BIOS enabled TDX (sysinfo tot_num_lps), online or not — num_of_init_lps,
 * packages and the package bitmap of TDH.SYS.KEY.CONFIG, and one TD's key-ownership entry (HKID,
 * state, packages whose memory controller holds its key, packages whose caches were written back).
 * Per LP ({@link TDX_LP}): lp_is_init and its package. Per TD vCPU ({@link TDX_VP}): the LP its
 * TDVPS is associated with.
 *
 * What the real module enforces (intel/tdx-module src/vmm_dispatcher): a SEAMCALL outside VMX
 * operation never reaches the module (#UD); any leaf but the TDH.SYS ones fails with
 * TDX_SYS_NOT_READY until the module is SYS_READY; TDH.SYS.LP.INIT only between TDH.SYS.INIT and
 * TDH.SYS.CONFIG (TDX_SYS_LP_INIT_NOT_PENDING), once per LP (TDX_SYS_LP_INIT_DONE);
 * TDH.SYS.CONFIG only once, and only when num_of_init_lps == num_of_lps
 * (TDX_SYS_CONFIG_NOT_PENDING) — so every LP of the platform must run TDH.SYS.LP.INIT before the
 * module can be configured, and none can after.
 *
 * Status codes are the upper 32 bits of the module's 64-bit status; the kernel's software codes
 * for a SEAMCALL that faulted (TDX_SW_ERROR | trap number) are folded to 0x8000ff00 | trap, and
 * VMfailInvalid (no module loaded) to 0x8000ffff.
 */
import type { Access } from '../../mem/access.js';
import type { Addr } from '../../mem/layout.js';
import { mutexLock, mutexUnlock, spinLock, spinUnlock, wordAt } from '../../sync/index.js';
import { badParam } from '../../errors.js';
import { cpuOnline, onCpu, onlineCpus, perCpuWord, smpCallFunctionSingle, topologyPhysicalPackageId, type CpuhpPlaces } from '../../host/cpuhp.js';
import { cpuInVmxOperation, cr4Vmxe, type VirtCpuPlaces } from '../../host/virt-cpu.js';
import { ERRNO } from '../../host/errno.js';

/**
 * SEAMCALL leaf numbers modelled.
 * @kvm arch/x86/virt/vmx/tdx/tdx.h TDH_VP_ENTER ... TDH_SYS_CONFIG
 */
export const TdxLeaf = {
  VP_ENTER: 0,
  MNG_KEY_CONFIG: 8,
  MNG_CREATE: 9,
  VP_FLUSH: 18,
  MNG_VPFLUSHDONE: 19,
  MNG_KEY_FREEID: 20,
  SYS_KEY_CONFIG: 31,
  SYS_INIT: 33,
  SYS_LP_INIT: 35,
  PHYMEM_CACHE_WB: 40,
  SYS_CONFIG: 45,
} as const;
/** A SEAMCALL leaf number. */
export type TdxLeaf = (typeof TdxLeaf)[keyof typeof TdxLeaf];

const LEAF_NAMES: Record<number, string> = {
  0: 'TDH.VP.ENTER',
  8: 'TDH.MNG.KEY.CONFIG',
  9: 'TDH.MNG.CREATE',
  18: 'TDH.VP.FLUSH',
  19: 'TDH.MNG.VPFLUSHDONE',
  20: 'TDH.MNG.KEY.FREEID',
  31: 'TDH.SYS.KEY.CONFIG',
  33: 'TDH.SYS.INIT',
  35: 'TDH.SYS.LP.INIT',
  40: 'TDH.PHYMEM.CACHE.WB',
  45: 'TDH.SYS.CONFIG',
};

/**
 * The ABI name of a leaf, e.g. `TDH.SYS.LP.INIT`.
 * @emulator
 */
export function tdxLeafName(leaf: number): string {
  return LEAF_NAMES[leaf] ?? `leaf ${leaf}`;
}

/**
 * SEAMCALL completion status (upper 32 bits), and the kernel's codes for a faulting SEAMCALL.
 * @kvm arch/x86/include/asm/shared/tdx_errno.h (TDX_SUCCESS, TDX_SYS_*, TDX_KEY_*, TDX_VCPU_*) and asm/tdx.h TDX_SEAMCALL_UD / TDX_SEAMCALL_GP / TDX_SEAMCALL_VMFAILINVALID
 */
export const TDX_STATUS = {
  TDX_SUCCESS: 0,
  TDX_SYS_BUSY: 0x80000202,
  TDX_SYS_INIT_NOT_PENDING: 0xc0000500,
  TDX_SYS_LP_INIT_NOT_DONE: 0xc0000502,
  TDX_SYS_LP_INIT_DONE: 0xc0000503,
  TDX_SYS_NOT_READY: 0xc0000505,
  TDX_SYS_KEY_CONFIG_NOT_PENDING: 0xc0000507,
  TDX_SYS_LP_INIT_NOT_PENDING: 0xc000050b,
  TDX_SYS_CONFIG_NOT_PENDING: 0xc000050c,
  TDX_VCPU_ASSOCIATED: 0x80000701,
  TDX_VCPU_NOT_ASSOCIATED: 0x80000702,
  TDX_TD_KEYS_NOT_CONFIGURED: 0x80000810,
  TDX_KEY_STATE_INCORRECT: 0xc0000811,
  TDX_KEY_CONFIGURED: 0x00000815,
  TDX_WBCACHE_NOT_COMPLETE: 0x80000817,
  TDX_HKID_NOT_FREE: 0xc0000820,
  TDX_NO_HKID_READY_TO_WBCACHE: 0x00000821,
  TDX_FLUSHVP_NOT_DONE: 0x80000824,
  TDX_SEAMCALL_UD: 0x8000ff06,
  TDX_SEAMCALL_GP: 0x8000ff0d,
  TDX_SEAMCALL_VMFAILINVALID: 0x8000ffff,
} as const;

/**
 * Name of a status for reports.
 * @emulator
 */
export function tdxStatusName(status: number): string {
  const s = status >>> 0;
  return Object.entries(TDX_STATUS).find(([, v]) => v === s)?.[0] ?? `0x${s.toString(16)}`;
}

/**
 * The module's system state.
 * @kvm intel/tdx-module include/tdx_global_data.h sysinit_state_e (SYSINIT_PENDING, SYSINIT_DONE, SYSCONFIG_DONE, SYS_READY, SYS_SHUTDOWN)
 */
export const SysState = { SYSINIT_PENDING: 0, SYSINIT_DONE: 1, SYSCONFIG_DONE: 2, SYS_READY: 3, SYS_SHUTDOWN: 4 } as const;

/**
 * State of the TD's key-ownership-table entry.
 * @kvm intel/tdx-module kot_entry_t (KOT_STATE_HKID_FREE, _ASSIGNED, _CONFIGURED, _BLOCKED)
 */
export const KotState = { FREE: 0, ASSIGNED: 1, CONFIGURED: 2, BLOCKED: 3 } as const;

/**
 * tdx_module_status.
 * @kvm arch/x86/virt/vmx/tdx/tdx.h enum tdx_module_status_t
 */
export const TdxModuleStatus = { UNINITIALIZED: 0, INITIALIZED: 1, ERROR: 2 } as const;

/** Word offsets of the module's global data (SEAM memory). */
export const TDX_SEAM = {
  SYS_STATE: 0,
  /** The module's global sharex lock: 0 free, n > 0 shared holders, -1 exclusive. */
  GLOBAL_LOCK: 1,
  NUM_OF_LPS: 2,
  NUM_OF_INIT_LPS: 3,
  NUM_OF_PKGS: 4,
  NUM_OF_INIT_PKGS: 5,
  PKG_CONFIG_BITMAP: 6,
  /** Successful TDH.SYS.INIT / TDH.SYS.CONFIG executions (for the at-most-once checker). */
  SYS_INIT_RUNS: 7,
  SYS_CONFIG_RUNS: 8,
  /** The TD's KOT entry: HKID, state ({@link KotState}), key packages, written-back packages. */
  KOT_HKID: 9,
  KOT_STATE: 10,
  TD_KEY_PKGS: 11,
  TD_WBCACHE_PKGS: 12,
} as const;
/** Word offsets in an LP's module-local line. */
export const TDX_LP = { LP_IS_INIT: 0, PKG: 1 } as const;
/** Word offsets in a TD vCPU's TDVPS line: the associated LP + 1 (0 = none). */
export const TDX_VP = { ASSOC_LP: 0 } as const;
/** Word offsets of the host kernel's TDX words (arch/x86/virt/vmx/tdx/tdx.c). */
export const TDX_HOST = {
  /** try_init_module_global's raw spinlock (two words), sysinit_done, sysinit_ret. */
  SYSINIT_LOCK: 0,
  SYSINIT_DONE: 2,
  SYSINIT_RET: 3,
  /** tdx_module_lock (mutex, two words) and tdx_module_status. */
  MODULE_LOCK: 4,
  MODULE_STATUS: 6,
  /** tdx_guest_keyid_pool: bit i = guest KeyID TDX_GUEST_KEYID_START + i allocated. */
  KEYID_POOL: 7,
} as const;
/** Word offsets of the host's per-CPU TDX line: per_cpu(tdx_lp_initialized). */
export const TDX_HOST_CPU = { LP_INITIALIZED: 0 } as const;

/** The global KeyID (the first TDX KeyID; the module's own metadata). */
export const TDX_GLOBAL_KEYID = 1;
/** First guest KeyID. */
export const TDX_GUEST_KEYID_START = 2;
/** Guest KeyIDs the BIOS partitioned for TDX (after the global one). */
export const TDX_NR_GUEST_KEYIDS = 8;

/** Words of the module's global area. */
export const TDX_SEAM_WORDS = 16;
/** Words of the host's TDX area. */
export const TDX_HOST_WORDS = 16;
/** Words of one SEAMCALL log record. */
export const TDX_LOG_RECORD_WORDS = 4;
/** Words of the log header before the first record (count, overflow flag). */
export const TDX_LOG_HEADER_WORDS = 4;

/**
 * Where the module and the host's TDX state live, with the host state SEAMCALL depends on.
 * @kvm arch/x86/virt/vmx/tdx/tdx.c (tdx_module_status, tdx_lp_initialized, sysinit_done) and the TDX module's global / LP-local data
 */
export interface TdxModulePlaces {
  readonly nrCpus: number;
  readonly nrPkgs: number;
  /** Module global data ({@link TDX_SEAM}). */
  readonly seam: Addr;
  /** LP 0's module-local line ({@link TDX_LP}). */
  readonly lp: Addr;
  /** TD vCPU 0's TDVPS line ({@link TDX_VP}); one per CPU. */
  readonly vp: Addr;
  /** Host words ({@link TDX_HOST}). */
  readonly host: Addr;
  /** CPU 0's host TDX line ({@link TDX_HOST_CPU}). */
  readonly hostCpu: Addr;
  /** SEAMCALL log: header then records (emulator bookkeeping for the checkers). */
  readonly log: Addr;
  readonly logCapacity: number;
  readonly cpuhp: CpuhpPlaces;
  readonly virt: VirtCpuPlaces;
}

/**
 * Words a SEAMCALL log of `capacity` records needs.
 * @emulator
 */
export function tdxLogWords(capacity: number): number {
  return TDX_LOG_HEADER_WORDS + capacity * TDX_LOG_RECORD_WORDS;
}

const seam = (t: TdxModulePlaces, f: number) => wordAt(t.seam, f);
const host = (t: TdxModulePlaces, f: number) => wordAt(t.host, f);
const lpWord = (t: TdxModulePlaces, cpu: number, f: number) => perCpuWord(t.lp, cpu, f);
const vpWord = (t: TdxModulePlaces, vp: number, f: number) => perCpuWord(t.vp, vp, f);
const allPkgs = (t: TdxModulePlaces) => (1 << t.nrPkgs) - 1;

/**
 * Boot: the BIOS enabled TDX and MCHECK counted every LP and package; the module is loaded and
 * uninitialised; the host knows nothing yet. Throws EMU_ERR_BAD_PARAM naming `nrPkgs` if the
 * topology is impossible.
 * @kvm intel/tdx-module tdx_init_global_data (num_of_lps = mcheck tot_num_lps, num_of_pkgs = tot_num_sockets); arch/x86/virt/vmx/tdx/tdx.c tdx_init
 */
export function tdxModuleBoot(acc: Access, t: TdxModulePlaces): void {
  if (!Number.isInteger(t.nrPkgs) || t.nrPkgs < 1 || t.nrPkgs > t.nrCpus) throw badParam('nrPkgs', `${t.nrPkgs} (must be 1..${t.nrCpus})`);
  for (let f = 0; f < TDX_SEAM_WORDS; f++) acc.writeOnce(seam(t, f), 0, 'tdx:boot');
  acc.writeOnce(seam(t, TDX_SEAM.NUM_OF_LPS), t.nrCpus, 'tdx:boot');
  acc.writeOnce(seam(t, TDX_SEAM.NUM_OF_PKGS), t.nrPkgs, 'tdx:boot');
  for (let c = 0; c < t.nrCpus; c++) {
    acc.writeOnce(lpWord(t, c, TDX_LP.LP_IS_INIT), 0, 'tdx:boot');
    acc.writeOnce(lpWord(t, c, TDX_LP.PKG), 0, 'tdx:boot');
    acc.writeOnce(vpWord(t, c, TDX_VP.ASSOC_LP), 0, 'tdx:boot');
    acc.writeOnce(perCpuWord(t.hostCpu, c, TDX_HOST_CPU.LP_INITIALIZED), 0, 'tdx:boot');
  }
  for (let f = 0; f < TDX_HOST_WORDS; f++) acc.writeOnce(host(t, f), 0, 'tdx:boot');
  acc.writeOnce(t.log, 0, 'tdx:boot');
  acc.writeOnce(wordAt(t.log, 1), 0, 'tdx:boot');
}

// ---- the module ---------------------------------------------------------------------------------

function lockEx(acc: Access, t: TdxModulePlaces): boolean {
  return acc.cmpxchg(seam(t, TDX_SEAM.GLOBAL_LOCK), 0, -1, 'tdx:seam-lock') === 0;
}
function unlockEx(acc: Access, t: TdxModulePlaces): void {
  acc.xchg(seam(t, TDX_SEAM.GLOBAL_LOCK), 0, 'tdx:seam-unlock');
}
function lockSh(acc: Access, t: TdxModulePlaces): boolean {
  const w = seam(t, TDX_SEAM.GLOBAL_LOCK);
  for (;;) {
    const v = acc.readOnce(w, 'tdx:seam-lock');
    if (v < 0) return false;
    if (acc.cmpxchg(w, v, v + 1, 'tdx:seam-lock') === v) return true;
  }
}
function unlockSh(acc: Access, t: TdxModulePlaces): void {
  acc.atomicAdd(seam(t, TDX_SEAM.GLOBAL_LOCK), -1, 'tdx:seam-unlock');
}

/** Run a module handler under the global lock (exclusive or shared); TDX_SYS_BUSY if contended. */
function withSeamLock(acc: Access, t: TdxModulePlaces, exclusive: boolean, fn: () => number): number {
  if (!(exclusive ? lockEx(acc, t) : lockSh(acc, t))) return TDX_STATUS.TDX_SYS_BUSY;
  try {
    return fn();
  } finally {
    if (exclusive) unlockEx(acc, t);
    else unlockSh(acc, t);
  }
}

function sysState(acc: Access, t: TdxModulePlaces): number {
  return acc.readOnce(seam(t, TDX_SEAM.SYS_STATE), 'tdx:sys-state-read');
}
function setSysState(acc: Access, t: TdxModulePlaces, s: number): void {
  acc.writeOnce(seam(t, TDX_SEAM.SYS_STATE), s, 'tdx:sys-state-write');
}
function lpPkg(acc: Access, t: TdxModulePlaces, cpu: number): number {
  return acc.readOnce(lpWord(t, cpu, TDX_LP.PKG), 'tdx:lp-pkg-read');
}

function tdhSysInit(acc: Access, t: TdxModulePlaces): number {
  return withSeamLock(acc, t, true, () => {
    if (sysState(acc, t) !== SysState.SYSINIT_PENDING) return TDX_STATUS.TDX_SYS_INIT_NOT_PENDING;
    setSysState(acc, t, SysState.SYSINIT_DONE);
    acc.atomicAdd(seam(t, TDX_SEAM.SYS_INIT_RUNS), 1, 'tdx:sys-init-done');
    return TDX_STATUS.TDX_SUCCESS;
  });
}

function tdhSysLpInit(acc: Access, t: TdxModulePlaces, cpu: number): number {
  return withSeamLock(acc, t, false, () => {
    if (sysState(acc, t) !== SysState.SYSINIT_DONE) return TDX_STATUS.TDX_SYS_LP_INIT_NOT_PENDING;
    const init = lpWord(t, cpu, TDX_LP.LP_IS_INIT);
    if (acc.readOnce(init, 'tdx:lp-init-read') !== 0) return TDX_STATUS.TDX_SYS_LP_INIT_DONE;
    acc.writeOnce(lpWord(t, cpu, TDX_LP.PKG), topologyPhysicalPackageId(acc, t.cpuhp, cpu), 'tdx:lp-init-pkg');
    acc.writeOnce(init, 1, 'tdx:lp-init-write');
    acc.atomicAdd(seam(t, TDX_SEAM.NUM_OF_INIT_LPS), 1, 'tdx:lp-init-count');
    return TDX_STATUS.TDX_SUCCESS;
  });
}

function tdhSysConfig(acc: Access, t: TdxModulePlaces): number {
  return withSeamLock(acc, t, true, () => {
    if (sysState(acc, t) !== SysState.SYSINIT_DONE) return TDX_STATUS.TDX_SYS_CONFIG_NOT_PENDING;
    const done = acc.readOnce(seam(t, TDX_SEAM.NUM_OF_INIT_LPS), 'tdx:config-count-read');
    if (done < acc.readOnce(seam(t, TDX_SEAM.NUM_OF_LPS), 'tdx:config-count-read')) return TDX_STATUS.TDX_SYS_CONFIG_NOT_PENDING;
    acc.writeOnce(seam(t, TDX_SEAM.PKG_CONFIG_BITMAP), 0, 'tdx:config');
    setSysState(acc, t, SysState.SYSCONFIG_DONE);
    acc.atomicAdd(seam(t, TDX_SEAM.SYS_CONFIG_RUNS), 1, 'tdx:config-done');
    return TDX_STATUS.TDX_SUCCESS;
  });
}

function tdhSysKeyConfig(acc: Access, t: TdxModulePlaces, cpu: number): number {
  return withSeamLock(acc, t, true, () => {
    if (sysState(acc, t) !== SysState.SYSCONFIG_DONE) return TDX_STATUS.TDX_SYS_KEY_CONFIG_NOT_PENDING;
    const bit = 1 << lpPkg(acc, t, cpu);
    const map = seam(t, TDX_SEAM.PKG_CONFIG_BITMAP);
    const m = acc.readOnce(map, 'tdx:pkg-config-read');
    if (m & bit) return TDX_STATUS.TDX_KEY_CONFIGURED;
    acc.writeOnce(map, m | bit, 'tdx:pkg-config-write');
    const n = acc.readOnce(seam(t, TDX_SEAM.NUM_OF_INIT_PKGS), 'tdx:pkg-count') + 1;
    acc.writeOnce(seam(t, TDX_SEAM.NUM_OF_INIT_PKGS), n, 'tdx:pkg-count');
    if (n === t.nrPkgs) setSysState(acc, t, SysState.SYS_READY);
    return TDX_STATUS.TDX_SUCCESS;
  });
}

function kotState(acc: Access, t: TdxModulePlaces): number {
  return acc.readOnce(seam(t, TDX_SEAM.KOT_STATE), 'tdx:kot-read');
}
function setKot(acc: Access, t: TdxModulePlaces, s: number): void {
  acc.writeOnce(seam(t, TDX_SEAM.KOT_STATE), s, 'tdx:kot-write');
}

function tdhMngCreate(acc: Access, t: TdxModulePlaces, hkid: number): number {
  if (kotState(acc, t) !== KotState.FREE) return TDX_STATUS.TDX_HKID_NOT_FREE;
  acc.writeOnce(seam(t, TDX_SEAM.KOT_HKID), hkid, 'tdx:kot-write');
  acc.writeOnce(seam(t, TDX_SEAM.TD_KEY_PKGS), 0, 'tdx:kot-write');
  setKot(acc, t, KotState.ASSIGNED);
  return TDX_STATUS.TDX_SUCCESS;
}

function tdhMngKeyConfig(acc: Access, t: TdxModulePlaces, cpu: number): number {
  const k = kotState(acc, t);
  if (k === KotState.CONFIGURED) return TDX_STATUS.TDX_KEY_CONFIGURED;
  if (k !== KotState.ASSIGNED) return TDX_STATUS.TDX_KEY_STATE_INCORRECT;
  const pkgs = seam(t, TDX_SEAM.TD_KEY_PKGS);
  const bit = 1 << lpPkg(acc, t, cpu);
  const m = acc.readOnce(pkgs, 'tdx:td-key-read');
  if (m & bit) return TDX_STATUS.TDX_KEY_CONFIGURED;
  acc.writeOnce(pkgs, m | bit, 'tdx:td-key-write');
  if ((m | bit) === allPkgs(t)) setKot(acc, t, KotState.CONFIGURED);
  return TDX_STATUS.TDX_SUCCESS;
}

function tdhVpEnter(acc: Access, t: TdxModulePlaces, cpu: number, vp: number): number {
  if (kotState(acc, t) !== KotState.CONFIGURED) return TDX_STATUS.TDX_TD_KEYS_NOT_CONFIGURED;
  const assoc = vpWord(t, vp, TDX_VP.ASSOC_LP);
  const a = acc.readOnce(assoc, 'tdx:vp-assoc-read');
  if (a !== 0 && a !== cpu + 1) return TDX_STATUS.TDX_VCPU_ASSOCIATED;
  acc.writeOnce(assoc, cpu + 1, 'tdx:vp-associate');
  return TDX_STATUS.TDX_SUCCESS;
}

function tdhVpFlush(acc: Access, t: TdxModulePlaces, cpu: number, vp: number): number {
  const assoc = vpWord(t, vp, TDX_VP.ASSOC_LP);
  if (acc.readOnce(assoc, 'tdx:vp-assoc-read') !== cpu + 1) return TDX_STATUS.TDX_VCPU_NOT_ASSOCIATED;
  acc.writeOnce(assoc, 0, 'tdx:vp-disassociate');
  return TDX_STATUS.TDX_SUCCESS;
}

function tdhMngVpflushdone(acc: Access, t: TdxModulePlaces): number {
  for (let v = 0; v < t.nrCpus; v++) if (acc.readOnce(vpWord(t, v, TDX_VP.ASSOC_LP), 'tdx:vp-assoc-read') !== 0) return TDX_STATUS.TDX_FLUSHVP_NOT_DONE;
  const k = kotState(acc, t);
  if (k !== KotState.CONFIGURED && k !== KotState.ASSIGNED) return TDX_STATUS.TDX_KEY_STATE_INCORRECT;
  acc.writeOnce(seam(t, TDX_SEAM.TD_WBCACHE_PKGS), 0, 'tdx:kot-write');
  setKot(acc, t, KotState.BLOCKED);
  return TDX_STATUS.TDX_SUCCESS;
}

function tdhPhymemCacheWb(acc: Access, t: TdxModulePlaces, cpu: number): number {
  if (kotState(acc, t) !== KotState.BLOCKED) return TDX_STATUS.TDX_NO_HKID_READY_TO_WBCACHE;
  acc.atomicOr(seam(t, TDX_SEAM.TD_WBCACHE_PKGS), 1 << lpPkg(acc, t, cpu), 'tdx:wbcache');
  return TDX_STATUS.TDX_SUCCESS;
}

function tdhMngKeyFreeid(acc: Access, t: TdxModulePlaces): number {
  if (kotState(acc, t) !== KotState.BLOCKED) return TDX_STATUS.TDX_KEY_STATE_INCORRECT;
  if (acc.readOnce(seam(t, TDX_SEAM.TD_WBCACHE_PKGS), 'tdx:wbcache-read') !== allPkgs(t)) return TDX_STATUS.TDX_WBCACHE_NOT_COMPLETE;
  acc.writeOnce(seam(t, TDX_SEAM.KOT_HKID), 0, 'tdx:kot-write');
  acc.writeOnce(seam(t, TDX_SEAM.TD_KEY_PKGS), 0, 'tdx:kot-write');
  setKot(acc, t, KotState.FREE);
  return TDX_STATUS.TDX_SUCCESS;
}

/** The module's VMM dispatcher: the SYS_READY gate, then the leaf. */
function tdxVmmDispatcher(acc: Access, t: TdxModulePlaces, cpu: number, leaf: TdxLeaf, arg: number): number {
  const sysLeaf = leaf === TdxLeaf.SYS_INIT || leaf === TdxLeaf.SYS_LP_INIT || leaf === TdxLeaf.SYS_CONFIG || leaf === TdxLeaf.SYS_KEY_CONFIG;
  if (!sysLeaf && sysState(acc, t) !== SysState.SYS_READY) return TDX_STATUS.TDX_SYS_NOT_READY;
  switch (leaf) {
    case TdxLeaf.SYS_INIT:
      return tdhSysInit(acc, t);
    case TdxLeaf.SYS_LP_INIT:
      return tdhSysLpInit(acc, t, cpu);
    case TdxLeaf.SYS_CONFIG:
      return tdhSysConfig(acc, t);
    case TdxLeaf.SYS_KEY_CONFIG:
      return tdhSysKeyConfig(acc, t, cpu);
    case TdxLeaf.MNG_CREATE:
      return tdhMngCreate(acc, t, arg);
    case TdxLeaf.MNG_KEY_CONFIG:
      return tdhMngKeyConfig(acc, t, cpu);
    case TdxLeaf.VP_ENTER:
      return tdhVpEnter(acc, t, cpu, arg);
    case TdxLeaf.VP_FLUSH:
      return tdhVpFlush(acc, t, cpu, arg);
    case TdxLeaf.MNG_VPFLUSHDONE:
      return tdhMngVpflushdone(acc, t);
    case TdxLeaf.PHYMEM_CACHE_WB:
      return tdhPhymemCacheWb(acc, t, cpu);
    case TdxLeaf.MNG_KEY_FREEID:
      return tdhMngKeyFreeid(acc, t);
  }
}

/** Record flags of a SEAMCALL log record (word 0). */
const REC = { CPU_MASK: 0xff, LEAF_SHIFT: 8, VMXE: 1 << 16, IN_VMX: 1 << 17, LP_INIT: 1 << 18, ACTOR_SHIFT: 24 } as const;

function logSeamcall(acc: Access, t: TdxModulePlaces, cpu: number, leaf: number, vmxe: boolean, inVmx: boolean, lpInit: boolean, status: number): void {
  const i = acc.atomicAdd(t.log, 1, 'tdx-log:append');
  if (i >= t.logCapacity) {
    acc.poke(wordAt(t.log, 1), 1);
    return;
  }
  const rec = wordAt(t.log, TDX_LOG_HEADER_WORDS + i * TDX_LOG_RECORD_WORDS);
  let online = 0;
  let init = 0;
  if (leaf === TdxLeaf.SYS_CONFIG) {
    // What "every online LP has run TDH.SYS.LP.INIT" means at the instant of TDH.SYS.CONFIG.
    for (let c = 0; c < t.nrCpus; c++) {
      if (cpuOnline(acc, t.cpuhp, c)) online |= 1 << c;
      if (acc.readOnce(lpWord(t, c, TDX_LP.LP_IS_INIT), 'tdx-log:config-snapshot') !== 0) init |= 1 << c;
    }
  }
  acc.poke(rec, cpu | (leaf << REC.LEAF_SHIFT) | (vmxe ? REC.VMXE : 0) | (inVmx ? REC.IN_VMX : 0) | (lpInit ? REC.LP_INIT : 0) | ((acc.actor & 0x7f) << REC.ACTOR_SHIFT));
  acc.poke(wordAt(rec, 1), status | 0);
  acc.poke(wordAt(rec, 2), online);
  acc.poke(wordAt(rec, 3), init);
}

/**
 * SEAMCALL `leaf` on `cpu` (the caller runs on that CPU): outside VMX operation the instruction
 * raises #UD and the kernel's fixup returns TDX_SEAMCALL_UD; otherwise the module runs the leaf.
 * `arg` is the leaf's operand (HKID for TDH.MNG.CREATE, TD vCPU for TDH.VP.*). Every SEAMCALL is
 * logged with the CPU's state at entry (CR4.VMXE, VMX operation, the module's lp_is_init).
 * @sdm Intel TDX CPU architecture extensions, SEAMCALL (#UD outside VMX operation; VMfailInvalid without a SEAM module) and intel/tdx-module tdx_vmm_dispatcher
 */
export function seamcall(acc: Access, t: TdxModulePlaces, cpu: number, leaf: TdxLeaf, arg = 0): number {
  const vmxe = cr4Vmxe(acc, t.virt, cpu);
  const inVmx = cpuInVmxOperation(acc, t.virt, cpu);
  const lpInit = acc.readOnce(lpWord(t, cpu, TDX_LP.LP_IS_INIT), 'tdx:seamcall-lp-init-read') !== 0;
  const status = inVmx ? tdxVmmDispatcher(acc, t, cpu, leaf, arg) : TDX_STATUS.TDX_SEAMCALL_UD;
  logSeamcall(acc, t, cpu, leaf, vmxe, inVmx, lpInit, status);
  return status;
}

/** One logged SEAMCALL. */
export interface SeamcallLogEntry {
  cpu: number;
  leaf: number;
  /** Actor id of the caller. */
  actor: number;
  vmxe: boolean;
  inVmx: boolean;
  lpInit: boolean;
  status: number;
  /** For TDH.SYS.CONFIG: CPUs online, and LPs initialised, at the call (bit = CPU). */
  onlineMask: number;
  lpInitMask: number;
}

/**
 * The SEAMCALL log so far (bookkeeping read) and whether records were dropped.
 * @emulator
 */
export function readSeamcallLog(acc: Access, t: TdxModulePlaces): { entries: SeamcallLogEntry[]; overflowed: boolean } {
  const n = Math.min(acc.peek(t.log), t.logCapacity);
  const entries: SeamcallLogEntry[] = [];
  for (let i = 0; i < n; i++) {
    const rec = wordAt(t.log, TDX_LOG_HEADER_WORDS + i * TDX_LOG_RECORD_WORDS);
    const w0 = acc.peek(rec);
    entries.push({
      cpu: w0 & REC.CPU_MASK,
      leaf: (w0 >>> REC.LEAF_SHIFT) & 0xff,
      actor: (w0 >>> REC.ACTOR_SHIFT) & 0x7f,
      vmxe: (w0 & REC.VMXE) !== 0,
      inVmx: (w0 & REC.IN_VMX) !== 0,
      lpInit: (w0 & REC.LP_INIT) !== 0,
      status: acc.peek(wordAt(rec, 1)) >>> 0,
      onlineMask: acc.peek(wordAt(rec, 2)),
      lpInitMask: acc.peek(wordAt(rec, 3)),
    });
  }
  return { entries, overflowed: acc.peek(wordAt(t.log, 1)) !== 0 };
}

/**
 * How often TDH.SYS.INIT and TDH.SYS.CONFIG succeeded (bookkeeping read).
 * @emulator
 */
export function tdxSysRuns(acc: Access, t: TdxModulePlaces): { sysInit: number; sysConfig: number } {
  return { sysInit: acc.peek(seam(t, TDX_SEAM.SYS_INIT_RUNS)), sysConfig: acc.peek(seam(t, TDX_SEAM.SYS_CONFIG_RUNS)) };
}

/**
 * The TD's key state in the module (bookkeeping read): its KOT state and the packages whose
 * memory controller holds its key.
 * @emulator
 */
export function tdxKotSnapshot(acc: Access, t: TdxModulePlaces): { state: number; keyPkgs: number; hkid: number } {
  return { state: acc.peek(seam(t, TDX_SEAM.KOT_STATE)), keyPkgs: acc.peek(seam(t, TDX_SEAM.TD_KEY_PKGS)), hkid: acc.peek(seam(t, TDX_SEAM.KOT_HKID)) };
}

// ---- the host kernel (arch/x86/virt/vmx/tdx/tdx.c) -------------------------------------------

/**
 * A SEAMCALL's status as the errno the kernel returns: success 0, #UD -EACCES, #GP -EOPNOTSUPP,
 * VMfailInvalid (no module) -ENODEV, any module error -EIO.
 * @kvm arch/x86/virt/vmx/tdx/tdx.c sc_retry_prerr
 */
export function seamcallPrerr(status: number): number {
  switch (status >>> 0) {
    case TDX_STATUS.TDX_SUCCESS:
      return 0;
    case TDX_STATUS.TDX_SEAMCALL_VMFAILINVALID:
      return -ERRNO.ENODEV;
    case TDX_STATUS.TDX_SEAMCALL_GP:
      return -ERRNO.EOPNOTSUPP;
    case TDX_STATUS.TDX_SEAMCALL_UD:
      return -ERRNO.EACCES;
    default:
      return -ERRNO.EIO;
  }
}

/**
 * TDH.SYS.INIT exactly once, from whichever CPU gets here first (interrupts off): under the raw
 * spinlock, if not done yet run it and remember its result; every caller gets that result.
 * @kvm arch/x86/virt/vmx/tdx/tdx.c try_init_module_global
 */
export function tryInitModuleGlobal(acc: Access, t: TdxModulePlaces, cpu: number): number {
  const lock = host(t, TDX_HOST.SYSINIT_LOCK);
  spinLock(acc, lock, 'tdx:sysinit-lock');
  try {
    if (acc.readOnce(host(t, TDX_HOST.SYSINIT_DONE), 'tdx:sysinit-done-read') === 0) {
      const r = seamcallPrerr(seamcall(acc, t, cpu, TdxLeaf.SYS_INIT));
      acc.writeOnce(host(t, TDX_HOST.SYSINIT_RET), r, 'tdx:sysinit-ret');
      acc.writeOnce(host(t, TDX_HOST.SYSINIT_DONE), 1, 'tdx:sysinit-done');
    }
    return acc.readOnce(host(t, TDX_HOST.SYSINIT_RET), 'tdx:sysinit-ret-read');
  } finally {
    spinUnlock(acc, lock, 'tdx:sysinit-lock');
  }
}

/**
 * Make this CPU ready for SEAMCALLs (runs on `cpu`, interrupts off): nothing if done before;
 * else the global init (once) and TDH.SYS.LP.INIT, then mark the CPU initialised.
 * @kvm arch/x86/virt/vmx/tdx/tdx.c tdx_cpu_enable
 */
export function tdxCpuEnable(acc: Access, t: TdxModulePlaces, cpu: number): number {
  const flag = perCpuWord(t.hostCpu, cpu, TDX_HOST_CPU.LP_INITIALIZED);
  if (acc.readOnce(flag, 'tdx:lp-initialized-read') !== 0) return 0;
  let r = tryInitModuleGlobal(acc, t, cpu);
  if (r !== 0) return r;
  r = seamcallPrerr(seamcall(acc, t, cpu, TdxLeaf.SYS_LP_INIT));
  if (r !== 0) return r;
  acc.writeOnce(flag, 1, 'tdx:lp-initialized-set');
  return 0;
}

/**
 * TDH.SYS.CONFIG (TDMRs and the global KeyID) from the calling thread's CPU.
 * @kvm arch/x86/virt/vmx/tdx/tdx.c config_tdx_module
 */
export function configTdxModule(acc: Access, t: TdxModulePlaces, cpu: number): number {
  return onCpu(acc, t.cpuhp, cpu, () => seamcallPrerr(seamcall(acc, t, cpu, TdxLeaf.SYS_CONFIG)));
}

/**
 * TDH.SYS.KEY.CONFIG once per package, on the first online CPU of each package, one CPU at a
 * time (smp_call_on_cpu); stops at the first error.
 * @kvm arch/x86/virt/vmx/tdx/tdx.c config_global_keyid
 */
export function configGlobalKeyid(acc: Access, t: TdxModulePlaces): number {
  let packages = 0;
  let ret = -ERRNO.EINVAL;
  for (const c of onlineCpus(acc, t.cpuhp)) {
    const bit = 1 << topologyPhysicalPackageId(acc, t.cpuhp, c);
    if (packages & bit) continue;
    packages |= bit;
    ret = smpCallFunctionSingle(acc, t.cpuhp, c, () => seamcallPrerr(seamcall(acc, t, c, TdxLeaf.SYS_KEY_CONFIG)));
    if (ret !== 0) break;
  }
  return ret;
}

/**
 * Initialise the module: TDH.SYS.CONFIG, then the global key on every package. (Reading the
 * module's metadata, building the TDMRs and TDH.SYS.TDMR.INIT are not modelled.)
 * @kvm arch/x86/virt/vmx/tdx/tdx.c init_tdx_module
 */
export function initTdxModule(acc: Access, t: TdxModulePlaces, cpu: number): number {
  const r = configTdxModule(acc, t, cpu);
  if (r !== 0) return r;
  return configGlobalKeyid(acc, t);
}

/**
 * Initialise the module once (callers must hold the hotplug lock and have run VMXON and
 * tdx_cpu_enable on every online CPU): under tdx_module_lock, UNINITIALIZED → init →
 * INITIALIZED or ERROR; INITIALIZED → 0; ERROR → -EINVAL. `cpu` is the calling thread's CPU.
 * @kvm arch/x86/virt/vmx/tdx/tdx.c tdx_enable (__tdx_enable)
 */
export function tdxEnable(acc: Access, t: TdxModulePlaces, cpu: number): number {
  const lock = host(t, TDX_HOST.MODULE_LOCK);
  mutexLock(acc, lock, 'tdx_module_lock');
  try {
    const status = host(t, TDX_HOST.MODULE_STATUS);
    switch (acc.readOnce(status, 'tdx:module-status-read')) {
      case TdxModuleStatus.UNINITIALIZED: {
        const r = initTdxModule(acc, t, cpu);
        acc.writeOnce(status, r === 0 ? TdxModuleStatus.INITIALIZED : TdxModuleStatus.ERROR, 'tdx:module-status-write');
        return r;
      }
      case TdxModuleStatus.INITIALIZED:
        return 0;
      default:
        return -ERRNO.EINVAL;
    }
  } finally {
    mutexUnlock(acc, lock, 'tdx_module_lock');
  }
}

/**
 * tdx_module_status now (a racy read).
 * @kvm arch/x86/virt/vmx/tdx/tdx.c tdx_module_status
 */
export function tdxModuleStatus(acc: Access, t: TdxModulePlaces): number {
  return acc.readOnce(host(t, TDX_HOST.MODULE_STATUS), 'tdx:module-status-read');
}

/**
 * Allocate a guest KeyID (HKID) from the pool; -ENOSPC when none is left.
 * @kvm arch/x86/virt/vmx/tdx/tdx.c tdx_guest_keyid_alloc (ida_alloc_range)
 */
export function tdxGuestKeyidAlloc(acc: Access, t: TdxModulePlaces): number {
  const pool = host(t, TDX_HOST.KEYID_POOL);
  for (;;) {
    const m = acc.readOnce(pool, 'tdx:keyid-pool');
    let i = 0;
    while (i < TDX_NR_GUEST_KEYIDS && m & (1 << i)) i++;
    if (i === TDX_NR_GUEST_KEYIDS) return -ERRNO.ENOSPC;
    if (acc.cmpxchg(pool, m, m | (1 << i), 'tdx:keyid-pool') === m) return TDX_GUEST_KEYID_START + i;
  }
}

/**
 * Return a guest KeyID to the pool.
 * @kvm arch/x86/virt/vmx/tdx/tdx.c tdx_guest_keyid_free (ida_free)
 */
export function tdxGuestKeyidFree(acc: Access, t: TdxModulePlaces, keyid: number): void {
  acc.atomicAnd(host(t, TDX_HOST.KEYID_POOL), ~(1 << (keyid - TDX_GUEST_KEYID_START)), 'tdx:keyid-pool');
}
