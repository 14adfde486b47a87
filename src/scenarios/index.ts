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
import { LITMUS_SCENARIOS } from './litmus-scenario.js';

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

/** A scenario by id (EMU_ERR_BAD_PARAM naming the id and the known ones otherwise). @emulator */
export function findScenario(id: string): ScenarioDef {
  // The x86 litmus tests (litmus:SB, ...) run as scenarios too, outside the race catalogue.
  const s = SCENARIOS.find((x) => x.id === id) ?? LITMUS_SCENARIOS.get(id);
  if (!s) throw badParam('scenario', `unknown scenario "${id}" (known: ${SCENARIOS.map((x) => x.id).join(', ')})`);
  return s;
}
