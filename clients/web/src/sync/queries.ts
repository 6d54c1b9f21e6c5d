/**
 * What the screens read: one page of products through the indexes, with the levels and queued
 * changes of just those products. Nothing here reads all products or any movement.
 */
import { queryWords, type LevelRow, type LocalDb, type StoredProduct } from "./db";

export const PAGE_SIZE = 50;
/** Up to this many matches are read and ordered in memory; more are put in order by the list index. */
const SMALL_MATCH = 200;

export interface ProductListPage {
  products: StoredProduct[];
  /** Products in the list (all of them, or those matching the search). */
  total: number;
  /** Where the page starts (moved back onto the last page when the list got shorter). */
  offset: number;
}

export interface ProductListView extends ProductListPage {
  levels: Map<string, LevelRow>;
  /** Products of the page with changes still queued. */
  queued: Set<string>;
}

function clamp(offset: number, total: number, limit: number): number {
  if (total === 0) return 0;
  const last = Math.floor((total - 1) / limit) * limit;
  return Math.min(Math.max(0, Math.floor(offset / limit) * limit), last);
}

function byName(a: StoredProduct, b: StoredProduct): number {
  if (a.sortName !== b.sortName) return a.sortName < b.sortName ? -1 : 1;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/**
 * One page of the list ordered by name: without a search, read by the ``[sortName+id]`` index. With
 * one, each word must start one of a product's terms: the ids matching the first word come from the
 * ``terms`` index, and each other word narrows them through the same index (keys only, so a search
 * for "Product 00077" reads one product, not the 2,000 whose names start with "product"); then only
 * the page's products are read.
 */
export async function productPage(db: LocalDb, query: string, offset: number, limit = PAGE_SIZE): Promise<ProductListPage> {
  const [first, ...rest] = queryWords(query);
  if (first === undefined) {
    const total = await db.products.count();
    const start = clamp(offset, total, limit);
    const products = await db.products.orderBy("[sortName+id]").offset(start).limit(limit).toArray();
    return { products, total, offset: start };
  }
  const idsOf = async (word: string) => new Set(await db.products.where("terms").startsWith(word).primaryKeys());
  let matches = await idsOf(first);
  for (const word of rest) {
    if (matches.size === 0) break;
    const also = await idsOf(word);
    matches = new Set([...matches].filter((id) => also.has(id)));
  }
  const total = matches.size;
  const start = clamp(offset, total, limit);
  if (total <= SMALL_MATCH) {
    const found = (await db.products.bulkGet([...matches])).filter((p): p is StoredProduct => p !== undefined);
    return { products: found.sort(byName).slice(start, start + limit), total, offset: start };
  }
  // Many matches: their order from the list index (its keys only), then the page's products.
  const ordered = (await db.products.orderBy("[sortName+id]").primaryKeys()).filter((id) => matches.has(id));
  const page = await db.products.bulkGet(ordered.slice(start, start + limit));
  return { products: page.filter((p): p is StoredProduct => p !== undefined), total, offset: start };
}

/** A page of the list with the levels and queued changes of its products (by key, nothing more). */
export async function productListView(db: LocalDb, query: string, offset: number, limit = PAGE_SIZE): Promise<ProductListView> {
  const page = await productPage(db, query, offset, limit);
  const ids = page.products.map((p) => p.id);
  const [rows, entries] = await Promise.all([db.levels.bulkGet(ids), ids.length ? db.outbox.where("productId").anyOf(ids).toArray() : []]);
  const levels = new Map<string, LevelRow>();
  for (const row of rows) if (row) levels.set(row.productId, row);
  const queued = new Set(entries.filter((entry) => entry.status === "queued").map((entry) => entry.productId));
  return { ...page, levels, queued };
}
