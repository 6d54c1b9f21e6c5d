/**
 * The device's copy of the tenant's data, and the outbox of changes not yet confirmed (IndexedDB via
 * Dexie), behind the ``SyncStore`` interface the engine uses (``DexieStore``).
 */
import Dexie, { type EntityTable, type Transaction } from "dexie";
import {
  signed,
  type LevelRow,
  type LocalMovement,
  type LocalProduct,
  type OutboxCounts,
  type OutboxEntry,
  type SyncStore,
  type SyncTx,
} from "./store";

export * from "./store";

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

/** The name of the database of one tenant and user on this device. */
export function localDbName(tenantId: string, userId: string): string {
  return `stockzen-${tenantId}-${userId}`;
}

/**
 * Deletes ``db``'s database from this device: products, levels, movements, the outbox, the server
 * copies and meta. It is closed first, so nothing of this tab opens it again; ``blocked`` is called
 * while another tab still holds it open (it is deleted once that tab lets go).
 */
export function deleteLocalDb(db: LocalDb, blocked: () => void = () => undefined): Promise<void> {
  db.close({ disableAutoOpen: true });
  return new Promise((resolve, reject) => {
    const request = indexedDB.deleteDatabase(db.name);
    request.onsuccess = () => resolve();
    request.onerror = () => reject(request.error ?? new Error("this device's data could not be deleted"));
    request.onblocked = () => blocked();
  });
}

export class LocalDb extends Dexie {
  products!: EntityTable<StoredProduct, "id">;
  levels!: EntityTable<LevelRow, "productId">;
  movements!: EntityTable<LocalMovement, "id">;
  outbox!: EntityTable<OutboxEntry, "seq">;
  meta!: EntityTable<MetaRow, "key">;
  /** Products as the server last said they are, tombstones included: what a refused change is undone to. */
  server!: EntityTable<LocalProduct, "id">;

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
    this.version(3)
      .stores({
        products: "id, [sortName+id], *terms",
        server: "id",
        levels: "productId",
        movements: "id, productId, [productId+occurredAt]",
        outbox: "++seq, status, productId, [status+attempts]",
        meta: "key",
      })
      .upgrade(upgradeToServerCopy);
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

/**
 * From version 2 (no server copy): the server's state of each product is taken to be the one shown,
 * exact for every product without queued edits; for one with queued edits it includes them until the
 * feed next brings the product (only a refusal of one of those edits would then show it a little
 * longer). A product whose create is still queued has no server state. Failed entries get their code
 * from their reason ("CODE: message").
 */
async function upgradeToServerCopy(tx: Transaction): Promise<void> {
  const outbox = tx.table<OutboxEntry, number>("outbox");
  const unsent = new Set<string>();
  await outbox.each((entry) => {
    if (entry.status === "queued" && entry.operation.entityType === "product" && entry.operation.operationType === "create") unsent.add(entry.entityId);
  });
  const states: LocalProduct[] = [];
  await tx.table<StoredProduct, string>("products").each((product) => {
    if (unsent.has(product.id)) return;
    const { sortName: _sortName, terms: _terms, ...state } = product;
    states.push(state);
  });
  await tx.table<LocalProduct, string>("server").bulkPut(states);
  await outbox.toCollection().modify((entry) => {
    entry.code = entry.status === "failed" ? (/^([A-Z][A-Z_]*):/.exec(entry.reason ?? "")?.[1] ?? null) : null;
  });
}

/**
 * The ``SyncStore`` over a ``LocalDb``. Inside ``transaction`` every read and write goes through the
 * tables of that transaction (bound to it explicitly, not through Dexie's zone), so the work may await
 * plain promises too (an async helper with nothing to do) without the transaction committing under it.
 */
export class DexieStore implements SyncStore {
  constructor(
    readonly db: LocalDb,
    private readonly trans: Transaction | null = null,
  ) {}

  private get tables() {
    const table = <T, K>(name: string) => (this.trans ? this.trans.table<T, K>(name) : this.db.table<T, K>(name));
    return {
      products: table<StoredProduct, string>("products"),
      server: table<LocalProduct, string>("server"),
      levels: table<LevelRow, string>("levels"),
      movements: table<LocalMovement, string>("movements"),
      outbox: table<OutboxEntry, number>("outbox"),
      meta: table<MetaRow, string>("meta"),
    };
  }

