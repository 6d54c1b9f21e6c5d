/**
 * What the sync engine and the local actions need from the device's storage: the outbox, the products
 * as shown and as the server holds them, movements, stock levels and a few settings, with transactions.
 * IndexedDB (Dexie) implements it in ``db.ts``; nothing in the engine knows Dexie.
 */
import type { Operation, ProductState, StockMovementState } from "../api/types";

/** A product as this device shows it: the server's state with this device's queued edits on top. */
export type LocalProduct = Omit<ProductState, "checkpoint"> & { checkpoint: string | null };

/** A movement; ``checkpoint`` is ``null`` until the feed brought it back, ``failed`` once the server refused it. */
export type LocalMovement = Omit<StockMovementState, "checkpoint"> & { checkpoint: string | null; failed?: boolean };

/**
 * A product's stock, kept incrementally (never summed from all movements): ``confirmed`` is the
 * snapshot level plus every movement the feed brought after it; ``pending`` is this device's own
 * movements not yet back from the feed and not refused. Shown stock = confirmed + pending.
 */
export interface LevelRow {
  productId: string;
  confirmed: number;
  pending: number;
}

/** ``queued``: to send (again); ``failed``: refused for good, waiting for the user to read and dismiss it. */
export type OutboxStatus = "queued" | "failed";

/** One change waiting for the server's word, in the order the user made it (``seq``). */
export interface OutboxEntry {
  seq?: number;
  operation: Operation;
  entityId: string;
  /** The product it concerns (its own id, or a movement's product). */
  productId: string;
  status: OutboxStatus;
  /** Answers without a final word (pending, retryable): three make it stuck (docs/sync-states.md). */
  attempts: number;
  /** The server's code when it refused it (failed), or its last word while it waits (queued). */
  code?: string | null;
  /** Why the server refused it (failed), or why it is still waiting (queued), in words. */
  reason: string | null;
  /**
   * In doubt: sent at least once without a final answer yet (the answer was lost, or ``pending``).
   * Set before sending, cleared on a final or retryable answer. No snapshot starts while a stock
   * movement is in doubt: it could be counted twice or never.
   */
  sent: boolean;
}

/** Where an interrupted snapshot resumes: its checkpoint C, the next page's cursor, products stored of the total. */
export interface SnapshotProgress {
  checkpoint: string;
  cursor: string;
  done: number;
  total: number | null;
}

export const CHECKPOINT_KEY = "checkpoint";
export const LAST_SYNC_KEY = "lastSyncAt";
/**
 * Products this device created whose create was answered ``duplicate`` before the feed brought them
 * (JSON array of ids): shown from the create until a complete pull either brings them or, not doing
 * so, says the server no longer holds them (``outbox.ts``, ``download.ts``); absent when none is.
 */
export const UNCONFIRMED_KEY = "unconfirmedCreates";
/** A snapshot under way (JSON of ``SnapshotProgress``); absent when none is. */
export const SNAPSHOT_KEY = "snapshot";
/** The last ``modifiedAt`` this device stamped (ISO), so stamps only ever grow (see ``clock.ts``). */
export const STAMP_KEY = "lastStamp";

export interface OutboxCounts {
  queued: number;
  failed: number;
  /** Queued entries with at least ``stuckAfter`` attempts. */
  stuck: number;
}

/** The signed effect of a movement on its product's stock. */
export function signed(movement: { kind: "entry" | "exit"; quantity: number }): number {
  return movement.kind === "entry" ? movement.quantity : -movement.quantity;
}

/** Reads and writes; inside {@link SyncStore.transaction} they all commit together or not at all. */
export interface SyncTx {
  addEntry(entry: Omit<OutboxEntry, "seq">): Promise<number>;
  /** Queued entries, in the order they were made. */
  queuedEntries(): Promise<OutboxEntry[]>;
  /** Every entry (queued and failed) of these products, in the order they were made. */
  entriesOf(productIds: readonly string[]): Promise<OutboxEntry[]>;
  allEntries(): Promise<OutboxEntry[]>;
  updateEntries(changes: readonly { seq: number; changes: Partial<Omit<OutboxEntry, "seq">> }[]): Promise<void>;
  deleteEntries(seqs: readonly number[]): Promise<void>;
  outboxCounts(stuckAfter: number): Promise<OutboxCounts>;

  /** Products as shown (``undefined``: not shown). */
  getProducts(ids: readonly string[]): Promise<(LocalProduct | undefined)[]>;
  putProducts(products: readonly LocalProduct[]): Promise<void>;
  deleteProducts(ids: readonly string[]): Promise<void>;

  /**
   * Products as the server last said they are, tombstones included (``deleted``: kept so a queued
   * create cannot bring a deleted product back, never shown); ``undefined``: the server has not said.
   */
  getServerStates(ids: readonly string[]): Promise<(LocalProduct | undefined)[]>;
  putServerStates(states: readonly LocalProduct[]): Promise<void>;
  deleteServerStates(ids: readonly string[]): Promise<void>;

  getMovements(ids: readonly string[]): Promise<(LocalMovement | undefined)[]>;
  putMovements(movements: readonly LocalMovement[]): Promise<void>;

  getLevels(productIds: readonly string[]): Promise<(LevelRow | undefined)[]>;
  putLevels(rows: readonly LevelRow[]): Promise<void>;

  getMeta(key: string): Promise<string | null>;
  setMeta(key: string, value: string | null): Promise<void>;

  /** The start of a snapshot: products (shown and server's), movements and levels all go. */
  clearServerCopy(): Promise<void>;
}

export interface SyncStore extends SyncTx {
  /** Run ``work`` in one read-write transaction over everything; it must await nothing but ``tx``. */
  transaction<T>(work: (tx: SyncTx) => Promise<T>): Promise<T>;
}
