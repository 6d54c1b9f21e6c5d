/** Building operations, and applying one to the local copy of a product (for "queued edits on top"). */
import type { Operation, ProductCreate, ProductPatch, ProductState, StockMovementCreate } from "../api/types";
import type { LocalProduct, OutboxEntry } from "./db";

export function newId(): string {
  return crypto.randomUUID();
}

function base(tenantId: string, entityId: string, now: Date) {
  const operationId = newId();
  return { operationId, idempotencyKey: operationId, entityId, tenantId, modifiedAt: now.toISOString() };
}

export function createProductOp(tenantId: string, productId: string, payload: ProductCreate, now: Date): Operation {
  return { ...base(tenantId, productId, now), entityType: "product", operationType: "create", payload };
}

export function updateProductOp(tenantId: string, productId: string, payload: ProductPatch, now: Date): Operation {
  return { ...base(tenantId, productId, now), entityType: "product", operationType: "update", payload };
}

export function deleteProductOp(tenantId: string, productId: string, now: Date): Operation {
  return { ...base(tenantId, productId, now), entityType: "product", operationType: "delete", payload: {} };
}

export function movementOp(tenantId: string, movementId: string, payload: StockMovementCreate, now: Date): Operation {
  return { ...base(tenantId, movementId, now), entityType: "stockMovement", operationType: "create", payload };
}

const PRODUCT_FIELDS = ["name", "sku", "barcode", "unit", "priceCents", "lowStockThreshold", "archived"] as const;

/**
 * The product after ``operation`` (a product operation) is applied locally; ``undefined`` when it is
 * deleted. The same rule the server applies for the device's own later write.
 */
export function applyProductOperation(current: LocalProduct | undefined, operation: Operation): LocalProduct | undefined {
  if (operation.entityType !== "product") return current;
  if (operation.operationType === "delete") return undefined;
  const fields = operation.payload as Record<string, unknown>;
  const next: LocalProduct = current
    ? { ...current }
    : {
        id: operation.entityId,
        name: null,
        sku: null,
        barcode: null,
        unit: null,
        priceCents: null,
        lowStockThreshold: null,
        archived: false,
        deleted: false,
        modifiedAt: operation.modifiedAt,
        checkpoint: null,
      };
  if (operation.operationType === "update" && !current) return undefined; // edit of a product deleted here
  for (const field of PRODUCT_FIELDS) {
    if (field in fields) (next as Record<string, unknown>)[field] = fields[field] ?? null;
  }
  next.modifiedAt = operation.modifiedAt;
  return next;
}

/**
 * The product as the server holds it (``null`` or a tombstone: gone) with this device's queued
 * product operations on top, in the order they were made; ``undefined`` when it is gone.
 */
export function rebased(server: ProductState | null, entries: readonly OutboxEntry[]): LocalProduct | undefined {
  let product: LocalProduct | undefined = server && !server.deleted ? { ...server } : undefined;
  const queued = entries
    .filter((entry) => entry.status === "queued" && entry.operation.entityType === "product")
    .sort((a, b) => (a.seq ?? 0) - (b.seq ?? 0));
  for (const entry of queued) product = applyProductOperation(product, entry.operation);
  return product;
}
