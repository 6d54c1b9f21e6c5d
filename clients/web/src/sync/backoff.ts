/**
 * Retry delays: exponential with "full jitter" (AWS Architecture Blog, 2015), so that many devices
 * coming back online together do not retry in step. Written here because the npm retry helpers wrap
 * a promise in a retry loop, while the engine needs the delay itself to schedule its next attempt
 * (and to honour a server's Retry-After).
 */
export interface BackoffPolicy {
  baseMs: number;
  maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { baseMs: 1000, maxMs: 30_000 };

/** The delay before attempt ``failures`` + 1, at least ``floorMs`` (a server's Retry-After). */
export function backoffDelay(
  failures: number,
  policy: BackoffPolicy = DEFAULT_BACKOFF,
  random: () => number = Math.random,
  floorMs = 0,
): number {
  const ceiling = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.max(0, failures - 1));
  return Math.max(floorMs, Math.round(random() * ceiling));
}
