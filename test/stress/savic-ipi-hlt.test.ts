/**
 * savic-ipi-hlt, free mode: each buggy variant's violation is found on real threads within a budget of
 * seeds and seconds. How soon depends on the host (its CPU, its load), so this is an opt-in
 * stress test (`npm run test:stress`), not part of `npm test`; time-to-find figures live in
 * bench/README.md (`npm run bench:races`).
 */
import test from 'ava';
import { findWithinBudget } from '../helpers/race.js';
import { closeSharedPool } from '../../src/runtime/pool.js';

const ID = 'savic-ipi-hlt';

test.after.always(async () => {
  await closeSharedPool();
});

test.serial('buggy-no-fence: store buffering between has_pending_ipi and vcpu->mode loses the wake-up', async (t) => {
  const r = await findWithinBudget(t, ID, 'buggy-no-fence');
  t.is(r.failure, null);
  t.truthy(r.first, 'a violation was found');
  t.is(r.first?.invariant, 'savicNoSleepWithPendingIpi');
  t.regex(r.first?.detail ?? '', /sleeps in kvm_vcpu_block with IPI vector\(s\) 0xfb pending in its Secure AVIC backing page and no wake-up in flight/);
});

test.serial('buggy-no-idle-hlt: HLT exits with V_INTR pending and KVM blocks the vCPU', async (t) => {
  const r = await findWithinBudget(t, ID, 'buggy-no-idle-hlt');
  t.is(r.failure, null);
  t.is(r.first?.invariant, 'savicNoSleepWithPendingIpi');
  t.regex(r.first?.detail ?? '', /has_pending_ipi=0\): KVM, which cannot read the guest IRR, blocked the vCPU/);
});
