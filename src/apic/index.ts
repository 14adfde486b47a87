/**
 * Local APIC semantics (arch/x86/kvm/lapic.c) as pure functions over the access layer: every
 * function takes the actor's {@link Access} and a vCPU index (= APIC ID) and touches only that
 * vCPU's APIC page and control words, through labelled `apic:*` race points.
 * @kvm arch/x86/kvm/lapic.c
 */
export * from './apic-bits.js';
export * from './regs.js';
export * from './irr-isr.js';
export * from './ppr.js';
export * from './ack.js';
export * from './eoi.js';
export * from './icr.js';
export * from './accept.js';
export * from './dest.js';
export * from './reg-read.js';
export * from './reg-write.js';
export * from './x2apic-msr.js';
export * from './reset.js';
