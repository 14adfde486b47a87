/**
 * pCPU hotplug as the host scheduler sees it (kernel/cpu.c cpu_down/cpu_up, kernel/sched
 * set_cpu_active / select_fallback_rq, reduced to what vCPU threads need):
 *
 *   hotplug thread (cpu_down(p))              vCPU thread (sched-in, vcpu_load)
 *   ACTIVE[p] = 0; smp_mb()                   p = preferred if ACTIVE else fallback
 *   wait: nobody holds or waits for p's       take p's run queue ticket (locked: full fence)
 *         run queue, no vCPU loaded there     ACTIVE[p]? -> run here : release, pick again
 *   teardown callbacks (descending state)
 *   ONLINE[p] = 0
 *
 * Either the vCPU sees ACTIVE[p] = 0 after taking its ticket and moves on, or the hotplug thread
 * sees its ticket and waits for it to leave (a Dekker pair over ACTIVE and the ticket). A vCPU
 * that holds an inactive pCPU migrates at its next scheduling point (end of a time slice, or a
 * sleep in kvm_vcpu_block). The last active pCPU cannot go offline (-EBUSY).
 */
import { PCPU, type PcpuId } from '../mem/layout.js';
import type { Access } from '../mem/access.js';
import { pollUntil } from '../sync/wait.js';
import { EmuError, badParam } from '../errors.js';
import type { HotplugCallbacks } from '../host/hotplug-callbacks.js';

/** cpu_active(p). @kvm include/linux/cpumask.h cpu_active */
export function cpuActive(acc: Access, p: PcpuId): boolean {
  return acc.readOnce(acc.layout.pcpu(p, PCPU.ACTIVE), 'sched:cpu-active-read') !== 0;
}

/** cpu_online(p). @kvm include/linux/cpumask.h cpu_online */
export function cpuOnline(acc: Access, p: PcpuId): boolean {
  return acc.readOnce(acc.layout.pcpu(p, PCPU.ONLINE), 'sched:cpu-online-read') !== 0;
}

/**
 * Where a task that prefers `preferred` runs: there if it is active, else the next active pCPU
 * (wrapping). Throws if no pCPU is active (cannot happen: the last one never goes offline).
 * @kvm kernel/sched/core.c select_fallback_rq
 */
export function selectFallbackRq(acc: Access, preferred: PcpuId): PcpuId {
  const n = acc.layout.config.pcpus;
  for (let i = 0; i < n; i++) {
    const p = (preferred + i) % n;
    if (cpuActive(acc, p)) return p;
  }
  throw new EmuError('EMU_ERR_INTERNAL', 'no active pCPU to run on');
}


function checkPcpu(acc: Access, p: number): void {
  const n = acc.layout.config.pcpus;
  if (!Number.isInteger(p) || p < 0 || p >= n) throw badParam('pcpu', `${p} (must be a pCPU index in 0..${n - 1})`);
}

/**
 * Take pCPU p offline: refuse the last active one (-EBUSY), clear ACTIVE, wait until no vCPU
 * holds or waits for its run queue (they move to another pCPU), run the teardown callbacks
 * (a refusal puts ACTIVE back), then clear ONLINE. Returns false if p was already offline.
 * @kvm kernel/cpu.c cpu_down / _cpu_down
 */
export function cpuDown(acc: Access, p: PcpuId, cb: HotplugCallbacks = {}): boolean {
  checkPcpu(acc, p);
  const L = acc.layout;
  if (!cpuOnline(acc, p)) return false;
  let others = 0;
  for (let q = 0; q < L.config.pcpus; q++) if (q !== p && cpuActive(acc, q)) others++;
  if (others === 0) throw new EmuError('EMU_ERR_EBUSY', `pCPU ${p} is the last active pCPU: cpu_down refused with -EBUSY`);
  acc.writeOnce(L.pcpu(p, PCPU.ACTIVE), 0, 'hotplug:set-inactive');
  acc.smpMb('hotplug:inactive-mb');
  const next = L.pcpu(p, PCPU.RUN_NEXT);
  const serving = L.pcpu(p, PCPU.RUN_SERVING);
  pollUntil(
    acc,
    serving,
    'hotplug:drain',
    () => acc.readOnce(next, 'hotplug:run-next-read') === acc.readOnce(serving, 'hotplug:run-serving-read') && acc.readOnce(L.pcpu(p, PCPU.CURRENT_VCPU), 'hotplug:current-read') < 0,
    () => `pCPU ${p}'s tasks to migrate away (cpu_down)`,
  );
  try {
    cb.teardown?.(p);
  } catch (e) {
    acc.writeOnce(L.pcpu(p, PCPU.ACTIVE), 1, 'hotplug:set-active');
    throw e;
  }
  acc.writeOnce(L.pcpu(p, PCPU.ONLINE), 0, 'hotplug:set-offline');
  return true;
}

/**
 * Bring pCPU p online: ONLINE, the startup callbacks, then ACTIVE (tasks may run there again).
 * Returns false if p was already online.
 * @kvm kernel/cpu.c cpu_up / _cpu_up
 */
export function cpuUp(acc: Access, p: PcpuId, cb: HotplugCallbacks = {}): boolean {
  checkPcpu(acc, p);
  const L = acc.layout;
  if (cpuOnline(acc, p)) return false;
  acc.writeOnce(L.pcpu(p, PCPU.ONLINE), 1, 'hotplug:set-online');
  cb.startup?.(p);
  acc.smpMb('hotplug:online-mb');
  acc.writeOnce(L.pcpu(p, PCPU.ACTIVE), 1, 'hotplug:set-active');
  return true;
}