  transaction<T>(work: (tx: SyncTx) => Promise<T>): Promise<T> {
    if (this.trans) return work(this);
    const { products, server, levels, movements, outbox, meta } = this.db;
    return this.db.transaction("rw", [products, server, levels, movements, outbox, meta], (trans) => work(new DexieStore(this.db, trans)));
  }

  async addEntry(entry: Omit<OutboxEntry, "seq">): Promise<number> {
    return this.tables.outbox.add(entry);
  }

  queuedEntries(): Promise<OutboxEntry[]> {
    return this.tables.outbox.where("status").equals("queued").sortBy("seq");
  }

  async entriesOf(productIds: readonly string[]): Promise<OutboxEntry[]> {
    if (productIds.length === 0) return [];
    return this.tables.outbox.where("productId").anyOf([...productIds]).sortBy("seq");
  }

  allEntries(): Promise<OutboxEntry[]> {
    return this.tables.outbox.orderBy("seq").toArray();
  }

  async updateEntries(changes: readonly { seq: number; changes: Partial<Omit<OutboxEntry, "seq">> }[]): Promise<void> {
    if (changes.length > 0) await this.tables.outbox.bulkUpdate(changes.map(({ seq, changes }) => ({ key: seq, changes })));
  }

  async deleteEntries(seqs: readonly number[]): Promise<void> {
    if (seqs.length > 0) await this.tables.outbox.bulkDelete([...seqs]);
  }

  async outboxCounts(stuckAfter: number): Promise<OutboxCounts> {
    const { outbox } = this.tables;
    const [queued, failed, stuck] = await Promise.all([
      outbox.where("status").equals("queued").count(),
      outbox.where("status").equals("failed").count(),
      outbox.where("[status+attempts]").between(["queued", stuckAfter], ["queued", Dexie.maxKey], true, true).count(),
    ]);
    return { queued, failed, stuck };
  }

  getProducts(ids: readonly string[]): Promise<(LocalProduct | undefined)[]> {
    return this.tables.products.bulkGet([...ids]);
  }

  async putProducts(products: readonly LocalProduct[]): Promise<void> {
    if (products.length > 0) await this.tables.products.bulkPut(products.map(storedProduct));
  }

  async deleteProducts(ids: readonly string[]): Promise<void> {
    if (ids.length > 0) await this.tables.products.bulkDelete([...ids]);
  }

  getServerStates(ids: readonly string[]): Promise<(LocalProduct | undefined)[]> {
    return this.tables.server.bulkGet([...ids]);
  }

  async putServerStates(states: readonly LocalProduct[]): Promise<void> {
    if (states.length > 0) await this.tables.server.bulkPut([...states]);
  }

  async deleteServerStates(ids: readonly string[]): Promise<void> {
    if (ids.length > 0) await this.tables.server.bulkDelete([...ids]);
  }

  getMovements(ids: readonly string[]): Promise<(LocalMovement | undefined)[]> {
    return this.tables.movements.bulkGet([...ids]);
  }

  async putMovements(movements: readonly LocalMovement[]): Promise<void> {
    if (movements.length > 0) await this.tables.movements.bulkPut([...movements]);
  }

  getLevels(productIds: readonly string[]): Promise<(LevelRow | undefined)[]> {
    return this.tables.levels.bulkGet([...productIds]);
  }

  async putLevels(rows: readonly LevelRow[]): Promise<void> {
    if (rows.length > 0) await this.tables.levels.bulkPut([...rows]);
  }

  async getMeta(key: string): Promise<string | null> {
    return (await this.tables.meta.get(key))?.value ?? null;
  }

  async setMeta(key: string, value: string | null): Promise<void> {
    await this.tables.meta.put({ key, value });
  }

  async clearServerCopy(): Promise<void> {
    const { products, server, movements, levels } = this.tables;
    await Promise.all([products.clear(), server.clear(), movements.clear(), levels.clear()]);
  }
}
