/**
 * What the user does, written locally first: the operation joins the outbox, stamped by this device's
 * clock, and the local copy changes, in one IndexedDB transaction, so nothing waits for the network and
 * nothing is lost. Any tab may do this; the tab that syncs is told through ``changed``.
 */
import type { MovementKind, Operation, ProductCreate, ProductPatch } from "../api/types";
import { nextStamp } from "./clock";
import { createProductOp, deleteProductOp, movementOp, newId, updateProductOp } from "./operations";
import { reshow } from "./rebase";
import { STAMP_KEY, signed, type LocalMovement, type SyncStore, type SyncTx } from "./store";

/** Who hears that a change was queued: the sync engine, or the tab that leads the syncing. */
export interface ChangeListener {
  changed(): void;
}

export class LocalActions {
  constructor(
    private readonly store: SyncStore,
    private readonly listener: ChangeListener,
    private readonly tenantId: string,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /**
   * Queue the operation ``make`` builds with the next stamp, and apply it with ``apply``, all in one
   * transaction: the stamp, the product and the outbox are read there, so an edit made meanwhile by a
   * sync or another tab is never overwritten and no two changes share a stamp.
   */
  private async record(make: (stamp: string) => Operation, productId: string, apply: (tx: SyncTx, operation: Operation) => Promise<void>): Promise<void> {
    await this.store.transaction(async (tx) => {
      const stamp = nextStamp(this.now(), await tx.getMeta(STAMP_KEY));
      await tx.setMeta(STAMP_KEY, stamp);
      const operation = make(stamp);
      await tx.addEntry({ operation, entityId: operation.entityId, productId, status: "queued", attempts: 0, code: null, reason: null, sent: false });
      await apply(tx, operation);
    });
    this.listener.changed();
  }

  /** A product operation: the product shown again as the server holds it with the queued operations on top (a tombstone stays one). */
  private productChange(make: (stamp: string) => Operation, id: string): Promise<void> {
    return this.record(make, id, (tx) => reshow(tx, [id]));
  }

  /** A new product (its id is made here and kept forever); returns the id. */
  async createProduct(fields: ProductCreate): Promise<string> {
    const id = newId();
    await this.productChange((stamp) => createProductOp(this.tenantId, id, fields, stamp), id);
    return id;
  }

  /** Change some fields of a product. */
  async updateProduct(id: string, patch: ProductPatch): Promise<void> {
    await this.productChange((stamp) => updateProductOp(this.tenantId, id, patch, stamp), id);
  }

  async deleteProduct(id: string): Promise<void> {
    await this.productChange((stamp) => deleteProductOp(this.tenantId, id, stamp), id);
  }

  /** Record an entry or exit of ``quantity`` units: queued, held, and counted as pending in one transaction. */
  async recordMovement(productId: string, kind: MovementKind, quantity: number, reason?: string): Promise<string> {
    const id = newId();
    const payload = { productId, kind, quantity, reason: reason || null, occurredAt: this.now().toISOString() };
    const movement: LocalMovement = { id, ...payload, checkpoint: null };
    await this.record(
      (stamp) => movementOp(this.tenantId, id, payload, stamp),
      productId,
      async (tx) => {
        await tx.putMovements([movement]);
        const [level] = await tx.getLevels([productId]);
        const row = level ?? { productId, confirmed: 0, pending: 0 };
        await tx.putLevels([{ ...row, pending: row.pending + signed(movement) }]);
      },
    );
    return id;
  }

  /** A failed change the user has read and let go of (it was undone on the device when it was refused). */
  async dismissFailed(seq: number): Promise<void> {
    await this.store.deleteEntries([seq]);
    this.listener.changed();
  }
}

/** Shown stock: the confirmed level and this device's pending movements. */
export function shownStock(level: { confirmed: number; pending: number } | undefined): number {
  return level ? level.confirmed + level.pending : 0;
}
