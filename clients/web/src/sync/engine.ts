/**
 * The sync engine: the outbox pushed in order, results applied as the server says, the feed pulled
 * to the server's checkpoint, one sync at a time, retries with backoff. The same rules as the Python
 * client (see DESIGN.md, "Client states").
 */
import { HttpError, TransportError, type Gateway } from "../api/http";
import type { Change, ItemResult, ProductState } from "../api/types";
import { DEFAULT_BACKOFF, backoffDelay, type BackoffPolicy } from "./backoff";
import { CHECKPOINT_KEY, LAST_SYNC_KEY, type LocalDb, type LocalProduct, type OutboxEntry } from "./db";
import { applyProductOperation } from "./operations";

export type SyncState = "offline" | "syncing" | "upToDate" | "error";

export interface SyncStatus {
  state: SyncState;
  queued: number;
  failed: number;
  lastSyncAt: string | null;
  lastError: string | null;
  uploading: boolean;
  downloading: boolean;
}

/** Something the user should hear about without being interrupted. */
export interface SyncNotice {
  kind: "conflict" | "failed";
  productId: string;
  message: string;
}

export interface EngineOptions {
  db: LocalDb;
  gateway: Gateway;
  isOnline: () => boolean;
  backoff?: BackoffPolicy;
  random?: () => number;
  /** How often to sync while online and idle. */
  periodMs?: number;
  batchSize?: number;
  now?: () => Date;
}

const BATCH_SIZE = 100;

/** Why the last attempt failed, in words for the status indicator. */
function describe(error: unknown): string {
  if (error instanceof HttpError) {
    if (error.status === 401) return "signed out: the token is invalid or expired; sign in again";
    return `${error.code}: ${error.message}`;
  }
  if (error instanceof TransportError) return "the server cannot be reached";
  return error instanceof Error ? error.message : String(error);
}

export class SyncEngine {
  private readonly db: LocalDb;
  private readonly gateway: Gateway;
  private readonly options: EngineOptions;
  private running: Promise<void> | null = null;
  private again = false;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private failures = 0;
  private waitingRounds = 0;
  private stopped = false;
  private busy = false;
  private status: SyncStatus = {
    state: "syncing",
    queued: 0,
    failed: 0,
    lastSyncAt: null,
    lastError: null,
    uploading: false,
    downloading: false,
  };
  private readonly statusListeners = new Set<(status: SyncStatus) => void>();
  private readonly noticeListeners = new Set<(notice: SyncNotice) => void>();

  constructor(options: EngineOptions) {
    this.options = options;
    this.db = options.db;
    this.gateway = options.gateway;
  }

  get current(): SyncStatus {
    return this.status;
  }

  onStatus(listener: (status: SyncStatus) => void): () => void {
    this.statusListeners.add(listener);
    listener(this.status);
    return () => this.statusListeners.delete(listener);
  }

  onNotice(listener: (notice: SyncNotice) => void): () => void {
    this.noticeListeners.add(listener);
    return () => this.noticeListeners.delete(listener);
  }

