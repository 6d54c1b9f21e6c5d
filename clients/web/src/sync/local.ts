/**
 * What the user does, written locally first: the local copy changes and the operation joins the
 * outbox in one IndexedDB transaction, so nothing waits for the network and nothing is lost.
 */
import type { MovementKind, ProductCreate, ProductPatch } from "../api/types";
import type { LocalDb, LocalMovement, LocalProduct, OutboxEntry } from "./db";
import type { SyncEngine } from "./engine";
import {
  applyProductOperation,
  createProductOp,
  deleteProductOp,
  movementOp,
  newId,
  updateProductOp,
} from "./operations";

export class LocalActions {
  constructor(
    private readonly db: LocalDb,
    private readonly engine: Pick<SyncEngine, "changed">,
    private readonly tenantId: string,
    private readonly now: () => Date = () => new Date(),
  ) {}

  private async enqueue(entry: Omit<OutboxEntry, "status" | "attempts" | "reason">, product?: LocalProduct | null, movement?: LocalMovement): Promise<void> {
    await this.db.transaction("rw", this.db.outbox, this.db.products, this.db.movements, async () => {
      await this.db.outbox.add({ ...entry, status: "queued", attempts: 0, reason: null });
      if (product === null) await this.db.products.delete(entry.productId);
      else if (product) await this.db.products.put(product);
      if (movement) await this.db.movements.put(movement);
    });
    this.engine.changed();
  }

  /** A new product (its id is made here and kept forever); returns the id. */
  async createProduct(fields: ProductCreate): Promise<string> {
    const id = newId();
    const operation = createProductOp(this.tenantId, id, fields, this.now());
    await this.enqueue({ operation, entityId: id, productId: id }, applyProductOperation(undefined, operation));
    return id;
  }

  /** Change some fields of a product. */
  async updateProduct(id: string, patch: ProductPatch): Promise<void> {
    const operation = updateProductOp(this.tenantId, id, patch, this.now());
    const current = await this.db.products.get(id);
    await this.enqueue({ operation, entityId: id, productId: id }, applyProductOperation(current, operation) ?? null);
  }

  async deleteProduct(id: string): Promise<void> {
    const operation = deleteProductOp(this.tenantId, id, this.now());
    await this.enqueue({ operation, entityId: id, productId: id }, null);
  }

  /** Record an entry or exit of ``quantity`` units. */
  async recordMovement(productId: string, kind: MovementKind, quantity: number, reason?: string): Promise<string> {
    const id = newId();
    const at = this.now();
    const payload = { productId, kind, quantity, reason: reason || null, occurredAt: at.toISOString() };
    const movement: LocalMovement = { id, ...payload, reason: payload.reason, occurredAt: payload.occurredAt, checkpoint: null };
    await this.enqueue({ operation: movementOp(this.tenantId, id, payload, at), entityId: id, productId }, undefined, movement);
    return id;
  }

  /** A failed change the user has read and let go of. */
  async dismissFailed(seq: number): Promise<void> {
    await this.db.outbox.delete(seq);
    this.engine.changed();
  }
}

/** Stock of each product: the sum of its movements (entries minus exits), refused ones left out. */
export function stockLevels(movements: LocalMovement[]): Map<string, number> {
  const levels = new Map<string, number>();
  for (const m of movements) {
    if (m.failed) continue;
    const signed = m.kind === "entry" ? m.quantity : -m.quantity;
    levels.set(m.productId, (levels.get(m.productId) ?? 0) + signed);
  }
  return levels;
}
