/**
 * The AVIC and Secure AVIC bug patches on the ordinary machine (vCPU and pCPU actors, KVM's code,
 * the hardware models — no scenario code): with the patch the machine loses interrupts, without
 * it nothing is lost, under workloads where a lost wake-up or a lost vector cannot be made good
 * by a later event.
 *
 * - AV-1 (avic-isrunning-wake:buggy = hw-avic-erratum-1235 + svm-avic-ipiv-on-erratum-1235): a
 *   ping-pong between two vCPUs that HLT while they wait (each IPI meets a vCPU on its way to
 *   block; no idle tick, so a stranded IPI stalls the pair for good).
 * - SA-1 (savic-requested-irr:buggy = savic-remote-requested-irr): the Secure AVIC IPI storm plus
 *   device interrupts raised from the pCPU threads (Machine.inject), whose RequestedIRR writes
 *   race with the targets' VMRUN.
 *
 * The IPI storm of `hvemu run` shows neither as lost > 0: every HLT of a storm guest arms its idle
 * tick, and the next IPI or the tick wakes a vCPU whose wake-up was lost (the interrupt is late,
 * not lost), and the storm raises no KVM-originated interrupt from another thread (see the AV-1 and
 * SA-1 READMEs). Runs are bounded by counts (sends, injections); the wall-clock bound only ends a
 * run that stalled, it is never asserted.
 */
import test from 'ava';
import { Machine, type RunResult } from '../../src/runtime/machine.js';
import { closeSharedPool } from '../../src/runtime/pool.js';
import { bugPatches } from '../../src/scenarios/bugs.js';
import { DEFAULT_STORM } from '../../src/guest/programs.js';

test.after.always(async () => {
  await closeSharedPool();
});

/** A HLT-while-waiting ping-pong on 2 vCPUs until `sends` IPIs, or until it stalls (no send for a while). */
async function pingPong(patches: string[], sends: number, seed: number): Promise<RunResult> {
  const h = Machine.create({ vendor: 'svm', vcpus: 2, pcpus: 2, patches }).run({
    sends,
    seconds: 120,
    seed,
    drainMs: 2000,
    workload: { kind: 'ping-pong', pinger: 0, ponger: 1, pingVector: 0x41, pongVector: 0x42, spin: false },
    // The AV-1 scenario's widening of the CPU's backing-page update (same for both runs).
    widen: { seed, probability: 0.3, maxSpins: 200, points: ['avic:hw-backing-page-fetch'] },
  });
  let last = -1;
  let still = 0;
  const sub = h.progress$.subscribe((p) => {
    still = p.sent === last ? still + 1 : 0;
    last = p.sent;
    if (still >= 50) h.stop(); // stalled: the pair sleeps with an IPI stranded
  });
  const r = await h.result;
  sub.unsubscribe();
  return r;
}

test.serial('AV-1 patch on the machine: a HLT ping-pong strands an IPI (lost > 0, a vCPU asleep with it pending); without it nothing is lost', async (t) => {
  const clean = await pingPong([], 20_000, 1);
  t.is(clean.failure, undefined, clean.failure?.message);
  t.is(clean.accounting.totals.lost, 0);
  t.true(clean.accounting.totals.sent >= 20_000);
  let found: RunResult | undefined;
  for (let seed = 1; seed <= 8 && !found; seed++) {
    const r = await pingPong(bugPatches('avic-isrunning-wake:buggy'), 200_000, seed);
    t.is(r.failure, undefined, r.failure?.message);
    if (r.accounting.totals.lost > 0) found = r;
  }
  t.truthy(found, 'no lost IPI in 8 runs of up to 200,000 sends');
  t.log(`lost ${found!.accounting.totals.lost} after ${found!.accounting.totals.sent} sends: ${found!.violations.map((v) => v.message).join(' | ')}`);
  t.true(found!.violations.some((v) => v.invariant === 'noSleepingWithPending' || v.invariant === 'noLostInterrupt'));
});

/** The Secure AVIC storm on 4 vCPUs plus `n` device interrupts raised from the pCPU threads. */
async function stormWithDevices(patches: string[], n: number): Promise<RunResult> {
  const h = Machine.create({ vendor: 'savic', vcpus: 4, pcpus: 2, patches }).run({ seconds: 300, seed: 1, workload: { kind: 'ipi-storm', storm: DEFAULT_STORM } });
  await new Promise<void>((res) => {
    const s = h.progress$.subscribe(() => {
      s.unsubscribe();
      res();
    });
  });
  for (let sent = 0; sent < n; ) {
    const batch: Promise<unknown>[] = [];
    for (let i = 0; i < 200; i++, sent++) batch.push(h.inject(sent % 4, 0x30 + (sent % 16), (sent >> 2) % 2));
    await Promise.all(batch);
  }
  h.stop();
  return h.result;
}

test.serial('SA-1 patch on the machine: device interrupts raced into RequestedIRR by the pCPU threads are lost; without it nothing is lost', async (t) => {
  const clean = await stormWithDevices([], 20_000);
  t.is(clean.failure, undefined, clean.failure?.message);
  t.is(clean.accounting.totals.lost, 0);
  let lost = 0;
  for (let k = 0; k < 10 && lost === 0; k++) {
    const r = await stormWithDevices(bugPatches('savic-requested-irr:buggy'), 20_000);
    t.is(r.failure, undefined, r.failure?.message);
    t.is(r.accounting.misc.savicRemoteRequestedIrr, 20_000, 'every device interrupt wrote RequestedIRR from a pCPU thread');
    lost = r.accounting.totals.lost;
    if (lost > 0) t.true(r.violations.some((v) => v.invariant === 'noLostInterrupt' && /nowhere/.test(v.message)), 'the vector is gone, not late');
  }
  t.true(lost > 0, 'no vector lost in 10 runs of 20,000 device interrupts');
});
