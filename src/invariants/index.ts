/**
 * The pure invariant checkers and the interrupt accounting: they read machine memory or a
 * round's record and never write. The public `invariants` namespace.
 */
export * from './checks.js';
export * from './accounting.js';
export * from './snapshot.js';
export * from './deadlock.js';
export * from './posted-intr.js';
export * from './apicv.js';
export * from './avic.js';
export * from './savic.js';
export * from './nmi.js';
export * from './memslot.js';
export * from './host-state.js';
export * from './tdx-bringup.js';
