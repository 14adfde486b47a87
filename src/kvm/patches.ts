/**
 * Bugs as patches. A buggy variant of a race is not a second copy of the mechanism: it is a small,
 * named change to one step of the shared KVM or hardware code (`vmx_vcpu_pi_put` without the ON
 * re-check, `vcpu_enter_guest` without the barrier after the mode store, …). The code at that step
 * asks `ctx.patches.has(PATCH)`; nothing else differs. Every patch names the upstream commit it
 * reverts, or the proposal or seed-thread version it stands for, so a kernel developer can tell
 * which Linux behaves this way.
 *
 * Patches are registered when the module defining them loads (kvm/, kvm/vmx, kvm/svm, hw/);
 * `kvm/vendors.ts` loads every one of them, so a lookup through {@link findPatch} after importing
 * the vendor registry sees the whole catalogue.
 */
import { badParam } from '../errors.js';

/** Where a patch comes from: what it reverts or what it stands for. */
export interface PatchOrigin {
  /**
   * `revert`: the patch undoes an upstream commit (the buggy code was upstream before it).
   * `proposal`: the patch is a version posted to the list (RFC / vN of a series) that had the bug.
   * `hardware`: the patch describes today's hardware or firmware behaviour; the fixed variant is
   *   a proposed hardware/firmware change, not a kernel fix.
   * `hypothetical`: no kernel ever had it; it shows why a step is needed.
   */
  kind: 'revert' | 'proposal' | 'hardware' | 'hypothetical';
  /** Commit id (12+ hex digits), series name/version, or seed thread file. */
  ref: string;
  /** Commit subject or thread subject. */
  subject: string;
}

/** A named change to one step of the machine's KVM or hardware code. */
export interface KernelPatch {
  /** Patch id, kebab-case, e.g. `vmx-pi-put-no-on-recheck`. */
  readonly id: string;
  /** The function (kernel symbol) or hardware step it changes, e.g. `vmx_vcpu_pi_put`. */
  readonly step: string;
  /** What the patched code does differently, one sentence. */
  readonly summary: string;
  readonly origin: PatchOrigin;
  /** Which Linux behaves like the patched code (e.g. `before v5.19`, `none (RFC v2 only)`). */
  readonly kernel: string;
  /** Machine vendors whose code has this step (`vmx`, `svm`, `tdx`, `savic`); absent = every vendor. */
  readonly vendors?: readonly string[];
}

const registry = new Map<string, KernelPatch>();

/**
 * Register a patch (module load time). Ids are unique.
 * @emulator
 */
export function definePatch(p: KernelPatch): KernelPatch {
  if (!/^[a-z0-9]+(-[a-z0-9]+)*$/.test(p.id)) throw new Error(`patch id "${p.id}" is not kebab-case`);
  if (registry.has(p.id)) throw new Error(`patch "${p.id}" defined twice`);
  registry.set(p.id, p);
  return p;
}

/**
 * Every registered patch, sorted by id (import `kvm/vendors.ts` first to have them all).
 * @emulator
 */
export function allPatches(): KernelPatch[] {
  return [...registry.values()].sort((a, b) => a.id.localeCompare(b.id));
}

/**
 * The patch called `id`; EMU_ERR_BAD_PARAM naming `param` otherwise.
 * @emulator
 */
export function findPatch(id: string, param = 'patch'): KernelPatch {
  const p = registry.get(id);
  if (!p) throw badParam(param, `unknown patch "${id}" (known: ${allPatches().map((x) => x.id).join(', ') || 'none'})`);
  return p;
}

/**
 * The patches a thread's code runs with. Built once per actor from patch ids (they cross threads
 * as strings); `has` is a Set lookup, so an unpatched hot path pays one hash probe.
 * @emulator
 */
export class PatchSet {
  private readonly set: ReadonlySet<string>;
  /** The ids in this set, sorted. */
  readonly ids: readonly string[];
  constructor(ids: Iterable<string> = []) {
    this.set = new Set(ids);
    this.ids = [...this.set].sort();
  }
  /** Is `p` applied? */
  has(p: KernelPatch): boolean {
    return this.set.size !== 0 && this.set.has(p.id);
  }
  /** No patch applied. */
  get empty(): boolean {
    return this.set.size === 0;
  }
}

/** The unpatched machine (every fix in). */
export const NO_PATCHES = new PatchSet();

/**
 * Validate patch ids (each must be registered); returns them sorted and de-duplicated.
 * @emulator
 */
export function checkPatchIds(ids: readonly string[], param = 'patches'): string[] {
  for (const id of ids) findPatch(id, param);
  return [...new Set(ids)].sort();
}
