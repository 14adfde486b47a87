/**
 * Host CPU registers of a pCPU that TD entry/exit touches: the debug registers, IA32_DEBUGCTL,
 * XCR0 / IA32_XSS / PKRU, IA32_KERNEL_GS_BASE, the SYSCALL MSRs, TSC_AUX, IA32_TSX_CTRL and
 * IA32_UMWAIT_CONTROL.
 *
 * Every register is 64 bits wide and is modelled as two consecutive 32-bit words, low word
 * first (PKRU and XCR0 use the low word only, the high word stays 0). A pCPU's registers form a
 * block of {@link HOST_REG_BLOCK_WORDS} words; `HostRegPlaces.regs(p)` gives the block's first
 * word, so the same code runs on scenario scratch words or on a machine layout region:
 *
 * ```
 *  word  0 DR0   2 DR1   4 DR2   6 DR3   8 DR6  10 DR7  12 DEBUGCTL  14 XCR0  16 XSS  18 PKRU
 *       20 KERNEL_GS_BASE  22 STAR  24 LSTAR  26 SYSCALL_MASK  28 TSC_AUX  30 TSX_CTRL
 *       32 UMWAIT_CONTROL  (34..47 unused: the block is three 64-byte lines)
 * ```
 *
 * Reads and writes go through the access layer with race-point labels `msr:<reg>-read` /
 * `msr:<reg>-write` (e.g. `msr:debugctl-write`). A 64-bit write is two plain stores: only code
 * running on the pCPU writes its registers, and host code on other threads reads them only
 * while that pCPU is parked in a hand-off (an interrupt taken), so no read sees half a write.
 */
import type { Access } from '../mem/access.js';
import type { Addr, PcpuId } from '../mem/layout.js';
import { badParam } from '../errors.js';

/** IA32_DEBUGCTL. @sdm SDM vol. 4, table 2-2 (MSR 1D9H) */
export const MSR_IA32_DEBUGCTLMSR = 0x1d9;
/** IA32_XSS. @sdm SDM vol. 4, table 2-2 (MSR DA0H) */
export const MSR_IA32_XSS = 0xda0;
/** IA32_KERNEL_GS_BASE. @sdm SDM vol. 4, table 2-2 (MSR C000_0102H) */
export const MSR_KERNEL_GS_BASE = 0xc0000102;
/** IA32_STAR (SYSCALL/SYSRET selectors in bits 63:32). @sdm SDM vol. 4, table 2-2 (MSR C000_0081H) */
export const MSR_STAR = 0xc0000081;
/** IA32_LSTAR (64-bit SYSCALL entry point). @sdm SDM vol. 4, table 2-2 (MSR C000_0082H) */
export const MSR_LSTAR = 0xc0000082;
/** IA32_FMASK (RFLAGS bits SYSCALL clears; Linux: MSR_SYSCALL_MASK). @sdm SDM vol. 4, table 2-2 (MSR C000_0084H) */
export const MSR_SYSCALL_MASK = 0xc0000084;
/** IA32_TSC_AUX (RDTSCP/RDPID value; Linux: node << 12 | cpu). @sdm SDM vol. 4, table 2-2 (MSR C000_0103H) */
export const MSR_TSC_AUX = 0xc0000103;
/** IA32_TSX_CTRL (RTM_DISABLE bit 0, TSX_CPUID_CLEAR bit 1). @sdm SDM vol. 4, table 2-2 (MSR 122H) */
export const MSR_IA32_TSX_CTRL = 0x122;
/** IA32_UMWAIT_CONTROL (TPAUSE/UMWAIT limits). @sdm SDM vol. 4, table 2-2 (MSR E1H) */
export const MSR_IA32_UMWAIT_CONTROL = 0xe1;

/** DEBUGCTL.LBR (bit 0). @kvm arch/x86/include/asm/msr-index.h DEBUGCTLMSR_LBR */
export const DEBUGCTLMSR_LBR = 1n << 0n;
/** DEBUGCTL.BTF (bit 1). @kvm arch/x86/include/asm/msr-index.h DEBUGCTLMSR_BTF */
export const DEBUGCTLMSR_BTF = 1n << 1n;
/** DEBUGCTL.FREEZE_LBRS_ON_PMI (bit 11). @kvm arch/x86/include/asm/msr-index.h DEBUGCTLMSR_FREEZE_LBRS_ON_PMI */
export const DEBUGCTLMSR_FREEZE_LBRS_ON_PMI = 1n << 11n;
/** DEBUGCTL.FREEZE_PERFMON_ON_PMI (bit 12). @kvm arch/x86/include/asm/msr-index.h DEBUGCTLMSR_FREEZE_PERFMON_ON_PMI */
export const DEBUGCTLMSR_FREEZE_PERFMON_ON_PMI = 1n << 12n;
/** DEBUGCTL.FREEZE_WHILE_SMM (bit 14). @kvm arch/x86/include/asm/msr-index.h DEBUGCTLMSR_FREEZE_IN_SMM */
export const DEBUGCTLMSR_FREEZE_IN_SMM = 1n << 14n;

