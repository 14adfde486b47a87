/**
 * Pool thread entry point for race-scenario actors (piscina runs the default export per task).
 * All logic lives in src/scenarios/worker.ts.
 */
import { runScenarioTask } from '../src/scenarios/worker.js';

export default runScenarioTask;
