/** Test helpers: a fresh single-thread machine with reset, software-enabled APICs. */
import { Access, createMachineMemory } from '../../src/mem/access.js';
import { kvmLapicReset, apicSoftwareEnable, kvmLapicSetIrr, apicSetIsr, type AcceptOps, type TriggerMode } from '../../src/apic/index.js';

/** Build a 4-vCPU machine; every APIC reset in the given mode and (unless told) software-enabled. */
export function machine(opts: { x2apic?: boolean; enable?: boolean; vcpus?: number } = {}): Access {
  const vcpus = opts.vcpus ?? 4;
  const mem = createMachineMemory({ vcpus, pcpus: 2 });
  const acc = new Access(mem, { actor: 0, name: 'test' });
  for (let v = 0; v < vcpus; v++) {
    kvmLapicReset(acc, v, { x2apic: opts.x2apic ?? false, bsp: v === 0 });
    if (opts.enable ?? true) apicSoftwareEnable(acc, v);
  }
  return acc;
}

/** Set IRR bits through kvm_lapic_set_irr. */
export function setIrr(acc: Access, v: number, ...vectors: number[]): void {
  for (const vec of vectors) kvmLapicSetIrr(acc, v, vec);
}

/** Mark vectors in service. */
export function setIsr(acc: Access, v: number, ...vectors: number[]): void {
  for (const vec of vectors) apicSetIsr(acc, v, vec);
}

/** One recorded side effect of acceptance. */
export type OpCall = { op: 'deliver'; vector: number; trigger: TriggerMode } | { op: 'nmi' } | { op: 'init' } | { op: 'sipi'; vector: number };

/** AcceptOps that record their calls (deliverInterrupt also sets IRR, like the non-APICv path). */
export function recordingOps(acc: Access, v: number): { ops: AcceptOps; calls: OpCall[] } {
  const calls: OpCall[] = [];
  const ops: AcceptOps = {
    deliverInterrupt(vector, trigger) {
      calls.push({ op: 'deliver', vector, trigger });
      kvmLapicSetIrr(acc, v, vector);
    },
    injectNmi() {
      calls.push({ op: 'nmi' });
    },
    pendingInit() {
      calls.push({ op: 'init' });
    },
    pendingSipi(vector) {
      calls.push({ op: 'sipi', vector });
    },
  };
  return { ops, calls };
}
