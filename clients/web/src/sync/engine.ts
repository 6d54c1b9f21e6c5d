/**
 * The sync engine: the outbox pushed in order, results applied as the server says, then a snapshot
 * (a device with no checkpoint) and the feed pulled to the server's checkpoint, one sync at a time,
 * retries with backoff. Levels are kept per product as pages are stored, never summed from all
 * movements. The same rules as the Python client (see DESIGN.md, "Client states", and "First sync of
 * a large tenant").
 */
import { HttpError, TransportError, type Gateway } from "../api/http";
import type { ChangeFeedPage, ItemResult, ProductState, SnapshotPage, StockMovementState } from "../api/types";
import { DEFAULT_BACKOFF, backoffDelay, type BackoffPolicy } from "./backoff";
import {
  CHECKPOINT_KEY,
  LAST_SYNC_KEY,
  SNAPSHOT_KEY,
  signed,
  storedProduct,
  type LocalDb,
  type LocalMovement,
  type OutboxEntry,
  type SnapshotProgress,
  type StoredProduct,
} from "./db";
import { rebased } from "./operations";

export type SyncState = "offline" | "syncing" | "upToDate" | "error";

export interface SyncStatus {
  state: SyncState;
  queued: number;
  failed: number;
  lastSyncAt: string | null;
  lastError: string | null;
  uploading: boolean;
  downloading: boolean;
  /** While a snapshot or a long feed downloads: products (snapshot) or changes (feed) stored of the total. */
  progress: { done: number; total: number } | null;
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
/** How many times one pull starts again after ``RESET_REQUIRED`` before it backs off like any failure. */
const MAX_RESETS = 3;

function isCode(error: unknown, code: string): boolean {
  return error instanceof HttpError && error.code === code;
}

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
  /** The snapshot waits for a movement in doubt to settle: still syncing, retried with backoff. */
  private waitingToSnapshot = false;
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
      const complete = await this.pull();
      this.failures = 0;
      if (complete) {
        const at = (this.options.now?.() ?? new Date()).toISOString();
        await this.db.setMeta(LAST_SYNC_KEY, at);
        this.update({ lastError: null, lastSyncAt: at });
      } else {
        this.update({ lastError: null });
      }
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
    } else if (this.status.queued > 0 || this.waitingToSnapshot) {
      // Items answered pending or retryable (or a snapshot waiting for them): ask again soon,
      // backing off while they keep waiting.
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
        // In doubt from here on, until the server's word on each item arrives (rule 2).
        const unsent = batch.filter((entry) => !entry.sent && entry.seq !== undefined);
        if (unsent.length > 0) {
          await this.db.outbox.bulkUpdate(unsent.map((entry) => ({ key: entry.seq as number, changes: { sent: true } })));
        }
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
    const { outbox, products, movements, levels } = this.db;
    await this.db.transaction("rw", [outbox, products, movements, levels], async () => {
      for (const entry of batch) {
        const result = byId.get(entry.operation.operationId);
        if (!result || entry.seq === undefined) continue; // no word on it: it stays queued, and in doubt
        if (refused.has(entry.seq) && result.status !== "applied" && result.status !== "duplicate") continue;
        const reason = result.code ? `${result.code}: ${result.message ?? ""}`.trim() : (result.message ?? null);
        switch (result.status) {
          case "applied":
          case "duplicate":
            // Settled. A movement stays pending until the feed brings it back (then it is confirmed).
            await outbox.delete(entry.seq);
            break;
          case "conflict":
            await outbox.delete(entry.seq);
            if (result.serverState) await this.rebaseOne(result.serverState.id, result.serverState);
            notices.push({ kind: "conflict", productId: entry.productId, message: "updated from another device" });
            break;
          case "rejected":
            if (result.retryable) {
              // Nothing was stored: no longer in doubt.
              await outbox.update(entry.seq, { attempts: entry.attempts + 1, reason, sent: false });
            } else {
              await outbox.update(entry.seq, { status: "failed", attempts: entry.attempts + 1, reason, sent: false });
              if (entry.operation.entityType === "stockMovement") await this.refuseMovement(entry.entityId);
              if (entry.operation.entityType === "product" && entry.operation.operationType === "create") {
                for (const seq of await this.refuseDependents(entry, reason)) refused.add(seq);
              }
              notices.push({ kind: "failed", productId: entry.productId, message: reason ?? "refused by the server" });
            }
            break;
          case "pending":
            // Accepted, not applied yet: still in doubt.
            await outbox.update(entry.seq, { attempts: entry.attempts + 1, reason });
            break;
        }
      }
    });
    for (const notice of notices) for (const listener of this.noticeListeners) listener(notice);
  }

  /** A movement refused for good: listed as failed, and its pending effect on the level taken back. */
  private async refuseMovement(movementId: string): Promise<void> {
    const movement = await this.db.movements.get(movementId);
    if (!movement || movement.failed || movement.checkpoint !== null) return;
    await this.db.movements.put({ ...movement, failed: true });
    const level = await this.db.levels.get(movement.productId);
    if (level) await this.db.levels.put({ ...level, pending: level.pending - signed(movement) });
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
      await this.db.outbox.update(entry.seq, {
        status: "failed",
        sent: false,
        reason: `its product's creation was refused (${reason ?? "no reason given"})`,
      });
      if (entry.operation.entityType === "stockMovement") await this.refuseMovement(entry.entityId);
    }
    if (!(await this.db.products.get(create.productId))?.checkpoint) await this.db.products.delete(create.productId);
    return refused;
  }

  /** The product becomes the server's state, with this device's still-queued edits on top. */
  private async rebaseOne(productId: string, server: ProductState | null): Promise<void> {
    const product = rebased(server, await this.db.outbox.where("productId").equals(productId).toArray());
    if (product) await this.db.products.put(storedProduct(product));
    else await this.db.products.delete(productId);
  }

  /**
   * Many products become the server's states (``null``: gone), each with its queued edits on top:
   * one outbox read, one bulk write.
   */
  private async rebaseMany(states: Map<string, ProductState | null>): Promise<void> {
    if (states.size === 0) return;
    const ids = [...states.keys()];
    const entries = new Map<string, OutboxEntry[]>();
    for (const entry of await this.db.outbox.where("productId").anyOf(ids).toArray()) {
      const list = entries.get(entry.productId);
      if (list) list.push(entry);
      else entries.set(entry.productId, [entry]);
    }
    const puts: StoredProduct[] = [];
    const deletes: string[] = [];
    for (const [id, server] of states) {
      const product = rebased(server, entries.get(id) ?? []);
      if (product) puts.push(storedProduct(product));
      else deletes.push(id);
    }
    if (puts.length > 0) await this.db.products.bulkPut(puts);
    if (deletes.length > 0) await this.db.products.bulkDelete(deletes);
  }

  /**
   * Download what the server holds: the snapshot first when there is no checkpoint (rule 1), then
   * the feed. Returns false when the snapshot must wait for movements in doubt to settle.
   */
  private async pull(): Promise<boolean> {
    this.update({ downloading: true });
    try {
      for (let resets = 0; ; resets++) {
        let checkpoint = await this.db.getMeta(CHECKPOINT_KEY);
        if (checkpoint === null) {
          checkpoint = await this.snapshot();
          if (checkpoint === null) return false;
        }
        try {
          await this.feed(checkpoint);
          return true;
        } catch (error) {
          if (isCode(error, "RESET_REQUIRED") && resets < MAX_RESETS) {
            // The server cannot resume from our checkpoint: snapshot again. The local data stays
            // until the snapshot's first page replaces it (rule 3).
            await this.db.setMeta(CHECKPOINT_KEY, null);
            continue;
          }
          throw error;
        }
      }
    } finally {
      this.update({ downloading: false, progress: null });
    }
  }

  /**
   * The snapshot, page by page, resuming an interrupted one from its stored cursor; returns its
   * checkpoint C once the last page is stored (the feed checkpoint is C from then on), or null when
   * it cannot start yet because a movement is in doubt (rule 2).
   */
  private async snapshot(): Promise<string | null> {
    let progress = await this.snapshotProgress();
    for (let resets = 0; ; ) {
      if (progress === null && (await this.movementInDoubt())) {
        this.waitingToSnapshot = true;
        return null;
      }
      this.waitingToSnapshot = false;
      let page: SnapshotPage;
      try {
        page = await this.gateway.snapshot(progress?.cursor ?? null);
        if (progress !== null && page.checkpoint !== progress.checkpoint) {
          throw new HttpError(409, "RESET_REQUIRED", "the snapshot's checkpoint changed between pages", null);
        }
      } catch (error) {
        // Too old (or a cursor the server no longer reads): start again from the first page.
        if (progress !== null && (isCode(error, "RESET_REQUIRED") || isCode(error, "VALIDATION_ERROR")) && resets < MAX_RESETS) {
          resets += 1;
          await this.db.meta.delete(SNAPSHOT_KEY);
          progress = null;
          this.update({ progress: null });
          continue;
        }
        throw error;
      }
      progress = await this.storeSnapshotPage(page, progress);
      if (progress === null) return page.checkpoint;
      this.update({ progress: progress.total === null ? null : { done: progress.done, total: Math.max(progress.done, progress.total) } });
    }
  }

  private async snapshotProgress(): Promise<SnapshotProgress | null> {
    const stored = await this.db.getMeta(SNAPSHOT_KEY);
    if (stored === null) return null;
    try {
      return JSON.parse(stored) as SnapshotProgress;
    } catch {
      return null;
    }
  }

  /** Is one of this device's stock movements sent without a final answer yet? */
  private async movementInDoubt(): Promise<boolean> {
    const queued = await this.db.outbox.where("status").equals("queued").toArray();
    return queued.some((entry) => entry.sent && entry.operation.entityType === "stockMovement");
  }

  /**
   * One snapshot page, stored with the snapshot's progress in one transaction; the first page also
   * forgets the server copy. Returns the progress to resume from, or null after the last page (the
   * feed checkpoint is then C).
   */
  private async storeSnapshotPage(page: SnapshotPage, progress: SnapshotProgress | null): Promise<SnapshotProgress | null> {
    const { outbox, products, movements, levels, meta } = this.db;
    return this.db.transaction("rw", [outbox, products, movements, levels, meta], async () => {
      if (progress === null) await this.forgetServerCopy();
      const states = new Map<string, ProductState>();
      const snapshotLevels = new Map<string, number>();
      for (const item of page.items) {
        const { stockLevel, ...state } = item;
        states.set(item.id, state);
        snapshotLevels.set(item.id, stockLevel);
      }
      await this.rebaseMany(states);
      const ids = [...snapshotLevels.keys()];
      const held = await levels.bulkGet(ids);
      await levels.bulkPut(
        ids.map((productId, i) => ({ productId, pending: held[i]?.pending ?? 0, confirmed: snapshotLevels.get(productId) ?? 0 })),
      );
      if (page.nextCursor === null) {
        await meta.delete(SNAPSHOT_KEY);
        await this.db.setMeta(CHECKPOINT_KEY, page.checkpoint);
        return null;
      }
      const next: SnapshotProgress = {
        checkpoint: page.checkpoint,
        cursor: page.nextCursor,
        done: (progress?.done ?? 0) + page.items.length,
        total: progress === null ? (page.totalProducts ?? null) : progress.total,
      };
      await this.db.setMeta(SNAPSHOT_KEY, JSON.stringify(next));
      return next;
    });
  }

  /**
   * The start of a snapshot (rule 3, inside the first page's transaction): the server copy goes, every
   * product included. A product with queued operations comes back with its snapshot page, its edits
   * replayed on top; until then only a queued create shows it. (Keeping its old copy would keep a
   * product the server deleted before C for good: no page shows it and the feed after C has no
   * tombstone for it.) Kept: the device's queued movements with their pending effect, and refused ones
   * (listed as failed, counting for nothing). Movements settled as applied are inside C's levels.
   */
  private async forgetServerCopy(): Promise<void> {
    const { outbox, products, movements, levels } = this.db;
    const entries = await outbox.toArray();
    const queued = entries.filter((entry) => entry.status === "queued");
    const keptMovements = (await movements.bulkGet(entries.filter((e) => e.operation.entityType === "stockMovement").map((e) => e.entityId))).filter(
      (m): m is LocalMovement => m !== undefined && m.checkpoint === null,
    );
    await Promise.all([products.clear(), movements.clear(), levels.clear()]);
    await this.rebaseMany(new Map(queued.filter((e) => e.operation.entityType === "product").map((e) => [e.entityId, null])));
    await movements.bulkPut(keptMovements);
    const pending = new Map<string, number>();
    for (const entry of queued) {
      if (entry.operation.entityType !== "stockMovement") continue;
      const { productId } = entry.operation.payload;
      pending.set(productId, (pending.get(productId) ?? 0) + signed(entry.operation.payload));
    }
    await levels.bulkPut([...pending].map(([productId, value]) => ({ productId, confirmed: 0, pending: value })));
  }

  /** The feed from ``checkpoint`` to the end, a page per transaction. */
  private async feed(checkpoint: string): Promise<void> {
    let stored = 0;
    for (;;) {
      const page = await this.gateway.changes(checkpoint);
      await this.storeFeedPage(page);
      checkpoint = page.checkpoint;
      stored += page.changes.length;
      if (!page.hasMore) return;
      this.update({ progress: page.remaining === undefined ? null : { done: stored, total: stored + page.remaining } });
    }
  }

  /**
   * One page of the feed and its checkpoint, together (a crash never stores one without the other),
   * with bulk reads and writes: products rebased, movements not held before stored and counted once
   * per product (confirmed; and no longer pending when it is this device's own).
   */
  private async storeFeedPage(page: ChangeFeedPage): Promise<void> {
    const states = new Map<string, ProductState | null>();
    const received = new Map<string, StockMovementState>();
    for (const change of page.changes) {
      if (change.product) states.set(change.entityId, change.product);
      else if (change.movement) received.set(change.movement.id, change.movement);
      else if (change.entityType === "product" && change.operation === "delete") states.set(change.entityId, null);
    }
    const { outbox, products, movements, levels, meta } = this.db;
    await this.db.transaction("rw", [outbox, products, movements, levels, meta], async () => {
      await this.rebaseMany(states);
      if (received.size > 0) {
        const ids = [...received.keys()];
        const held = await movements.bulkGet(ids);
        const deltas = new Map<string, { confirmed: number; pending: number }>();
        const adjust = (productId: string, confirmed: number, pending: number) => {
          const delta = deltas.get(productId) ?? { confirmed: 0, pending: 0 };
          deltas.set(productId, { confirmed: delta.confirmed + confirmed, pending: delta.pending + pending });
        };
        const puts: LocalMovement[] = [];
        ids.forEach((id, i) => {
          const movement = received.get(id) as StockMovementState;
          const mine = held[i];
          if (mine && mine.checkpoint !== null) return; // already counted from the feed
          adjust(movement.productId, signed(movement), 0);
          // This device's own, back from the server: no longer pending (net: shown stock unchanged).
          if (mine && !mine.failed) adjust(mine.productId, 0, -signed(mine));
          puts.push(movement);
        });
        await movements.bulkPut(puts);
        const productIds = [...deltas.keys()];
        const rows = await levels.bulkGet(productIds);
        await levels.bulkPut(
          productIds.map((productId, i) => {
            const row = rows[i] ?? { productId, confirmed: 0, pending: 0 };
            const delta = deltas.get(productId) ?? { confirmed: 0, pending: 0 };
            return { productId, confirmed: row.confirmed + delta.confirmed, pending: row.pending + delta.pending };
          }),
        );
      }
      await this.db.setMeta(CHECKPOINT_KEY, page.checkpoint);
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
    if (status.queued > 0 || this.busy || this.waitingToSnapshot) return "syncing";
    return "upToDate";
  }
}
