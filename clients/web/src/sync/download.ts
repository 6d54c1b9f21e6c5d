/**
 * Download what the server holds: a snapshot first when the device has no checkpoint (a new device,
 * or after ``RESET_REQUIRED``), then the feed to the server's checkpoint, each page stored with its
 * checkpoint in one transaction. Levels are kept per product as pages are stored, never summed from
 * all movements (README, "First download of a large tenant").
 */
import { HttpError, type Gateway } from "../api/http";
import type { ChangeFeedPage, SnapshotPage, StockMovementState } from "../api/types";
import { rebase, reshow, tombstone } from "./rebase";
import {
  CHECKPOINT_KEY,
  SNAPSHOT_KEY,
  UNCONFIRMED_KEY,
  signed,
  type LevelRow,
  type LocalMovement,
  type LocalProduct,
  type SnapshotProgress,
  type SyncStore,
  type SyncTx,
} from "./store";

/** How many times one pull starts again after ``RESET_REQUIRED`` before it fails like any other answer. */
const MAX_RESETS = 3;

export interface Progress {
  done: number;
  total: number;
}

function isCode(error: unknown, code: string): boolean {
  return error instanceof HttpError && error.code === code;
}

export class Download {
  /** The snapshot waits for a movement in doubt to settle (the device says ``syncing`` meanwhile). */
  waitingToSnapshot = false;

  constructor(
    private readonly store: SyncStore,
    private readonly gateway: Gateway,
    private readonly onProgress: (progress: Progress | null) => void,
  ) {}

  /** The snapshot if needed, then the feed; false when the snapshot must wait for movements in doubt. */
  async pull(): Promise<boolean> {
    try {
      for (let resets = 0; ; resets++) {
        let checkpoint = await this.store.getMeta(CHECKPOINT_KEY);
        if (checkpoint === null) {
          checkpoint = await this.snapshot();
          if (checkpoint === null) return false;
        }
        try {
          await this.feed(checkpoint);
          await this.store.transaction((tx) => dropUnconfirmed(tx));
          return true;
        } catch (error) {
          if (isCode(error, "RESET_REQUIRED") && resets < MAX_RESETS) {
            // The server cannot resume from our checkpoint: snapshot again. The local data stays
            // until the snapshot's first page replaces it.
            await this.store.setMeta(CHECKPOINT_KEY, null);
            continue;
          }
          throw error;
        }
      }
    } finally {
      this.onProgress(null);
    }
  }

  /**
   * The snapshot, page by page, resuming an interrupted one from its stored cursor; returns its
   * checkpoint C once the last page is stored (the feed checkpoint is C from then on), or null when
   * it cannot start yet because a movement is in doubt.
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
          await this.store.setMeta(SNAPSHOT_KEY, null);
          progress = null;
          this.onProgress(null);
          continue;
        }
        throw error;
      }
      progress = await this.store.transaction((tx) => storeSnapshotPage(tx, page, progress));
      if (progress === null) return page.checkpoint;
      this.onProgress(progress.total === null ? null : { done: progress.done, total: Math.max(progress.done, progress.total) });
    }
  }

  private async snapshotProgress(): Promise<SnapshotProgress | null> {
    const stored = await this.store.getMeta(SNAPSHOT_KEY);
    if (stored === null) return null;
    try {
      return JSON.parse(stored) as SnapshotProgress;
    } catch {
      return null;
    }
  }

  /** Is one of this device's stock movements sent without a final answer yet? */
  private async movementInDoubt(): Promise<boolean> {
    const queued = await this.store.queuedEntries();
    return queued.some((entry) => entry.sent && entry.operation.entityType === "stockMovement");
  }

  /** The feed from ``checkpoint`` to the end, a page per transaction. */
  private async feed(checkpoint: string): Promise<void> {
    let stored = 0;
    for (;;) {
      const page = await this.gateway.changes(checkpoint);
      await this.store.transaction((tx) => storeFeedPage(tx, page));
      checkpoint = page.checkpoint;
      stored += page.changes.length;
      if (!page.hasMore) return;
      this.onProgress(page.remaining === undefined ? null : { done: stored, total: stored + page.remaining });
    }
  }
}

/**
 * One snapshot page, stored with the snapshot's progress; the first page also forgets the server
 * copy. Returns the progress to resume from, or null after the last page (the feed checkpoint is then C).
 */
