/**
 * The catalogue's bugs as patches for any run: `ID:VARIANT` names a catalogue variant, whose
 * patches (kvm/patches.ts) the ordinary machine can run with (`hvemu run --bug ID:VARIANT`,
 * `Machine.create({ patches: bugPatches('ID:VARIANT') })`).
 */
import { badParam } from '../errors.js';
import type { KernelPatch, PatchOrigin } from '../kvm/patches.js';
import { findVariant, variantExpected, type ScenarioDef, type ScenarioVariant } from './define.js';
import { findScenario, SCENARIOS } from './index.js';

/**
 * The patch ids of catalogue variant `spec` (`ID:VARIANT`, e.g. `pi-wakeup-block:buggy`).
 * EMU_ERR_BAD_PARAM naming `param` for a malformed spec, an unknown scenario or variant, or a
 * variant that is no patch (the fixed one, or one whose scenario has no patch for it yet).
 * @emulator
 */
export function bugPatches(spec: string, param = 'bug'): string[] {
  const m = /^([a-z0-9-]+):([a-z0-9-]+)$/.exec(spec);
  if (!m) throw badParam(param, `"${spec}" is not ID:VARIANT (e.g. pi-wakeup-block:buggy; \`hvemu list\` shows them)`);
  let def: ScenarioDef;
  try {
    def = findScenario(m[1]!);
  } catch {
    throw badParam(param, `unknown scenario "${m[1]}" in "${spec}" (known: ${SCENARIOS.map((x) => x.id).join(', ')})`);
  }
  let v: ScenarioVariant;
  try {
    v = findVariant(def, m[2]!);
  } catch {
    throw badParam(param, `"${m[2]}" is not a variant of ${def.id} (variants: ${def.variants.map((x) => x.name).join(', ')})`);
  }
  const patches = v.patches ?? [];
  if (patches.length === 0) throw badParam(param, `${spec} applies no patch (${v.buggy ? 'its bug is not a patch on the machine code' : 'it is the fixed code: run without --bug'})`);
  return patches.map((p) => p.id);
}

/** What `hvemu list --json` says of one variant. */
export interface VariantInfo {
  name: string;
  buggy: boolean;
  /** The one step in which it differs from the fixed variant. */
  differs: string;
  /** The patch id when the variant is exactly one patch, else null (fixed: null). */
  patch: string | null;
  /** Every patch of the variant, with what it changes. */
  patches: { id: string; step: string; summary: string }[];
  /** What the variant's patches revert or stand for (one entry per patch). */
  reverts: PatchOrigin[];
  /** `fails` (some schedule breaks an invariant) or `holds`. */
  expected: 'fails' | 'holds';
  /** Which Linux (module, hardware) behaves this way. */
  kernel: string | null;
}

/** The list entry of a variant. @emulator */
export function variantInfo(v: ScenarioVariant): VariantInfo {
  const ps: readonly KernelPatch[] = v.patches ?? [];
  return {
    name: v.name,
    buggy: v.buggy,
    differs: v.differs,
    patch: ps.length === 1 ? ps[0]!.id : null,
    patches: ps.map((p) => ({ id: p.id, step: p.step, summary: p.summary })),
    reverts: ps.map((p) => p.origin),
    expected: variantExpected(v),
    kernel: v.kernel ?? (ps.length > 0 ? ps.map((p) => p.kernel).join('; ') : null),
  };
}
