/**
 * The sync engine: one sync at a time (push the outbox, then pull), retried with backoff, and the
 * status it reports. What each answer does is in ``outbox.ts``, the download in ``download.ts``, the
 * rebase in ``rebase.ts``, and which state the facts make in ``states.ts`` (docs/sync-states.md is the
 * contract; the cases in clients/spec check it, see ``spec.test.ts``).
 */
import { HttpError, TransportError, type Gateway } from "../api/http";
import { DEFAULT_BACKOFF, backoffDelay, retryAfterFloor, type BackoffPolicy } from "./backoff";
import { Download, type Progress } from "./download";
import { Listeners } from "./listeners";
import { Push, type SyncNotice } from "./outbox";
import { FAILURES_BEFORE_ERROR, STUCK_AFTER, stateOf, type StateFacts, type SyncState } from "./states";
import { LAST_SYNC_KEY, type SyncStore } from "./store";

export type { SyncNotice } from "./outbox";
export type { SyncState } from "./states";

export interface SyncStatus {
  state: SyncState;
  queued: number;
  failed: number;
  lastSyncAt: string | null;
  /** Why the device is in ``error`` (or why the last sync failed), in words. */
  lastError: string | null;
  uploading: boolean;
  downloading: boolean;
  /** While a snapshot or a long feed downloads: products (snapshot) or changes (feed) stored of the total. */
  progress: Progress | null;
}

/** Timers, so tests can decide when (and whether) a scheduled sync runs. */
export interface Timers {
  set(callback: () => void, ms: number): unknown;
  clear(handle: unknown): void;
}