async function storeSnapshotPage(tx: SyncTx, page: SnapshotPage, progress: SnapshotProgress | null): Promise<SnapshotProgress | null> {
  if (progress === null) await forgetServerCopy(tx);
  const states = new Map<string, LocalProduct>();
  const snapshotLevels = new Map<string, number>();
  for (const item of page.items) {
    const { stockLevel, ...state } = item;
    states.set(item.id, state);
    snapshotLevels.set(item.id, stockLevel);
  }
  await rebase(tx, states);
  const ids = [...snapshotLevels.keys()];
  const held = await tx.getLevels(ids);
  await tx.putLevels(ids.map((productId, i) => ({ productId, pending: held[i]?.pending ?? 0, confirmed: snapshotLevels.get(productId) ?? 0 })));
  if (page.nextCursor === null) {
    await tx.setMeta(SNAPSHOT_KEY, null);
    await tx.setMeta(CHECKPOINT_KEY, page.checkpoint);
    return null;
  }
  const next: SnapshotProgress = {
    checkpoint: page.checkpoint,
    cursor: page.nextCursor,
    done: (progress?.done ?? 0) + page.items.length,
    total: progress === null ? (page.totalProducts ?? null) : progress.total,
  };
  await tx.setMeta(SNAPSHOT_KEY, JSON.stringify(next));
  return next;
}

/**
 * The start of a snapshot (inside the first page's transaction): the server copy goes, every product
 * and tombstone included. A product with queued operations comes back with its snapshot page, its
 * edits replayed on top; until then only a queued create shows it. (Keeping its old copy would keep a
 * product the server deleted before C for good: no page shows it and the feed after C has no tombstone
 * for it.) Kept: the device's queued movements with their pending effect, and refused ones (listed as
 * failed, counting for nothing). Movements settled as applied are inside C's levels.
 */
async function forgetServerCopy(tx: SyncTx): Promise<void> {
  const entries = await tx.allEntries();
  const queued = entries.filter((entry) => entry.status === "queued");
  const movementIds = entries.filter((e) => e.operation.entityType === "stockMovement").map((e) => e.entityId);
  const keptMovements = (await tx.getMovements(movementIds)).filter((m): m is LocalMovement => m !== undefined && m.checkpoint === null);
  await tx.clearServerCopy();
  await rebase(tx, new Map(queued.filter((e) => e.operation.entityType === "product").map((e) => [e.entityId, null])));
  await tx.putMovements(keptMovements);
  const pending = new Map<string, number>();
  for (const entry of queued) {
    if (entry.operation.entityType !== "stockMovement") continue;
    const { productId } = entry.operation.payload;
    pending.set(productId, (pending.get(productId) ?? 0) + signed(entry.operation.payload));
  }
  await tx.putLevels([...pending].map(([productId, value]) => ({ productId, confirmed: 0, pending: value })));
}

/**
 * One page of the feed and its checkpoint, together (a crash never stores one without the other), with
 * bulk reads and writes: products rebased (a deleted one kept as a tombstone), movements not held before
 * stored and counted once per product (confirmed; and no longer pending when it is this device's own).
 */
async function storeFeedPage(tx: SyncTx, page: ChangeFeedPage): Promise<void> {
  const states = new Map<string, LocalProduct>();
  const received = new Map<string, StockMovementState>();
  for (const change of page.changes) {
    if (change.product) states.set(change.entityId, change.product);
    else if (change.movement) received.set(change.movement.id, change.movement);
    else if (change.entityType === "product" && change.operation === "delete") {
      states.set(change.entityId, { ...tombstone(change.entityId, undefined, new Date(0).toISOString()), checkpoint: change.checkpoint });
    }
  }
  await rebase(tx, states);
  if (received.size > 0) {
    const ids = [...received.keys()];
    const held = await tx.getMovements(ids);
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
    await tx.putMovements(puts);
    const productIds = [...deltas.keys()];
    const rows = await tx.getLevels(productIds);
    await tx.putLevels(
      productIds.map((productId, i): LevelRow => {
        const row = rows[i] ?? { productId, confirmed: 0, pending: 0 };
        const delta = deltas.get(productId) ?? { confirmed: 0, pending: 0 };
        return { productId, confirmed: row.confirmed + delta.confirmed, pending: row.pending + delta.pending };
      }),
    );
  }
  await tx.setMeta(CHECKPOINT_KEY, page.checkpoint);
}

/**
 * After a complete pull: a create answered ``duplicate`` before the feed brought it (see ``settle``)
 * whose copy is still the device's own (no checkpoint: neither the feed nor a snapshot brought it)
 * is not held by the server any more (deleted before the snapshot this device resumed from, its
 * tombstone purged): its copy goes, and the product with it unless something queued shows it.
 */
async function dropUnconfirmed(tx: SyncTx): Promise<void> {
  const stored = await tx.getMeta(UNCONFIRMED_KEY);
  if (stored === null) return;
  const ids = JSON.parse(stored) as string[];
  const copies = await tx.getServerStates(ids);
  const gone = ids.filter((_, i) => copies[i]?.checkpoint === null);
  await tx.deleteServerStates(gone);
  await reshow(tx, gone);
  await tx.setMeta(UNCONFIRMED_KEY, null);
}
