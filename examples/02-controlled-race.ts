import { closeSharedPool, replayRace, runControlledRace } from 'hvemu';

// Controlled mode: the catalogue's PI-1 race (no full fence between vcpu->mode = IN_GUEST_MODE
// and the ON check) searched one access at a time with x86-TSO store buffers.
const found = await runControlledRace('pi-sb-notification', { variant: 'buggy', strategy: 'random', seed: 1, iterations: 1, schedules: 500 });
if (!found.first || !found.replay) throw new Error(`no violation in ${found.schedules} schedules`);
console.log(`schedule ${found.schedules}: ${found.first.invariant} in round ${found.first.iteration}`);
console.log(`  ${found.first.detail}`);
console.log(`replay token: ${found.replay}`);

// The token runs the same execution again, exactly.
const again = await replayRace(found.replay);
const same = again.first?.invariant === found.first.invariant && again.first?.iteration === found.first.iteration && again.traceDigest === found.traceDigest;
console.log(same ? `replayed: same round, invariant and trace digest (${found.traceDigest})` : `replay differs: ${again.traceDigest} vs ${found.traceDigest}`);

await closeSharedPool();
process.exitCode = same ? 0 : 1;
