/**
 * A scenario of your own, on the machine's own KVM code, with public imports only: race MS-4 of
 * seed 001 re-created. A vCPU switches to x2APIC under hybrid AVIC, so KVM deletes the APIC-access
 * memslot (kvm_inhibit_apic_access_page); meanwhile the VMM creates a vCPU, which allocates the
 * APIC-access page again (kvm_alloc_apic_access_page) unless KVM marked it inhibited. The buggy
 * variant is the machine's patch that drops the sticky "inhibited" flag.
 */
import { isMainThread } from 'node:worker_threads';
import { pathToFileURL } from 'node:url';
import { closeSharedPool, kvm, runControlledRace, sync, type ScenarioDef } from 'hvemu';

export const apicSlotSticky: ScenarioDef = {
  id: 'my-apic-slot-sticky',
  title: 'x2APIC deletes the APIC-access memslot while the VMM creates a vCPU',
  seedFile: '001_a8da36bbce728554.txt',
  module: import.meta.url, // worker threads import this module to run the scenario
  variants: [
    { name: 'buggy', buggy: true, differs: 'no sticky inhibited flag', patches: [kvm.PATCH_APIC_ACCESS_NO_INHIBITED] },
    { name: 'fixed', buggy: false, differs: '' },
  ],
  invariants: [{ name: 'apicSlotStaysDeleted', description: 'nothing re-creates the APIC-access slot once it was deleted' }],
  widen: { probability: 0, maxSpins: 0, points: [] },
  vcpus: { default: 1, min: 1, max: 1 },
  roles: () => ['vcpu0', 'vmm'],
  layout: () => ({ vcpus: 1, pcpus: 1, scratchWords: 0 }),
  init: (acc) => kvm.kvmMemslotsInit(acc, [0], true),
  round(ctx) {
    if (ctx.role === 'vmm') return kvm.kvmAllocApicAccessPage(ctx.acc); // KVM_CREATE_VCPU
    // vcpu0 in KVM_RUN (under kvm->srcu) handles KVM_REQ_APICV_UPDATE after enabling x2APIC.
    const srcu = sync.kvmSrcu(ctx.L);
    const idx = kvm.kvmInhibitApicAccessPage(ctx.acc, ctx.patches, sync.srcuReadLock(ctx.acc, srcu));
    sync.srcuReadUnlock(ctx.acc, srcu, idx);
  },
  check(ctx) {
    const log = kvm.readMemslotLog(ctx.acc);
    const del = log.findIndex((u) => u.op === 'apic-delete');
    const recreated = del >= 0 && log.slice(del + 1).some((u) => u.op === 'apic-create');
    return recreated ? [{ invariant: 'apicSlotStaysDeleted', message: 'the APIC-access memslot was created again after the x2APIC inhibit deleted it' }] : [];
  },
  reset: (ctx) => kvm.kvmMemslotsInit(ctx.acc, [0], true),
};

// Run only as the program (not when a worker thread or a test imports the definition).
if (isMainThread && import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  for (const variant of ['buggy', 'fixed']) {
    const r = await runControlledRace(apicSlotSticky, { variant, seed: 1, schedules: 40, iterations: 1 });
    console.log(`${variant}: ${r.first ? `${r.first.invariant} broken (${r.first.detail})` : `held over ${r.schedules} schedules`}`);
  }
  await closeSharedPool();
}
