/**
 * The Linux errno values the modelled host code returns. Kernel functions return them negated
 * (`-EBUSY`), and so do the model functions here.
 */

/**
 * errno values (positive, as in the header).
 * @kvm include/uapi/asm-generic/errno-base.h EIO, ENXIO, EACCES, EFAULT, EBUSY, ENODEV, EINVAL, ENOSPC (and errno.h EOPNOTSUPP)
 */
export const ERRNO = {
  EIO: 5,
  ENXIO: 6,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  ENODEV: 19,
  EINVAL: 22,
  ENOSPC: 28,
  EOPNOTSUPP: 95,
} as const;

/**
 * Name of a (negated) errno for reports, e.g. `-EBUSY`; `0` for success.
 * @emulator
 */
export function errnoName(r: number): string {
  if (r === 0) return '0';
  const hit = Object.entries(ERRNO).find(([, v]) => v === -r);
  return hit ? `-${hit[0]}` : String(r);
}