  /** Load counts and the last sync time, then sync. */
  async start(): Promise<void> {
    this.status.lastSyncAt = await this.db.getMeta(LAST_SYNC_KEY);
    await this.refresh();
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
      this.failures = 0;
      this.waitingRounds = 0;
      void this.syncNow();
    } else {
      this.clearTimer();
      void this.refresh();
    }
  }

  /** A local change was queued: show it in the counts and push it without making the caller wait. */
  changed(): void {
    void this.refresh();
    this.requestSync();
  }

  /**
   * Sync soon: now, unless recent attempts failed, in which case the backoff's scheduled retry will
   * carry this along (local changes and live hints must not hammer a failing server).
   */
  requestSync(): void {
    if (this.failures === 0) void this.syncNow();
    else this.again = false;
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

  private async run(): Promise<void> {
    if (this.stopped) return;
    this.busy = true;
    try {
      await this.attempt();
    } catch (error) {
      // A local storage failure: report it, and try again later like any other failure.
      this.failures += 1;
      this.update({ lastError: describe(error) });
      this.schedule(0);
    } finally {
      this.busy = false;
      if (!this.stopped) await this.refresh().catch(() => undefined);
    }
  }

  private async attempt(): Promise<void> {
    this.clearTimer();
    if (!this.options.isOnline()) {
      await this.refresh();
      return;
    }
    this.update({ state: "syncing" });
    let retryFloorMs = 0;
    try {
      await this.push();
      await this.pull();
      this.failures = 0;
      const at = (this.options.now?.() ?? new Date()).toISOString();
      await this.db.setMeta(LAST_SYNC_KEY, at);
      this.update({ lastError: null, lastSyncAt: at });
    } catch (error) {
      if (error instanceof HttpError && error.retryAfterSeconds !== null) retryFloorMs = error.retryAfterSeconds * 1000;
      if (error instanceof TransportError && !this.options.isOnline()) {
        // The connection went away mid-sync: that is "offline", not a failure.
        await this.refresh();
        return;
      }
      this.failures += 1;
      this.update({ lastError: describe(error) });
    }
    await this.refresh();
    this.schedule(retryFloorMs);
  }

  /** The next attempt: backoff after failures or while items wait on the server, else the period. */
  private schedule(retryFloorMs: number): void {
    if (this.stopped || !this.options.isOnline()) return;
    const policy = this.options.backoff ?? DEFAULT_BACKOFF;
    const random = this.options.random ?? Math.random;
    let delay: number;
    if (this.failures > 0) {
      delay = backoffDelay(this.failures, policy, random, retryFloorMs);
    } else if (this.status.queued > 0) {
      // Items answered pending or retryable: ask again soon, backing off while they keep waiting.
      this.waitingRounds += 1;
      delay = backoffDelay(this.waitingRounds, policy, random, retryFloorMs);
    } else {
      this.waitingRounds = 0;
      delay = this.options.periodMs ?? 30_000;
    }
    this.clearTimer();
    this.timer = setTimeout(() => void this.syncNow(), delay);
  }

  private clearTimer(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private async push(): Promise<void> {
    const queued = await this.db.outbox.where("status").equals("queued").sortBy("seq");
    if (queued.length === 0) return;
    this.update({ uploading: true });
    try {
      const size = this.options.batchSize ?? BATCH_SIZE;
      for (let start = 0; start < queued.length; start += size) {
        const batch = queued.slice(start, start + size);
        const checkpoint = await this.db.getMeta(CHECKPOINT_KEY);
        const answer = await this.gateway.sync(
          checkpoint,
          batch.map((entry) => entry.operation),
        );
        await this.applyResults(batch, answer.results);
        await this.refresh();
      }
    } finally {
      this.update({ uploading: false });
    }
  }

  private async applyResults(batch: OutboxEntry[], results: ItemResult[]): Promise<void> {
    const byId = new Map(results.map((result) => [result.operationId, result]));
    const notices: SyncNotice[] = [];
    const refused = new Set<number>();
    await this.db.transaction("rw", this.db.outbox, this.db.products, this.db.movements, async () => {
      for (const entry of batch) {
        const result = byId.get(entry.operation.operationId);
        if (!result || entry.seq === undefined) continue; // no word on it: it stays queued
        if (refused.has(entry.seq) && result.status !== "applied" && result.status !== "duplicate") continue;
        const reason = result.code ? `${result.code}: ${result.message ?? ""}`.trim() : (result.message ?? null);
        switch (result.status) {
          case "applied":
          case "duplicate":
            await this.db.outbox.delete(entry.seq);
            break;
          case "conflict":
            await this.db.outbox.delete(entry.seq);
            if (result.serverState) await this.rebase(result.serverState.id, result.serverState);
            notices.push({ kind: "conflict", productId: entry.productId, message: "updated from another device" });
            break;
          case "rejected":
            if (result.retryable) {
              await this.db.outbox.update(entry.seq, { attempts: entry.attempts + 1, reason });
            } else {
              await this.db.outbox.update(entry.seq, { status: "failed", attempts: entry.attempts + 1, reason });
              if (entry.operation.entityType === "stockMovement") {
                await this.db.movements.update(entry.entityId, { failed: true });
              }
              if (entry.operation.entityType === "product" && entry.operation.operationType === "create") {
                for (const seq of await this.refuseDependents(entry, reason)) refused.add(seq);
              }
              notices.push({ kind: "failed", productId: entry.productId, message: reason ?? "refused by the server" });
            }
            break;
          case "pending":
            await this.db.outbox.update(entry.seq, { attempts: entry.attempts + 1, reason });
            break;
        }
      }
    });
    for (const notice of notices) for (const listener of this.noticeListeners) listener(notice);
  }

  /**
   * A product whose creation the server refused for good will never exist there: its other queued
   * changes would wait forever (the server calls a never-seen product retryable), so they fail too,
   * visibly, and the product leaves the local list.
   */
  private async refuseDependents(create: OutboxEntry, reason: string | null): Promise<number[]> {
    const dependents = await this.db.outbox.where("productId").equals(create.productId).toArray();
    const refused: number[] = [];
    for (const entry of dependents) {
      if (entry.seq === undefined || entry.seq === create.seq || entry.status !== "queued") continue;
      refused.push(entry.seq);
      await this.db.outbox.update(entry.seq, { status: "failed", reason: `its product's creation was refused (${reason ?? "no reason given"})` });
      if (entry.operation.entityType === "stockMovement") await this.db.movements.update(entry.entityId, { failed: true });
    }
    if (!(await this.db.products.get(create.productId))?.checkpoint) await this.db.products.delete(create.productId);
    return refused;
  }

  /** The product becomes the server's state, with this device's still-queued edits on top. */
  private async rebase(productId: string, server: ProductState | null): Promise<void> {
    let product: LocalProduct | undefined = server && !server.deleted ? { ...server } : undefined;
    const queued = await this.db.outbox.where("productId").equals(productId).sortBy("seq");
    for (const entry of queued) {
      if (entry.status === "queued" && entry.operation.entityType === "product") {
        product = applyProductOperation(product, entry.operation);
      }
    }
    if (product) await this.db.products.put(product);
    else await this.db.products.delete(productId);
  }

  private async pull(): Promise<void> {
    this.update({ downloading: true });
    try {
      let checkpoint = await this.db.getMeta(CHECKPOINT_KEY);
      for (;;) {
        let page;
        try {
          page = await this.gateway.changes(checkpoint);
        } catch (error) {
          if (error instanceof HttpError && error.code === "RESET_REQUIRED" && checkpoint !== null) {
            await this.reset();
            checkpoint = null;
            continue;
          }
          throw error;
        }
        await this.applyPage(page.changes, page.checkpoint);
        checkpoint = page.checkpoint;
        if (!page.hasMore) return;
      }
    } finally {
      this.update({ downloading: false });
    }
  }

  /** One page of the feed and its checkpoint, together: a crash never stores one without the other. */
  private async applyPage(changes: Change[], checkpoint: string): Promise<void> {
    await this.db.transaction("rw", this.db.outbox, this.db.products, this.db.movements, this.db.meta, async () => {
      for (const change of changes) {
        if (change.product) {
          await this.rebase(change.entityId, change.product);
        } else if (change.movement) {
          const failed = (await this.db.movements.get(change.entityId))?.failed;
          await this.db.movements.put(failed ? { ...change.movement, failed: false } : change.movement);
        }
      }
      await this.db.setMeta(CHECKPOINT_KEY, checkpoint);
    });
  }

  /** The server cannot resume from our checkpoint: download everything again, keeping the outbox. */
  private async reset(): Promise<void> {
    await this.db.transaction("rw", this.db.outbox, this.db.products, this.db.movements, this.db.meta, async () => {
      const queued = await this.db.outbox.where("status").equals("queued").toArray();
      const keepProducts = new Set(queued.filter((e) => e.operation.entityType === "product").map((e) => e.entityId));
      await this.db.products.filter((p) => !keepProducts.has(p.id)).delete();
      await this.db.movements.filter((m) => m.checkpoint !== null).delete();
      await this.db.setMeta(CHECKPOINT_KEY, null);
    });
  }

  private async refresh(): Promise<void> {
    const [queued, failed] = await Promise.all([
      this.db.outbox.where("status").equals("queued").count(),
      this.db.outbox.where("status").equals("failed").count(),
    ]);
    this.update({ queued, failed });
  }

  private update(patch: Partial<SyncStatus>): void {
    const next = { ...this.status, ...patch };
    next.state = this.stateOf(next);
    this.status = next;
    for (const listener of this.statusListeners) listener(next);
  }

  private stateOf(status: SyncStatus): SyncState {
    if (!this.options.isOnline()) return "offline";
    // Stays "error" through retries until one succeeds, so it is announced once, not at every attempt.
    if (status.lastError !== null) return "error";
    if (status.queued > 0 || this.busy) return "syncing";
    return "upToDate";
  }
}