/** DR6 after RESET/INIT, and what Linux writes back (all reserved-1 bits). @kvm arch/x86/include/asm/debugreg.h DR6_RESERVED */
export const DR6_RESERVED = 0xffff0ff0n;
/** DR7 after RESET/INIT: only the fixed-1 bit 10. @kvm arch/x86/include/uapi/asm/debugreg.h DR7_FIXED_1 */
export const DR7_FIXED_1 = 0x400n;
/** DR7 local and global enable bits of the four breakpoints (L0..G3). @kvm arch/x86/include/uapi/asm/debugreg.h DR_ENABLE_SIZE (bits 7:0) */
export const DR7_ENABLE_MASK = 0xffn;
/** DR7 global enable bits G0..G3, what hw_breakpoint_active() tests. @kvm arch/x86/include/uapi/asm/debugreg.h DR_GLOBAL_ENABLE_MASK */
export const DR_GLOBAL_ENABLE_MASK = 0xaan;

/** XCR0 bits used here. @kvm arch/x86/include/asm/fpu/types.h enum xfeature (XFEATURE_MASK_*) */
export const XFEATURE_MASK = {
  FP: 1n << 0n,
  SSE: 1n << 1n,
  YMM: 1n << 2n,
  OPMASK: 1n << 5n,
  ZMM_HI256: 1n << 6n,
  HI16_ZMM: 1n << 7n,
  PKRU: 1n << 9n,
  CET_USER: 1n << 11n,
  CET_KERNEL: 1n << 12n,
} as const;

/** Largest value a 64-bit register holds. */
const U64_MAX = (1n << 64n) - 1n;

/** The registers of this model. @sdm SDM vol. 3 and vol. 4 (the registers listed in HOST_REG) */
export type HostRegName =
  | 'DR0'
  | 'DR1'
  | 'DR2'
  | 'DR3'
  | 'DR6'
  | 'DR7'
  | 'DEBUGCTL'
  | 'XCR0'
  | 'XSS'
  | 'PKRU'
  | 'KERNEL_GS_BASE'
  | 'STAR'
  | 'LSTAR'
  | 'SYSCALL_MASK'
  | 'TSC_AUX'
  | 'TSX_CTRL'
  | 'UMWAIT_CONTROL';

/**
 * Word offset of each register's low word inside a pCPU's register block (high word at +1).
 * @sdm SDM vol. 3, "Debug Registers", "XSAVE-Managed State", "Protection Keys"; SDM vol. 4 MSR tables
 */
export const HOST_REG: Readonly<Record<HostRegName, number>> = {
  DR0: 0,
  DR1: 2,
  DR2: 4,
  DR3: 6,
  DR6: 8,
  DR7: 10,
  DEBUGCTL: 12,
  XCR0: 14,
  XSS: 16,
  PKRU: 18,
  KERNEL_GS_BASE: 20,
  STAR: 22,
  LSTAR: 24,
  SYSCALL_MASK: 26,
  TSC_AUX: 28,
  TSX_CTRL: 30,
  UMWAIT_CONTROL: 32,
};
/** Words of one pCPU's register block (three 64-byte lines). @emulator */
export const HOST_REG_BLOCK_WORDS = 48;

/** How the kernel reads and writes a register. @sdm SDM vol. 2, MOV DR / XGETBV / XSETBV / RDPKRU / WRPKRU / RDMSR / WRMSR */
export type HostRegAccess = 'mov-dr' | 'xgetbv-xsetbv' | 'rdpkru-wrpkru' | 'rdmsr-wrmsr';

/** One register: where it lives, how it is accessed, its value after INIT. @sdm SDM vol. 4 MSR tables; vol. 3 "Processor State After Reset / INIT" */
export interface HostRegInfo {
  name: HostRegName;
  /** Word offset of the low word in the pCPU block. */
  word: number;
  /** MSR index for RDMSR/WRMSR, or null (debug registers, XCR0, PKRU). */
  msr: number | null;
  access: HostRegAccess;
  /** Architectural value after RESET/INIT. */
  init: bigint;
  /** Race-point labels of a read and a write. */
  readLabel: string;
  writeLabel: string;
}

