/**
 * KVM's per-CPU user-return MSR cache (struct kvm_user_return_msrs, arch/x86/kvm/x86.c).
 *
 * MSRs that only user mode consumes (the SYSCALL MSRs, TSC_AUX) are not restored when a vCPU
 * exits; the host value is written back lazily, by a user-return notifier, just before the CPU
 * returns to user mode. Per CPU, KVM keeps for every slot the host value (`host`, read when the
 * CPU came online) and what it believes the MSR holds now (`curr`), plus whether its notifier is
 * registered. Everything hinges on `curr` being the truth: `kvm_set_user_return_msr` skips the
 * WRMSR when the new value equals `curr`, and the notifier skips slots where `curr == host`.
 *
 * Block layout (two 64-byte lines per pCPU; 64-bit values as (low, high) word pairs):
 *
 * ```
 *  word 0        registered (notifier on this CPU's user-return list)
 *  word 16 + 4s  values[s].host (lo, hi)     word 18 + 4s  values[s].curr (lo, hi)
 * ```
 *
 * Slots follow `kvm_uret_msrs_list` as vmx_setup_user_return_msrs() fills it, restricted to the
 * four MSRs TDX clobbers: SYSCALL_MASK, LSTAR, TSC_AUX, STAR (the kernel also has CSTAR, EFER
 * and TSX_CTRL slots; they play no part here).
 */
import type { Access } from '../mem/access.js';
import type { Addr, PcpuId } from '../mem/layout.js';
import { badParam } from '../errors.js';
import { checkU64, hostRegByMsr, peekU64, pokeU64, readHostReg, readU64, writeHostReg, writeU64, type HostRegName, type HostRegPlaces, MSR_LSTAR, MSR_STAR, MSR_SYSCALL_MASK, MSR_TSC_AUX } from './msr.js';

/**
 * The user-return MSR list, by slot.
 * @kvm arch/x86/kvm/x86.c kvm_uret_msrs_list (filled by arch/x86/kvm/vmx/vmx.c vmx_setup_user_return_msrs)
 */
export const KVM_URET_MSRS: readonly number[] = [MSR_SYSCALL_MASK, MSR_LSTAR, MSR_TSC_AUX, MSR_STAR];
/** The register of each slot. @kvm arch/x86/kvm/x86.c kvm_uret_msrs_list */
export const KVM_URET_REGS: readonly HostRegName[] = KVM_URET_MSRS.map((m) => hostRegByMsr(m).name);

/** Word offsets inside a pCPU's user-return block. @kvm arch/x86/kvm/x86.c struct kvm_user_return_msrs */
export const URET = {
  /** msrs->registered. */
  REGISTERED: 0,
  /** msrs->values[0]; slot s at VALUES + s * SLOT_WORDS. */
  VALUES: 16,
  /** Words per slot: host (lo, hi), curr (lo, hi). */
  SLOT_WORDS: 4,
  HOST: 0,
  CURR: 2,
} as const;
/** Words of one pCPU's user-return block. @emulator */
export const URET_BLOCK_WORDS = 32;

/** Where the blocks live: pCPU p's registers and its user-return cache. @emulator */
export interface UretPlaces extends HostRegPlaces {
  uret(p: PcpuId): Addr;
}

function slotAddr(P: UretPlaces, p: PcpuId, slot: number, field: number): Addr {
  return (P.uret(p) + URET.VALUES + slot * URET.SLOT_WORDS + field) as Addr;
}

/**
 * Check a slot index (EMU_ERR_BAD_PARAM naming `slot` when out of range).
 * @emulator
 */
export function checkUretSlot(slot: number): number {
  if (!Number.isInteger(slot) || slot < 0 || slot >= KVM_URET_MSRS.length) throw badParam('slot', `${slot} (must be an integer in 0..${KVM_URET_MSRS.length - 1})`);
  return slot;
}

/**
 * The slot of an MSR in the user-return list, or -1.
 * @kvm arch/x86/kvm/x86.c kvm_find_user_return_msr
 */
export function kvmFindUserReturnMsr(msr: number): number {
  return KVM_URET_MSRS.indexOf(msr);
}

/**
 * CPU online (or KVM load): host = curr = the MSR's current value for every slot, notifier not
 * registered.
 * @kvm arch/x86/kvm/x86.c kvm_user_return_msr_cpu_online
 */
export function kvmUserReturnMsrCpuOnline(acc: Access, P: UretPlaces, p: PcpuId): void {
  for (let s = 0; s < KVM_URET_MSRS.length; s++) {
    const v = readHostReg(acc, P, p, KVM_URET_REGS[s]!);
    writeU64(acc, slotAddr(P, p, s, URET.HOST), v, 'uret:host-write');
    writeU64(acc, slotAddr(P, p, s, URET.CURR), v, 'uret:curr-write');
  }
  acc.writeOnce((P.uret(p) + URET.REGISTERED) as Addr, 0, 'uret:registered-write');
}

/**
 * Register the user-return notifier on this CPU if it is not yet.
 * @kvm arch/x86/kvm/x86.c kvm_user_return_register_notifier
 */
export function kvmUserReturnRegisterNotifier(acc: Access, P: UretPlaces, p: PcpuId): void {
  const reg = (P.uret(p) + URET.REGISTERED) as Addr;
  if (acc.readOnce(reg, 'uret:registered-read') === 0) acc.writeOnce(reg, 1, 'uret:registered-write');
}

