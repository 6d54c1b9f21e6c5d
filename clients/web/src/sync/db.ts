/** The device's copy of the tenant's data, and the outbox of changes not yet confirmed (IndexedDB via Dexie). */
import Dexie, { type EntityTable, type Transaction } from "dexie";
import type { Operation, ProductState, StockMovementState } from "../api/types";

/** A product as this device shows it: the server's state with this device's queued edits on top. */
export type LocalProduct = Omit<ProductState, "checkpoint"> & { checkpoint: string | null };

/**
 * A product as stored: with the keys of the list order and of search, always derived from its
 * fields by {@link storedProduct} (never written by hand).
 */
export type StoredProduct = LocalProduct & {
  /** The name folded (lowercase, accents removed): the list is ordered by ``[sortName+id]``. */
  sortName: string;
  /** Folded words of the name, and the whole SKU and barcode: search is by prefix of these. */
  terms: string[];
};

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

export type OutboxStatus = "queued" | "failed";

/** One change waiting for the server's word, in the order the user made it (``seq``). */
export interface OutboxEntry {
  seq?: number;
  operation: Operation;
  entityId: string;
  /** The product it concerns (its own id, or a movement's product). */
  productId: string;
  status: OutboxStatus;
  attempts: number;
  /** Why the server refused it (failed), or why it is still waiting (queued). */
  reason: string | null;
  /**
   * In doubt: sent at least once without a final answer yet (the answer was lost, or ``pending``).
   * Set before sending, cleared on a final or retryable answer. No snapshot starts while a stock
   * movement is in doubt: it could be counted twice or never.
   */
  sent: boolean;
}

interface MetaRow {
  key: string;
  value: string | null;
}

/** Lowercase, compatibility forms unified, accents removed: "Café" and "cafe" sort and match alike. */
export function fold(text: string): string {
  return text.normalize("NFKD").replace(/\p{M}+/gu, "").toLowerCase();
}

const EDGE_PUNCTUATION = /^[^\p{L}\p{N}]+|[^\p{L}\p{N}]+$/gu;
const INNER_SEPARATORS = /[^\p{L}\p{N}]+/u;

/** The words of a text as search matches them: "Tea-Green (1.5L)" gives tea-green, tea, green, 1.5l, 1, 5l. */
export function words(text: string): string[] {
  const found = new Set<string>();
  for (const token of fold(text).split(/\s+/)) {
    const word = token.replace(EDGE_PUNCTUATION, "");
    if (!word) continue;
    found.add(word);
    for (const part of word.split(INNER_SEPARATORS)) if (part) found.add(part);
  }
  return [...found];
}

/** The words of a search, each to match the start of one of a product's terms. */
export function queryWords(query: string): string[] {
  return fold(query)
    .split(/\s+/)
    .map((word) => word.replace(EDGE_PUNCTUATION, ""))
    .filter(Boolean);
}

/** The product with its list and search keys: every product write goes through here. */
export function storedProduct(product: LocalProduct): StoredProduct {
  const terms = new Set(words(product.name ?? ""));
  for (const code of [product.sku, product.barcode]) {
    const whole = code ? fold(code.trim()) : "";
    if (whole) terms.add(whole);
  }
  return { ...product, sortName: fold(product.name ?? "").trim(), terms: [...terms] };
}

/** The signed effect of a movement on its product's stock. */
export function signed(movement: { kind: "entry" | "exit"; quantity: number }): number {
  return movement.kind === "entry" ? movement.quantity : -movement.quantity;
}

export class LocalDb extends Dexie {
  products!: EntityTable<StoredProduct, "id">;
  levels!: EntityTable<LevelRow, "productId">;
  movements!: EntityTable<LocalMovement, "id">;
  outbox!: EntityTable<OutboxEntry, "seq">;
  meta!: EntityTable<MetaRow, "key">;

  /** One database per tenant and user, so that signing in as someone else never mixes data. */
  constructor(name: string) {
    super(name);
    this.version(1).stores({
      products: "id, name",
      movements: "id, productId, [productId+occurredAt]",
      outbox: "++seq, status, productId",
      meta: "key",
    });
    this.version(2)
      .stores({
        products: "id, [sortName+id], *terms",
        levels: "productId",
        movements: "id, productId, [productId+occurredAt]",
        outbox: "++seq, status, productId",
        meta: "key",
      })
      .upgrade(upgradeToLevels);
  }

  async getMeta(key: string): Promise<string | null> {
    return (await this.meta.get(key))?.value ?? null;
  }

  async setMeta(key: string, value: string | null): Promise<void> {
    await this.meta.put({ key, value });
  }
}

/**
 * From version 1 (levels summed from all movements on every render): products get their list and
 * search keys, levels are built once from the movements held (the feed's as confirmed, the device's
 * own not yet back as pending, refused ones not at all), and queued outbox entries count as in doubt,
 * since version 1 did not record whether an answer was lost; the next push settles them.
 */
async function upgradeToLevels(tx: Transaction): Promise<void> {
  await tx
    .table<StoredProduct, string>("products")
    .toCollection()
    .modify((product) => {
      Object.assign(product, storedProduct(product));
    });
  await tx
    .table<OutboxEntry, number>("outbox")
    .toCollection()
    .modify((entry) => {
      entry.sent = entry.status === "queued";
    });
  const levels = new Map<string, LevelRow>();
  await tx.table<LocalMovement, string>("movements").each((movement) => {
    if (movement.failed) return;
    let row = levels.get(movement.productId);
    if (!row) levels.set(movement.productId, (row = { productId: movement.productId, confirmed: 0, pending: 0 }));
    if (movement.checkpoint === null) row.pending += signed(movement);
    else row.confirmed += signed(movement);
  });
  await tx.table<LevelRow, string>("levels").bulkPut([...levels.values()]);
}

export const CHECKPOINT_KEY = "checkpoint";
export const LAST_SYNC_KEY = "lastSyncAt";
/** A snapshot under way (JSON of ``SnapshotProgress``); absent when none is. */
export const SNAPSHOT_KEY = "snapshot";

/** Where an interrupted snapshot resumes: its checkpoint C, the next page's cursor, products stored of the total. */
export interface SnapshotProgress {
  checkpoint: string;
  cursor: string;
  done: number;
  total: number | null;
}
