/**
 * What a race scenario is: a litmus-style experiment over a slice of the machine, run by one
 * actor per role on real worker threads in rounds (one round = one iteration):
 *
 *   all roles: barrier(start) -> round(ctx, r) -> barrier(end)
 *   role 0:    check(ctx, r) (pure invariant checkers) -> reset for the next round
 *
 * Buggy and fixed variants run the same code except one named step (`differs`); window widening
 * (seeded spins at race points, `widen`) is the same for every variant.
 */
import type { Access } from '../mem/access.js';
import type { Layout, LayoutConfig } from '../mem/layout.js';
import type { Prng } from '../util/prng.js';
import type { Violation } from '../invariants/checks.js';
import { badParam } from '../errors.js';
import type { KernelPatch, PatchSet } from '../kvm/patches.js';

/** One variant of a scenario. */
export interface ScenarioVariant {
  /** `buggy`, `fixed`, `buggy-<what>`, or `<what>` for another variant expected to hold (e.g. a posted version that has no bug in this model). */
  name: string;
  buggy: boolean;
  /** The one step in which this variant differs from the fixed one (empty for `fixed`). */
  differs: string;
  /**
   * The named patches (kvm/patches.ts) that make this variant: applied to the shared KVM and
   * hardware code, they are the whole difference from `fixed`. Empty for `fixed`.
   */
  patches?: readonly KernelPatch[];
  /**
   * What the scenario's invariants are expected to do under this variant: `fails` (some
   * schedule breaks one) or `holds`. Default: `fails` for buggy variants, `holds` otherwise.
   */
  expected?: 'fails' | 'holds';
  /** Which Linux (or module/hardware) behaves like this variant, e.g. `v6.10 and later`. */
  kernel?: string;
}

/** The expected outcome of a variant (explicit, or from `buggy`). @emulator */
export function variantExpected(v: ScenarioVariant): 'fails' | 'holds' {
  return v.expected ?? (v.buggy ? 'fails' : 'holds');
}

/** A named invariant the scenario checks. */
export interface ScenarioInvariant {
  /** Name of the pure checker, e.g. `savicNoLostAllowedVector`. */
  name: string;
  description: string;
  /** Variants the invariant is checked in (default: all). */
  variants?: readonly string[];
}

/** Parameters of one race run. */
export interface ScenarioParams {
  variant: ScenarioVariant;
  /** vCPUs of the modelled VM (what `--vcpus` sets). */
  vcpus: number;
  seed: number;
}

/** What an actor of a scenario gets on its worker. */
export interface ScenarioCtx {
  readonly acc: Access;
  readonly L: Layout;
  readonly params: ScenarioParams;
  /** This actor's role name and index in `roles()`. */
  readonly role: string;
  readonly index: number;
  readonly roles: readonly string[];
  /** Seeded per actor. */
  readonly prng: Prng;
  /** The variant's patches (pass to the machine's functions that take a PatchSet). */
  readonly patches: PatchSet;
}

/** A scenario of the race catalogue. */
export interface ScenarioDef {
  /** CLI id, e.g. `savic-requested-irr`. */
  id: string;
  title: string;
  /** Seed thread file in shared/seeds (a scenario of your own: any reference, or ''). */
  seedFile: string;
  /**
   * A scenario outside the catalogue: the URL of the ES module that exports this definition
   * (`import.meta.url`), so that every worker thread can load it (`runRace(def, …)`).
   */
  module?: string;
  /** Variants; the first buggy one is the default. */
  variants: readonly ScenarioVariant[];
  invariants: readonly ScenarioInvariant[];
  /** Window widening applied to every variant alike. */
  widen: { probability: number; maxSpins: number; points: readonly string[] };
  /** Default, minimum and maximum `vcpus`. */
  vcpus: { default: number; min: number; max: number };
  /** Role names in actor order; role 0 checks and resets. */
  roles(p: ScenarioParams): string[];
  /** Machine memory the scenario needs (scratchWords, savic, ...). */
  layout(p: ScenarioParams): Omit<LayoutConfig, 'extraActors' | 'ringRecords'>;
  /** Initial machine state, written by the main thread before the actors start. */
  init(acc: Access, p: ScenarioParams): void;
  /** One role's part of round r. */
  round(ctx: ScenarioCtx, r: number): void;
  /** Role 0, after every round: the invariant checkers' verdict on this round. */
  check(ctx: ScenarioCtx, r: number): Violation[];
  /** Role 0, after the check: put the machine back for the next round. */
  reset(ctx: ScenarioCtx): void;
}

/** The variant called `name` (EMU_ERR_BAD_PARAM naming `variant` and the choices otherwise). @emulator */
export function findVariant(def: ScenarioDef, name: string | undefined): ScenarioVariant {
  const v = name === undefined ? (def.variants.find((x) => x.buggy) ?? def.variants[0]) : def.variants.find((x) => x.name === name);
  if (!v) throw badParam('variant', `"${name}" is not a variant of ${def.id} (variants: ${def.variants.map((x) => x.name).join(', ')})`);
  return v;
}

/**
 * Think time: spin a seeded random 0..max-1 cpu_relax iterations at `label` (the actor's own
 * pacing, the same in every variant; not a widened race point).
 * @emulator
 */
export function thinkSpins(ctx: ScenarioCtx, label: string, max: number): void {
  const n = ctx.prng.below(max);
  for (let i = 0; i < n; i++) ctx.acc.cpuRelax(label);
}