/**
 * Load `value` (merged with the host value under `mask`) into slot's MSR unless the cache says
 * the MSR already holds it; then curr = value and register the notifier. Returns 0 (the kernel
 * returns 1 only when WRMSR faults, which cannot happen here).
 * @kvm arch/x86/kvm/x86.c kvm_set_user_return_msr
 */
export function kvmSetUserReturnMsr(acc: Access, P: UretPlaces, p: PcpuId, slot: number, value: bigint, mask: bigint = (1n << 64n) - 1n): number {
  checkUretSlot(slot);
  checkU64(value);
  checkU64(mask, 'mask');
  const host = readU64(acc, slotAddr(P, p, slot, URET.HOST), 'uret:host-read');
  const v = (value & mask) | (host & ~mask & ((1n << 64n) - 1n));
  if (v === readU64(acc, slotAddr(P, p, slot, URET.CURR), 'uret:curr-read')) return 0;
  writeHostReg(acc, P, p, KVM_URET_REGS[slot]!, v);
  writeU64(acc, slotAddr(P, p, slot, URET.CURR), v, 'uret:curr-write');
  kvmUserReturnRegisterNotifier(acc, P, p);
  return 0;
}

/**
 * Record that something other than KVM (the TDX module) left `value` in slot's MSR: curr =
 * value, no WRMSR, and register the notifier so the host value is written back before user mode.
 * @kvm arch/x86/kvm/x86.c kvm_user_return_msr_update_cache
 */
export function kvmUserReturnMsrUpdateCache(acc: Access, P: UretPlaces, p: PcpuId, slot: number, value: bigint): void {
  checkUretSlot(slot);
  writeU64(acc, slotAddr(P, p, slot, URET.CURR), checkU64(value), 'uret:curr-write');
  kvmUserReturnRegisterNotifier(acc, P, p);
}

/**
 * The notifier: unregister, then for every slot whose curr differs from host, WRMSR the host
 * value and set curr = host. Returns how many MSRs it wrote.
 * @kvm arch/x86/kvm/x86.c kvm_on_user_return
 */
export function kvmOnUserReturn(acc: Access, P: UretPlaces, p: PcpuId): number {
  acc.writeOnce((P.uret(p) + URET.REGISTERED) as Addr, 0, 'uret:registered-write');
  let written = 0;
  for (let s = 0; s < KVM_URET_MSRS.length; s++) {
    const host = readU64(acc, slotAddr(P, p, s, URET.HOST), 'uret:host-read');
    if (host === readU64(acc, slotAddr(P, p, s, URET.CURR), 'uret:curr-read')) continue;
    writeHostReg(acc, P, p, KVM_URET_REGS[s]!, host);
    writeU64(acc, slotAddr(P, p, s, URET.CURR), host, 'uret:curr-write');
    written++;
  }
  return written;
}

/**
 * Return to user mode on pCPU p: run the user-return notifiers registered on this CPU (KVM's is
 * the only one here). Returns how many MSRs the notifier wrote (0 if none was registered).
 * @kvm kernel/user-return-notifier.c fire_user_return_notifiers (from arch/x86/include/asm/entry-common.h arch_exit_to_user_mode_prepare)
 */
export function fireUserReturnNotifiers(acc: Access, P: UretPlaces, p: PcpuId): number {
  if (acc.readOnce((P.uret(p) + URET.REGISTERED) as Addr, 'uret:registered-read') === 0) return 0;
  return kvmOnUserReturn(acc, P, p);
}

/** One slot of a user-return cache snapshot: the cache's two values and what the MSR holds. @kvm arch/x86/kvm/x86.c struct kvm_user_return_msr_values */
export interface UretSlotSnapshot {
  reg: HostRegName;
  host: bigint;
  curr: bigint;
  /** The MSR's value in hardware. */
  hw: bigint;
}

/** A pCPU's user-return cache and the MSRs it describes, at one moment. @kvm arch/x86/kvm/x86.c struct kvm_user_return_msrs */
export interface UretCacheSnapshot {
  registered: boolean;
  slots: readonly UretSlotSnapshot[];
}

/**
 * Snapshot pCPU p's cache and MSRs for checkers (emulator bookkeeping reads, not race points).
 * @emulator
 */
export function snapshotUretCache(acc: Access, P: UretPlaces, p: PcpuId): UretCacheSnapshot {
  const regs = P.regs(p);
  return {
    registered: acc.peek((P.uret(p) + URET.REGISTERED) as Addr) !== 0,
    slots: KVM_URET_REGS.map((reg, s) => ({
      reg,
      host: peekU64(acc, slotAddr(P, p, s, URET.HOST)),
      curr: peekU64(acc, slotAddr(P, p, s, URET.CURR)),
      hw: peekU64(acc, (regs + hostRegByMsr(KVM_URET_MSRS[s]!).word) as Addr),
    })),
  };
}

/**
 * Set pCPU p's cache directly (tests and resets; plain pokes, not race points).
 * @emulator
 */
export function pokeUretCache(acc: Access, P: UretPlaces, p: PcpuId, registered: boolean, slots: readonly { host: bigint; curr: bigint }[]): void {
  acc.poke((P.uret(p) + URET.REGISTERED) as Addr, registered ? 1 : 0);
  slots.forEach((s, i) => {
    checkUretSlot(i);
    pokeU64(acc, slotAddr(P, p, i, URET.HOST), checkU64(s.host));
    pokeU64(acc, slotAddr(P, p, i, URET.CURR), checkU64(s.curr));
  });
}
