/**
 * What the user does, written locally first: the local copy changes and the operation joins the
 * outbox in one IndexedDB transaction, so nothing waits for the network and nothing is lost.
 */
import type { MovementKind, Operation, ProductCreate, ProductPatch } from "../api/types";
import { signed, storedProduct, type LocalDb, type LocalMovement } from "./db";
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

  private async queue(operation: Operation, productId: string): Promise<void> {
    await this.db.outbox.add({ operation, entityId: operation.entityId, productId, status: "queued", attempts: 0, reason: null, sent: false });
  }

  /**
   * A product operation: queued, and applied to the product as it is *inside* the same transaction
   * (read there, so an edit made meanwhile by a sync or another tab is never overwritten).
   */
  private async productChange(operation: Operation): Promise<void> {
    const id = operation.entityId;
    await this.db.transaction("rw", this.db.outbox, this.db.products, async () => {
      await this.queue(operation, id);
      const next = applyProductOperation(await this.db.products.get(id), operation);
      if (next) await this.db.products.put(storedProduct(next));
      else await this.db.products.delete(id);
    });
    this.engine.changed();
  }

  /** A new product (its id is made here and kept forever); returns the id. */
  async createProduct(fields: ProductCreate): Promise<string> {
    const id = newId();
    await this.productChange(createProductOp(this.tenantId, id, fields, this.now()));
    return id;
  }

  /** Change some fields of a product. */
  async updateProduct(id: string, patch: ProductPatch): Promise<void> {
    await this.productChange(updateProductOp(this.tenantId, id, patch, this.now()));
  }

  async deleteProduct(id: string): Promise<void> {
    await this.productChange(deleteProductOp(this.tenantId, id, this.now()));
  }

  /** Record an entry or exit of ``quantity`` units: queued, held, and counted as pending in one transaction. */
  async recordMovement(productId: string, kind: MovementKind, quantity: number, reason?: string): Promise<string> {
    const id = newId();
    const at = this.now();
    const payload = { productId, kind, quantity, reason: reason || null, occurredAt: at.toISOString() };
    const movement: LocalMovement = { id, ...payload, checkpoint: null };
    await this.db.transaction("rw", this.db.outbox, this.db.movements, this.db.levels, async () => {
      await this.queue(movementOp(this.tenantId, id, payload, at), productId);
      await this.db.movements.put(movement);
      const level = (await this.db.levels.get(productId)) ?? { productId, confirmed: 0, pending: 0 };
      await this.db.levels.put({ ...level, pending: level.pending + signed(movement) });
    });
    this.engine.changed();
    return id;
  }

  /** A failed change the user has read and let go of. */
  async dismissFailed(seq: number): Promise<void> {
    await this.db.outbox.delete(seq);
    this.engine.changed();
  }
}

/** Shown stock: the confirmed level and this device's pending movements. */
export function shownStock(level: { confirmed: number; pending: number } | undefined): number {
  return level ? level.confirmed + level.pending : 0;
}
