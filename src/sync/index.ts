/**
 * Synchronization primitives on machine memory, kernel-named: spinlock, mutex, rw-semaphore,
 * SRCU, doorbell, and the bounded waits they all block through.
 */
export * from './wait.js';
export * from './owner.js';
export * from './spinlock.js';
export * from './mutex.js';
export * from './rwsem.js';
export * from './srcu.js';
export * from './doorbell.js';
export * from './barrier.js';
