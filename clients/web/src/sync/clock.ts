/**
 * This device's stamps (``modifiedAt``): a hybrid logical clock, the later of now and the last stamp
 * + 1 ms, so they strictly increase even within one millisecond or when the clock goes back. The
 * server breaks equal unclamped times by ``operationId``; with these, a device's later change always
 * beats its earlier one (docs/sync-states.md, "Stamps"). The last stamp is kept in the database and
 * taken in the same transaction as the change, so tabs and reloads never reuse one.
 */
export function nextStamp(now: Date, last: string | null): string {
  const previous = last === null ? Number.NEGATIVE_INFINITY : Date.parse(last);
  const at = Number.isNaN(previous) ? now.getTime() : Math.max(now.getTime(), previous + 1);
  return new Date(at).toISOString();
}
