/** The device's copy of the tenant's data, and the outbox of changes not yet confirmed (IndexedDB via Dexie). */
import Dexie, { type EntityTable } from "dexie";
import type { Operation, ProductState, StockMovementState } from "../api/types";

/** A product as this device shows it: the server's state with this device's queued edits on top. */
export type LocalProduct = Omit<ProductState, "checkpoint"> & { checkpoint: string | null };

/** A movement; ``checkpoint`` is ``null`` until the server has recorded it, ``failed`` once it refused it. */
export type LocalMovement = Omit<StockMovementState, "checkpoint"> & { checkpoint: string | null; failed?: boolean };

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
}

interface MetaRow {
  key: string;
  value: string | null;
}

export class LocalDb extends Dexie {
  products!: EntityTable<LocalProduct, "id">;
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
  }

  async getMeta(key: string): Promise<string | null> {
    return (await this.meta.get(key))?.value ?? null;
  }

  async setMeta(key: string, value: string | null): Promise<void> {
    await this.meta.put({ key, value });
  }
}

export const CHECKPOINT_KEY = "checkpoint";
export const LAST_SYNC_KEY = "lastSyncAt";
