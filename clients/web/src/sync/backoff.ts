/**
 * Retry delays: exponential with "full jitter" (AWS Architecture Blog, 2015), so that many devices
 * coming back online together do not retry in step. Written here because the npm retry helpers wrap
 * a promise in a retry loop, while the engine needs the delay itself to schedule its next attempt
 * (and to honour a server's Retry-After). The numbers are docs/sync-states.md's.
 */
export interface BackoffPolicy {
  baseMs: number;
  maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { baseMs: 1000, maxMs: 60_000 };

/** A server's ``Retry-After`` is honoured up to this, so a broken or hostile server cannot stall a device for long. */
export const RETRY_AFTER_CAP_MS = 300_000;

/** The floor a ``Retry-After`` of ``seconds`` sets (``null``: none), capped. */
export function retryAfterFloor(seconds: number | null): number {
  if (seconds === null || !Number.isFinite(seconds) || seconds <= 0) return 0;
  return Math.min(RETRY_AFTER_CAP_MS, seconds * 1000);
}

/** The delay before attempt ``failures`` + 1, at least ``floorMs`` (a server's Retry-After, see {@link retryAfterFloor}). */
export function backoffDelay(
  failures: number,
  policy: BackoffPolicy = DEFAULT_BACKOFF,
  random: () => number = Math.random,
  floorMs = 0,
): number {
  const ceiling = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.max(0, failures - 1));
  return Math.max(floorMs, Math.round(random() * ceiling));
}
