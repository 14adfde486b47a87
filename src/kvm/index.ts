/**
 * Generic KVM (arch/x86/kvm/*.c, virt/kvm/kvm_main.c): the vCPU run loop, requests, kick and
 * wake-up, blocking, IRQ delivery, APICv inhibits, the LAPIC ioctls and timer, the APIC-access
 * memslot, the kvm_x86_ops seam, and the bug-patch registry. The public `kvm` namespace.
 */
export * from './x86.js';
export * from './x86-ops.js';
export * from './modes.js';
export * from './requests.js';
export * from './kick.js';
export * from './block.js';
export * from './irq.js';
export * from './apicv.js';
export * from './lapic-ioctl.js';
export * from './lapic-timer.js';
export * from './lapic-pir.js';
export * from './vm-bug.js';
export * from './stats.js';
export * from './virt-enable.js';
export * from './apic-access-memslot.js';
export * from './patches.js';
