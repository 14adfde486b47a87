/**
 * The x86 litmus catalogue (every shipped litmus/x86/*.litmus file) in free mode: real worker threads, writeOnce a plain store that sits in
 * the host CPU's store buffer. Whether a relaxed state shows up in a given number of rounds
 * depends on the host, so the tests only assert what must hold on every x86 host: a bounded
 * number of rounds (a count, not a time) never shows a state x86-TSO forbids, and every round is
 * counted in the histogram.
 */
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LITMUS_TESTS } from '../../src/scenarios/litmus-tests.js';
import { loadLitmusFile } from '../../src/scenarios/litmus-parse.js';
import { litmusPool, runLitmus } from '../../src/scenarios/litmus-run.js';
import { closeSharedPool, type ActorPool } from '../../src/runtime/pool.js';

const ROUNDS = 2000;

// One pool for the whole file, sized for the largest test (IRIW: four threads and the starter).
let pool: ActorPool;
test.before(async () => {
  pool = await litmusPool(LITMUS_TESTS);
});
test.after.always(async () => {
  await closeSharedPool();
});

for (const lt of LITMUS_TESTS) {
  test.serial(`free ${lt.name}: ${ROUNDS} rounds, no state x86-TSO forbids`, async (t) => {
    const r = await runLitmus(lt, { mode: 'free', iterations: ROUNDS, pool });
    t.log(r.states.map((s) => `${lt.observe.map((o) => s[o]).join(',')}×${s.count}`).join(' '));
    t.is(r.failure, null);
    t.deepEqual(r.forbiddenObserved, []);
    t.is(r.runs, ROUNDS);
    t.is(
      r.states.reduce((n, s) => n + s.count, 0),
      ROUNDS,
    );
    t.is(r.exhaustive, null);
    t.is(r.verdict, 'match');
  });
}

test.serial(`free, a user file (its id resolved on the pool threads): ${ROUNDS} rounds, no state x86-TSO forbids`, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'hvemu-litmus-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'sb-user.litmus');
  writeFileSync(path, 'X86 SB\n{ x=0; y=0; }\n P0 | P1 ;\n MOV [x],$1 | MOV [y],$1 ;\n MOV EAX,[y] | MOV EAX,[x] ;\nexists (0:EAX=0 /\\ 1:EAX=0)\n');
  const r = await runLitmus(loadLitmusFile(path), { mode: 'free', iterations: ROUNDS, pool });
  t.is(r.failure, null);
  t.deepEqual(r.forbiddenObserved, []);
  t.is(
    r.states.reduce((n, s) => n + s.count, 0),
    ROUNDS,
  );
  t.is(r.file, path);
});
