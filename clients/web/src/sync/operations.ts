/** Building the operations the app sends, each stamped by this device's clock (``clock.ts``). */
import type { Operation, ProductCreate, ProductPatch, StockMovementCreate } from "../api/types";

export function newId(): string {
  return crypto.randomUUID();
}

function base(tenantId: string, entityId: string, stamp: string) {
  const operationId = newId();
  return { operationId, idempotencyKey: operationId, entityId, tenantId, modifiedAt: stamp };
}

export function createProductOp(tenantId: string, productId: string, payload: ProductCreate, stamp: string): Operation {
  return { ...base(tenantId, productId, stamp), entityType: "product", operationType: "create", payload };
}

export function updateProductOp(tenantId: string, productId: string, payload: ProductPatch, stamp: string): Operation {
  return { ...base(tenantId, productId, stamp), entityType: "product", operationType: "update", payload };
}

export function deleteProductOp(tenantId: string, productId: string, stamp: string): Operation {
  return { ...base(tenantId, productId, stamp), entityType: "product", operationType: "delete", payload: {} };
}

export function movementOp(tenantId: string, movementId: string, payload: StockMovementCreate, stamp: string): Operation {
  return { ...base(tenantId, movementId, stamp), entityType: "stockMovement", operationType: "create", payload };
}