const REAL_TIMERS: Timers = {
  set: (callback, ms) => setTimeout(callback, ms),
  clear: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

export interface EngineOptions {
  store: SyncStore;
  gateway: Gateway;
  /** What the platform says (``navigator.onLine``). */
  isOnline: () => boolean;
  backoff?: BackoffPolicy;
  random?: () => number;
  /** How often to sync while online and idle. */
  periodMs?: number;
  batchSize?: number;
  now?: () => Date;
  timers?: Timers;
}

const BATCH_SIZE = 100;

/** Why the last attempt failed, in words for the status indicator. */
function describe(error: unknown): string {
  if (error instanceof HttpError) {
    if (error.status === 401) return "signed out: the token is invalid or expired; sign in again";
    return `${error.code}: ${error.message}`;
  }
  return error instanceof Error ? error.message : String(error);
}

export class SyncEngine {
  private readonly store: SyncStore;
  private readonly options: EngineOptions;
  private readonly timers: Timers;
  private readonly download: Download;
  private running: Promise<void> | null = null;
  private again = false;
  private timer: unknown = null;
  private stopped = false;
  /** Rounds of waiting for items the server has not settled yet (pending, retryable): their backoff. */
  private waitingRounds = 0;
  /** Why the last sync failed (``null`` after one succeeded). */
  private failure: string | null = null;
  /** Attempts in a row that got no answer: the backoff of the probes while offline. */
  private unanswered = 0;
  private readonly facts: Omit<StateFacts, "platformOnline" | "queued" | "waitingToSnapshot"> = {
    unreachable: false,
    unauthorized: false,
    failuresInRow: 0,
    stuck: 0,
    running: false,
    synced: false,
  };
  private status: SyncStatus = {
    state: "syncing",
    queued: 0,
    failed: 0,
    lastSyncAt: null,
    lastError: null,
    uploading: false,
    downloading: false,
    progress: null,
  };
  private readonly statusListeners = new Listeners<SyncStatus>();
  private readonly noticeListeners = new Listeners<SyncNotice>();

  constructor(options: EngineOptions) {
    this.options = options;
    this.store = options.store;
    this.timers = options.timers ?? REAL_TIMERS;
    this.download = new Download(options.store, options.gateway, (progress) => this.update({ progress }));
    this.status = { ...this.status, state: this.stateOf(this.status) };
  }

  get current(): SyncStatus {
    return this.status;
  }

  onStatus(listener: (status: SyncStatus) => void): () => void {
    listener(this.status);
    return this.statusListeners.add(listener);
  }

  onNotice(listener: (notice: SyncNotice) => void): () => void {
    return this.noticeListeners.add(listener);
  }

  /** Load counts and the last sync time, then sync (a failure to read them shows at the sync). */
  async start(): Promise<void> {
    try {
      this.update({ lastSyncAt: await this.store.getMeta(LAST_SYNC_KEY) });
      await this.refresh();
    } catch {
      if (this.stopped) return;
    }
    void this.syncNow();
  }

  /** Resolves when no sync is running or about to run again (for tests and orderly shutdowns). */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  /** Stop syncing; resolves once a sync in progress has finished. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.clearTimer();
    await this.running;
  }

  /** Connectivity changed: coming back online syncs at once, with the backoff reset. */
  setOnline(online: boolean): void {
    if (online) {
      this.resetBackoff();
      void this.syncNow();
    } else {
      this.clearTimer();
      this.refreshSoon();
    }
  }

  /**
   * The server answered something light (the live stream opened): sync soon, and when the device was
   * offline for want of an answer, at once, with the backoff reset.
   */
  serverAnswered(): void {
    if (this.facts.unreachable) this.resetBackoff();
    this.requestSync();
  }

  /** A local change was queued (here or in another tab): show it in the counts and push it without making the caller wait. */
  changed(): void {
    this.refreshSoon();
    this.requestSync();
  }

  /**
   * Sync soon: now, unless recent attempts failed or got no answer, in which case the backoff's
   * scheduled retry carries this along (local changes and live hints must not hammer a failing server).
   */
  requestSync(): void {
    if (this.facts.failuresInRow === 0 && !this.facts.unauthorized && !this.facts.unreachable) void this.syncNow();
  }

  /**
   * Sync now, or, when a sync is running, once more right after it (single flight: a second caller
   * shares the running sync, and a change made meanwhile is not left waiting for the next period).
   */
  syncNow(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = this.run().finally(() => {
      this.running = null;
      const again = this.again;
      this.again = false;
      if (again && !this.stopped) this.requestSync();
    });
    return this.running;
  }

  /** The counts (queued, failed, stuck) read again, and the status with them. */
  async refresh(): Promise<void> {
    const counts = await this.store.outboxCounts(STUCK_AFTER);
    this.facts.stuck = counts.stuck;
    this.update({ queued: counts.queued, failed: counts.failed });
  }

  /** The counts read again without waiting: a failure to read them shows at the next sync. */
  private refreshSoon(): void {
    if (!this.stopped) this.refresh().catch(() => undefined);
  }

  private resetBackoff(): void {
    this.facts.failuresInRow = 0;
    this.facts.unreachable = false;
    this.unanswered = 0;
    this.waitingRounds = 0;
  }

  private async run(): Promise<void> {
    if (this.stopped) return;
    this.clearTimer();
    if (!this.options.isOnline()) {
      await this.refresh().catch(() => undefined);
      return;
    }
    this.facts.running = true;
    this.update({});
    let retryFloorMs = 0;
    try {
      await this.attempt();
    } catch (error) {
      if (error instanceof HttpError) retryFloorMs = retryAfterFloor(error.retryAfterSeconds);
      this.failed(error);
    } finally {
      this.facts.running = false;
      this.update({ uploading: false, downloading: false });
    }
    if (this.stopped) return;
    await this.refresh().catch(() => undefined);
    this.schedule(retryFloorMs);
  }

  /** Push, then pull; throws what ended the sync. */
  private async attempt(): Promise<void> {
    if (this.status.queued > 0) this.update({ uploading: true });
    const push = new Push(
      this.store,
      this.options.gateway,
      this.options.batchSize ?? BATCH_SIZE,
      (notices) => this.tell(notices),
      () => this.refresh(),
    );
    await push.run();
    this.update({ uploading: false, downloading: true });
    const complete = await this.download.pull();
    // Every request of this sync had an answer.
    this.facts.unreachable = false;
    this.facts.unauthorized = false;
    this.facts.failuresInRow = 0;
    this.unanswered = 0;
    this.facts.synced = complete;
    if (complete) {
      const at = (this.options.now?.() ?? new Date()).toISOString();
      await this.store.setMeta(LAST_SYNC_KEY, at);
      this.failure = null;
      this.update({ lastSyncAt: at });
    } else {
      this.failure = null;
      this.update({});
    }
  }

  private failed(error: unknown): void {
    this.facts.synced = false;
    if (error instanceof TransportError) {
      // No answer at all: offline, not a failure of the server (what was sent is in doubt, and is
      // sent again with the same ids).
      this.facts.unreachable = true;
      this.unanswered += 1;
      this.failure = null; // "offline" says it
      this.update({});
      return;
    }
    this.facts.unreachable = false;
    this.unanswered = 0;
    if (error instanceof HttpError && error.status === 401) this.facts.unauthorized = true;
    // A local storage failure counts too: it is reported and retried like any other.
    this.facts.failuresInRow += 1;
    this.failure = describe(error);
    this.update({});
  }

  /** The next attempt: backoff after failures, without an answer, or while items wait on the server; else the period. */
  private schedule(retryFloorMs: number): void {
    if (this.stopped || !this.options.isOnline()) return;
    const policy = this.options.backoff ?? DEFAULT_BACKOFF;
    const random = this.options.random ?? Math.random;
    let delay: number;
    if (this.facts.failuresInRow > 0 || this.facts.unauthorized) {
      delay = backoffDelay(this.facts.failuresInRow, policy, random, retryFloorMs);
    } else if (this.facts.unreachable) {
      delay = backoffDelay(this.unanswered, policy, random);
    } else if (this.status.queued > 0 || this.download.waitingToSnapshot) {
      // Items answered pending or retryable (or a snapshot waiting for them): ask again soon,
      // backing off while they keep waiting.
      this.waitingRounds += 1;
      delay = backoffDelay(this.waitingRounds, policy, random, retryFloorMs);
    } else {
      this.waitingRounds = 0;
      delay = this.options.periodMs ?? 30_000;
    }
    this.clearTimer();
    this.timer = this.timers.set(() => void this.syncNow(), delay);
  }

  private clearTimer(): void {
    if (this.timer !== null) this.timers.clear(this.timer);
    this.timer = null;
  }

  private tell(notices: SyncNotice[]): void {
    for (const notice of notices) this.noticeListeners.tell(notice);
  }

  private update(patch: Partial<SyncStatus>): void {
    const next = { ...this.status, ...patch };
    next.state = this.stateOf(next);
    const stuck = this.facts.stuck;
    const failing = this.facts.unauthorized || this.facts.failuresInRow >= FAILURES_BEFORE_ERROR;
    next.lastError =
      stuck > 0 && !failing
        ? `${stuck} queued ${stuck === 1 ? "change has" : "changes have"} had no final answer after ${STUCK_AFTER} attempts`
        : this.failure;
    this.status = next;
    this.statusListeners.tell(next);
  }

  private stateOf(status: SyncStatus): SyncState {
    return stateOf({
      ...this.facts,
      platformOnline: this.options.isOnline(),
      queued: status.queued,
      waitingToSnapshot: this.download.waitingToSnapshot,
    });
  }
}