function info(name: HostRegName, msr: number | null, access: HostRegAccess, init: bigint): HostRegInfo {
  const l = name.toLowerCase().replace(/_/g, '-');
  return { name, word: HOST_REG[name], msr, access, init, readLabel: `msr:${l}-read`, writeLabel: `msr:${l}-write` };
}

/**
 * Every register with its MSR number and architectural RESET/INIT value (SDM vol. 3 table
 * "IA-32 and Intel 64 Processor States Following Power-up, Reset, or INIT"; XCR0 resets to 1,
 * x87 always enabled; DR6 to FFFF0FF0H, DR7 to 400H; the MSRs listed here to 0).
 * @sdm SDM vol. 3, "Processor State After Reset / INIT" and vol. 4 MSR tables
 */
export const HOST_REGS: readonly HostRegInfo[] = [
  info('DR0', null, 'mov-dr', 0n),
  info('DR1', null, 'mov-dr', 0n),
  info('DR2', null, 'mov-dr', 0n),
  info('DR3', null, 'mov-dr', 0n),
  info('DR6', null, 'mov-dr', DR6_RESERVED),
  info('DR7', null, 'mov-dr', DR7_FIXED_1),
  info('DEBUGCTL', MSR_IA32_DEBUGCTLMSR, 'rdmsr-wrmsr', 0n),
  info('XCR0', null, 'xgetbv-xsetbv', XFEATURE_MASK.FP),
  info('XSS', MSR_IA32_XSS, 'rdmsr-wrmsr', 0n),
  info('PKRU', null, 'rdpkru-wrpkru', 0n),
  info('KERNEL_GS_BASE', MSR_KERNEL_GS_BASE, 'rdmsr-wrmsr', 0n),
  info('STAR', MSR_STAR, 'rdmsr-wrmsr', 0n),
  info('LSTAR', MSR_LSTAR, 'rdmsr-wrmsr', 0n),
  info('SYSCALL_MASK', MSR_SYSCALL_MASK, 'rdmsr-wrmsr', 0n),
  info('TSC_AUX', MSR_TSC_AUX, 'rdmsr-wrmsr', 0n),
  info('TSX_CTRL', MSR_IA32_TSX_CTRL, 'rdmsr-wrmsr', 0n),
  info('UMWAIT_CONTROL', MSR_IA32_UMWAIT_CONTROL, 'rdmsr-wrmsr', 0n),
];

const BY_NAME = new Map(HOST_REGS.map((r) => [r.name, r]));
const BY_MSR = new Map(HOST_REGS.filter((r) => r.msr !== null).map((r) => [r.msr!, r]));

/** Where the register blocks live: the first word of pCPU p's block. @emulator */
export interface HostRegPlaces {
  regs(p: PcpuId): Addr;
}

/**
 * A register by name (EMU_ERR_BAD_PARAM naming `reg` for an unknown one).
 * @emulator
 */
export function hostRegInfo(name: string): HostRegInfo {
  const r = BY_NAME.get(name as HostRegName);
  if (!r) throw badParam('reg', `"${name}" is not a modelled host register (known: ${HOST_REGS.map((x) => x.name).join(', ')})`);
  return r;
}

/**
 * The register an MSR index names (EMU_ERR_BAD_PARAM naming `msr` for one not modelled).
 * @emulator
 */
export function hostRegByMsr(msr: number): HostRegInfo {
  const r = BY_MSR.get(msr);
  if (!r) throw badParam('msr', `0x${msr.toString(16)} is not a modelled MSR (known: ${[...BY_MSR.keys()].map((m) => '0x' + m.toString(16)).join(', ')})`);
  return r;
}

/** Split a 64-bit value into its low and high 32-bit words (as stored). */
function lo32(v: bigint): number {
  return Number(v & 0xffffffffn) | 0;
}
function hi32(v: bigint): number {
  return Number((v >> 32n) & 0xffffffffn) | 0;
}
/**
 * The 64-bit value of a (low, high) word pair as stored in machine memory.
 * @emulator
 */
