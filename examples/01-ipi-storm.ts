/**
 * The README's library example: build the default machine, run the posted-interrupt IPI storm
 * for one second, count notification IPIs from the event stream, and check the accounting.
 * Run: npm run build && node dist/examples/01-ipi-storm.js
 */
import { Machine, closeSharedPool } from 'hvemu';

const machine = Machine.create({ vendor: 'vmx', vcpus: 4, pcpus: 2 });
const run = machine.run({ seconds: 1, seed: 42, trace: true });

let notifications = 0;
run.events$.subscribe((e) => {
  if (e.type === 'pi:notify') notifications++;
});

const result = await run.result;
const { sent, coalesced, delivered, lost } = result.accounting.totals;
console.log(`sent ${sent}, coalesced ${coalesced}, delivered ${delivered}, lost ${lost}`);
console.log(`${notifications} notification IPIs, ${Math.round(result.rate.deliveredPerSec)} interrupts delivered/s`);
console.log(result.ok ? 'every interrupt accounted for' : `violations: ${JSON.stringify(result.violations)}`);

await closeSharedPool(); // the actor threads are kept warm until then
process.exitCode = result.ok ? 0 : 1;
