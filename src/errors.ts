/**
 * Errors with stable codes. They cross worker boundaries as plain data
 * ({@link toWire} / {@link fromWire}) because classes do not survive structured clone.
 */

/** Stable error codes, one per failure kind a user can act on. */
export type EmuErrorCode =
  | 'EMU_ERR_BAD_PARAM'
  | 'EMU_ERR_LAYOUT'
  | 'EMU_ERR_DEADLINE'
  | 'EMU_ERR_ABORTED'
  | 'EMU_ERR_POOL_TOO_SMALL'
  | 'EMU_ERR_ACTOR_CRASHED'
  | 'EMU_ERR_ILLEGAL_VECTOR'
  | 'EMU_ERR_GP'
  | 'EMU_ERR_EINVAL'
  | 'EMU_ERR_EBUSY'
  | 'EMU_ERR_VM_BUGGED'
  | 'EMU_ERR_INTERNAL';

/** Plain-data form of an {@link EmuError}, safe to postMessage. */
export interface WireError {
  code: EmuErrorCode;
  message: string;
  actor?: string;
  detail?: Record<string, unknown>;
}

/** The one error class of the library: a code, a message, optionally the actor it concerns. */
export class EmuError extends Error {
  readonly code: EmuErrorCode;
  readonly actor: string | undefined;
  readonly detail: Record<string, unknown> | undefined;
  constructor(code: EmuErrorCode, message: string, opts: { actor?: string; detail?: Record<string, unknown> } = {}) {
    super(message);
    this.name = 'EmuError';
    this.code = code;
    this.actor = opts.actor;
    this.detail = opts.detail;
  }
}

/** Bad user input; `param` names the offending parameter. */
export function badParam(param: string, why: string): EmuError {
  return new EmuError('EMU_ERR_BAD_PARAM', `invalid ${param}: ${why}`, { detail: { param } });
}

/** Serialise any thrown value for the worker boundary. */
export function toWire(e: unknown): WireError {
  if (e instanceof EmuError) {
    const w: WireError = { code: e.code, message: e.message };
    if (e.actor !== undefined) w.actor = e.actor;
    if (e.detail !== undefined) w.detail = e.detail;
    return w;
  }
  if (e instanceof Error) return { code: 'EMU_ERR_INTERNAL', message: `${e.name}: ${e.message}\n${e.stack ?? ''}` };
  return { code: 'EMU_ERR_INTERNAL', message: String(e) };
}

/** Rebuild an {@link EmuError} from its wire form. */
export function fromWire(w: WireError): EmuError {
  const opts: { actor?: string; detail?: Record<string, unknown> } = {};
  if (w.actor !== undefined) opts.actor = w.actor;
  if (w.detail !== undefined) opts.detail = w.detail;
  return new EmuError(w.code, w.message, opts);
}
