/**
 * Pool thread entry point: piscina calls the default export once per actor task.
 * All logic lives in src/runtime/worker-main.ts.
 */
import { runActorTask } from '../src/runtime/worker-main.js';

export default runActorTask;