export function u64FromWords(lo: number, hi: number): bigint {
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

/**
 * Check that a value fits a 64-bit register (EMU_ERR_BAD_PARAM naming `value` otherwise).
 * @emulator
 */
export function checkU64(v: bigint, what = 'value'): bigint {
  if (v < 0n || v > U64_MAX) throw badParam(what, `0x${v.toString(16)} does not fit a 64-bit register`);
  return v;
}

/**
 * Read a 64-bit value kept as a (low, high) word pair at `addr` through the access layer.
 * @emulator
 */
export function readU64(acc: Access, addr: Addr, label: string): bigint {
  const lo = acc.readOnce(addr, label);
  const hi = acc.readOnce((addr + 1) as Addr, label);
  return u64FromWords(lo, hi);
}

/**
 * Write a 64-bit value as a (low, high) word pair at `addr` (two WRITE_ONCEs).
 * @emulator
 */
export function writeU64(acc: Access, addr: Addr, v: bigint, label: string): void {
  acc.writeOnce(addr, lo32(v), label);
  acc.writeOnce((addr + 1) as Addr, hi32(v), label);
}

/**
 * Emulator bookkeeping read of a (low, high) pair (snapshots for checkers; not a race point).
 * @emulator
 */
export function peekU64(acc: Access, addr: Addr): bigint {
  return u64FromWords(acc.peek(addr), acc.peek((addr + 1) as Addr));
}

/**
 * Emulator bookkeeping write of a (low, high) pair (initial state and resets; not a race point).
 * @emulator
 */
export function pokeU64(acc: Access, addr: Addr, v: bigint): void {
  acc.poke(addr, lo32(v));
  acc.poke((addr + 1) as Addr, hi32(v));
}

/**
 * Read a register of pCPU p as code on p would (RDMSR, MOV from DR, XGETBV, RDPKRU).
 * @sdm SDM vol. 2, RDMSR / MOV (debug registers) / XGETBV / RDPKRU
 */
export function readHostReg(acc: Access, P: HostRegPlaces, p: PcpuId, name: HostRegName): bigint {
  const r = BY_NAME.get(name)!;
  return readU64(acc, (P.regs(p) + r.word) as Addr, r.readLabel);
}

/**
 * Write a register of pCPU p as code on p would (WRMSR, MOV to DR, XSETBV, WRPKRU).
 * @sdm SDM vol. 2, WRMSR / MOV (debug registers) / XSETBV / WRPKRU
 */
export function writeHostReg(acc: Access, P: HostRegPlaces, p: PcpuId, name: HostRegName, v: bigint): void {
  const r = BY_NAME.get(name)!;
  writeU64(acc, (P.regs(p) + r.word) as Addr, checkU64(v), r.writeLabel);
}

/**
 * RDMSR on pCPU p by MSR index (EMU_ERR_BAD_PARAM naming `msr` for one not modelled).
 * @kvm arch/x86/include/asm/msr.h rdmsrq
 */
export function rdmsr(acc: Access, P: HostRegPlaces, p: PcpuId, msr: number): bigint {
  return readHostReg(acc, P, p, hostRegByMsr(msr).name);
}

/**
 * WRMSR on pCPU p by MSR index (EMU_ERR_BAD_PARAM naming `msr` for one not modelled).
 * @kvm arch/x86/include/asm/msr.h wrmsrq
 */
export function wrmsr(acc: Access, P: HostRegPlaces, p: PcpuId, msr: number, v: bigint): void {
  writeHostReg(acc, P, p, hostRegByMsr(msr).name, v);
}

/**
 * Put pCPU p's registers in their RESET/INIT state, then apply `values` (the boot-time host
 * values). Emulator set-up: plain pokes, not race points.
 * @sdm SDM vol. 3, "Processor State After Reset / INIT"
 */
export function initHostRegs(acc: Access, P: HostRegPlaces, p: PcpuId, values: Partial<Record<HostRegName, bigint>> = {}): void {
  for (const r of HOST_REGS) pokeU64(acc, (P.regs(p) + r.word) as Addr, checkU64(values[r.name] ?? r.init));
}

/** Every register's value, by name. @emulator */
export type HostRegs = Readonly<Record<HostRegName, bigint>>;

/**
 * A snapshot of pCPU p's registers for checkers (emulator bookkeeping reads, not race points).
 * @emulator
 */
export function snapshotHostRegs(acc: Access, P: HostRegPlaces, p: PcpuId): HostRegs {
  const out = {} as Record<HostRegName, bigint>;
  for (const r of HOST_REGS) out[r.name] = peekU64(acc, (P.regs(p) + r.word) as Addr);
  return out;
}
