/**
 * The race catalogue: every scenario, by id. (test/repo checks this list against the folders
 * and README's catalogue table.)
 */
import { badParam } from '../errors.js';
import type { ScenarioDef } from './define.js';
import { savicRequestedIrr } from './savic-requested-irr/scenario.js';
import { tdxNmiInversion } from './tdx-nmi-inversion/scenario.js';
import { apicMemslotInhibit } from './apic-memslot-inhibit/scenario.js';
import { avicIsrunningWake } from './avic-isrunning-wake/scenario.js';
import { savicIpiHlt } from './savic-ipi-hlt/scenario.js';
import { apicvDeactivatePir } from './apicv-deactivate-pir/scenario.js';
import { tdxApicvInhibit } from './tdx-apicv-inhibit/scenario.js';
import { piSbNotification } from './pi-sb-notification/scenario.js';
import { piWakeupBlock } from './pi-wakeup-block/scenario.js';
import { tdxInitHotplug } from './tdx-init-hotplug/scenario.js';
import { tdxOfflineLastCpu } from './tdx-offline-last-cpu/scenario.js';
import { tdxHostState } from './tdx-host-state/scenario.js';
import { findLitmusScenario } from './litmus-scenario.js';

/** Every scenario, in catalogue order. */
export const SCENARIOS: readonly ScenarioDef[] = [
  savicRequestedIrr,
  apicMemslotInhibit,
  tdxNmiInversion,
  avicIsrunningWake,
  savicIpiHlt,
  apicvDeactivatePir,
  tdxApicvInhibit,
  piSbNotification,
  piWakeupBlock,
  tdxInitHotplug,
  tdxOfflineLastCpu,
  tdxHostState,
];

/** Scenarios of the library's users, registered by {@link registerScenario} (per thread). */
const userScenarios = new Map<string, ScenarioDef>();

/**
 * Make a scenario of your own runnable by id on this thread: `def.module` must be the URL of the
 * module that exports it (`import.meta.url`), so worker threads can load it the same way. Its id
 * must not be a catalogue id. Registering the same definition again is a no-op.
 * @emulator
 */
export function registerScenario(def: ScenarioDef): ScenarioDef {
  if (!/^[a-z0-9]+(-[a-z0-9]+)*$/.test(def.id)) throw badParam('scenario', `id "${def.id}" is not kebab-case`);
  if (SCENARIOS.some((x) => x.id === def.id)) throw badParam('scenario', `"${def.id}" is a catalogue scenario; give yours another id`);
  if (typeof def.module !== 'string' || !def.module.startsWith('file:')) throw badParam('scenario', `${def.id}: module must be the file: URL of the module that exports the definition (import.meta.url)`);
  const had = userScenarios.get(def.id);
  if (had && had.module !== def.module) throw badParam('scenario', `"${def.id}" is already registered from ${had.module}`);
  userScenarios.set(def.id, def);
  return def;
}

/**
 * On a worker thread: import the module of a user's scenario and register the definition it
 * exports with id `id` (EMU_ERR_BAD_PARAM if it exports none).
 * @emulator
 */
export async function loadScenario(id: string, module: string): Promise<ScenarioDef> {
  const have = userScenarios.get(id);
  if (have) return have;
  const mod = (await import(module)) as Record<string, unknown>;
  const def = Object.values(mod).find((x): x is ScenarioDef => typeof x === 'object' && x !== null && (x as ScenarioDef).id === id && typeof (x as ScenarioDef).round === 'function');
  if (!def) throw badParam('scenario', `${module} exports no scenario with id "${id}"`);
  return registerScenario({ ...def, module });
}

/** A scenario by id (EMU_ERR_BAD_PARAM naming the id and the known ones otherwise). @emulator */
export function findScenario(id: string): ScenarioDef {
  const user = userScenarios.get(id);
  if (user) return user;
  // The x86 litmus tests (litmus:SB, ..., and .litmus files) run as scenarios too, outside the race catalogue.
  const s = SCENARIOS.find((x) => x.id === id) ?? findLitmusScenario(id);
  if (!s) throw badParam('scenario', `unknown scenario "${id}" (known: ${SCENARIOS.map((x) => x.id).join(', ')})`);
  return s;
}
