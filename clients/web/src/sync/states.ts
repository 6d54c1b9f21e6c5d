/**
 * The client state machine of docs/sync-states.md, as pure rules: which of the four states the facts
 * put a device in, and what a whole-request failure means. Nothing here does I/O; the engine gathers
 * the facts and asks.
 */

import type { Code } from "../api/types";

export type SyncState = "offline" | "syncing" | "upToDate" | "error";

/** Syncs in a row that failed with an answer before the device says ``error``. */
export const FAILURES_BEFORE_ERROR = 3;
/** Attempts without a final answer after which a queued change is stuck (``error``). */
export const STUCK_AFTER = 3;

export interface StateFacts {
  /** What the platform says (``navigator.onLine``). */
  platformOnline: boolean;
  /** The last request got no answer at all (refused, reset, timed out). */
  unreachable: boolean;
  /** The server answered ``401`` since the last sync that succeeded. */
  unauthorized: boolean;
  /** Syncs in a row that failed with an answer (5xx, 429, a whole-request 4xx that stopped the sync). */
  failuresInRow: number;
  /** Queued changes that had {@link STUCK_AFTER} attempts or more without a final answer. */
  stuck: number;
  /** A sync is running now. */
  running: boolean;
  /** Changes waiting for the server (refused ones wait for the user and do not count). */
  queued: number;
  /** A first download waits for a movement in doubt. */
  waitingToSnapshot: boolean;
  /** The last sync pushed everything and pulled to the server's checkpoint. */
  synced: boolean;
}

export function stateOf(facts: StateFacts): SyncState {
  if (!facts.platformOnline || facts.unreachable) return "offline";
  if (facts.unauthorized || facts.failuresInRow >= FAILURES_BEFORE_ERROR || facts.stuck > 0) return "error";
  if (facts.running || facts.queued > 0 || facts.waitingToSnapshot || !facts.synced) return "syncing";
  return "upToDate";
}

/** The contract's codes (``Code`` in the OpenAPI schema; a test holds the two equal). */
export const CONTRACT_CODES = [
  "VALIDATION_ERROR",
  "TENANT_MISMATCH",
  "NOT_FOUND",
  "CONFLICT_RESOLVED",
  "OPERATION_ID_REUSED",
  "RATE_LIMITED",
  "UNAUTHORIZED",
  "UNSUPPORTED_MEDIA_TYPE",
  "PAYLOAD_TOO_LARGE",
  "TOO_MANY_OPERATIONS",
  "IDEMPOTENCY_KEY_MISMATCH",
  "IDEMPOTENCY_KEY_REUSED",
  "IDEMPOTENCY_KEY_IN_FLIGHT",
  "RESET_REQUIRED",
  "UNAVAILABLE",
  "INTERNAL_ERROR",
] as const satisfies readonly Code[];

/**
 * A whole request the server refused because of what the batch holds: ``413`` (too many operations,
 * too large) and any other 4xx but ``401`` (sign in again), ``408`` (timed out), ``409`` (a request in
 * flight, a reset) and ``429`` (slow down), answered in the contract's ``{code, message}`` with one of
 * its codes. Such a batch is split in halves until the operation it refuses is found; that one is
 * refused for good, with the request's code. A 4xx without the contract's code (a proxy's 403 page, a
 * wrong address's 404) is temporary, like a 5xx: one misconfigured proxy must never fail every queued
 * change for good.
 */
export function refusesTheBatch(status: number, code: string): boolean {
  return (
    status >= 400 && status < 500 && ![401, 408, 409, 429].includes(status) && (CONTRACT_CODES as readonly string[]).includes(code)
  );
}
