/**
 * Rebase: what a product shows is the server's state of it with this device's queued product
 * operations on top, in the order they were made. The server's state is kept (the ``server`` copy,
 * tombstones included) so that it can be shown again whenever the outbox changes: a conflict, a
 * refusal (the change is undone), a page of the feed.
 */
import type { Operation } from "../api/types";
import type { LocalProduct, OutboxEntry, SyncTx } from "./store";

const PRODUCT_FIELDS = ["name", "sku", "barcode", "unit", "priceCents", "lowStockThreshold", "archived"] as const;

/** A product with every field empty: what a create starts from (and tests build on). */
export function blankProduct(id: string, modifiedAt: string): LocalProduct {
  return {
    id,
    name: null,
    sku: null,
    barcode: null,
    unit: null,
    priceCents: null,
    lowStockThreshold: null,
    archived: false,
    deleted: false,
    modifiedAt,
    checkpoint: null,
  };
}

/** ``product`` deleted: a tombstone, kept and never shown. */
export function tombstone(id: string, product: LocalProduct | undefined, modifiedAt: string): LocalProduct {
  return { ...(product ?? blankProduct(id, modifiedAt)), deleted: true };
}

/**
 * The product after ``operation`` (a product operation) is applied locally; ``undefined`` when it is
 * deleted, or when an edit finds no product. The same rule the server applies for the device's own
 * later write.
 */
export function applyProductOperation(current: LocalProduct | undefined, operation: Operation): LocalProduct | undefined {
  if (operation.entityType !== "product") return current;
  if (operation.operationType === "delete") return undefined;
  if (operation.operationType === "update" && !current) return undefined; // edit of a product deleted here
  const next: LocalProduct = current ? { ...current } : blankProduct(operation.entityId, operation.modifiedAt);
  const fields = operation.payload as Record<string, unknown>;
  for (const field of PRODUCT_FIELDS) {
    if (field in fields) (next as Record<string, unknown>)[field] = fields[field] ?? null;
  }
  next.modifiedAt = operation.modifiedAt;
  return next;
}

/**
 * The product as the server holds it with this device's queued product operations on top;
 * ``undefined`` when it is not shown. A tombstone stays a tombstone: deletes win over every edit, and
 * a late create on top of one will be answered ``conflict`` (docs/sync-states.md).
 */
export function rebased(server: LocalProduct | null | undefined, entries: readonly OutboxEntry[]): LocalProduct | undefined {
  if (server?.deleted) return undefined;
  let product: LocalProduct | undefined = server ? { ...server } : undefined;
  const queued = entries
    .filter((entry) => entry.status === "queued" && entry.operation.entityType === "product")
    .sort((a, b) => (a.seq ?? 0) - (b.seq ?? 0));
  for (const entry of queued) product = applyProductOperation(product, entry.operation);
  return product;
}

function byProduct(entries: readonly OutboxEntry[]): Map<string, OutboxEntry[]> {
  const grouped = new Map<string, OutboxEntry[]>();
  for (const entry of entries) {
    const list = grouped.get(entry.productId);
    if (list) list.push(entry);
    else grouped.set(entry.productId, [entry]);
  }
  return grouped;
}

/** Show each product as ``states`` says the server holds it, with its queued operations on top: one outbox read, bulk writes. */
async function show(tx: SyncTx, states: ReadonlyMap<string, LocalProduct | null>): Promise<void> {
  const entries = byProduct(await tx.entriesOf([...states.keys()]));
  const puts: LocalProduct[] = [];
  const gone: string[] = [];
  for (const [id, server] of states) {
    const product = rebased(server, entries.get(id) ?? []);
    if (product) puts.push(product);
    else gone.push(id);
  }
  await tx.putProducts(puts);
  await tx.deleteProducts(gone);
}

/**
 * The server's word on some products (``null``: it holds none of it, as a snapshot that leaves it out
 * says), kept as their server copy, and each shown with its queued operations on top.
 */
export async function rebase(tx: SyncTx, states: ReadonlyMap<string, LocalProduct | null>): Promise<void> {
  if (states.size === 0) return;
  const puts: LocalProduct[] = [];
  const gone: string[] = [];
  for (const [id, state] of states) {
    if (state) puts.push(state);
    else gone.push(id);
  }
  await tx.putServerStates(puts);
  await tx.deleteServerStates(gone);
  await show(tx, states);
}

/** Show these products again from their kept server copy (after their queued operations changed). */
export async function reshow(tx: SyncTx, ids: Iterable<string>): Promise<void> {
  const unique = [...new Set(ids)];
  if (unique.length === 0) return;
  const servers = await tx.getServerStates(unique);
  await show(tx, new Map(unique.map((id, i) => [id, servers[i] ?? null])));
}

/**
 * The server's state after it applied ``operation`` (a product operation) of this device, as far as
 * the device can tell until the feed brings the server's own word: a tombstone stays one (deletes win).
 */
export function foldOperation(server: LocalProduct | undefined, operation: Operation): LocalProduct | undefined {
  if (operation.entityType !== "product" || server?.deleted) return server;
  if (operation.operationType === "delete") return tombstone(operation.entityId, server, operation.modifiedAt);
  return applyProductOperation(server, operation);
}
