import "fake-indexeddb/auto";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { HttpError, TransportError, type Gateway } from "../api/http";
import type { ChangeFeedPage, ItemResult, MovementPage, Operation, ProductState, SyncResponse } from "../api/types";
import { backoffDelay } from "./backoff";
import { CHECKPOINT_KEY, LocalDb } from "./db";
import { SyncEngine, type SyncNotice, type SyncStatus } from "./engine";
import { LocalActions, stockLevels } from "./local";

const TENANT = "00000000-0000-4000-8000-000000000001";

type SyncAnswer = (operations: Operation[]) => SyncResponse | Error;

/** A scripted gateway: records what it was sent, answers with the next scripted reply or "applied". */
class FakeGateway implements Gateway {
  sent: Operation[][] = [];
  syncAnswers: SyncAnswer[] = [];
  feed: ChangeFeedPage[] = [];
  feedErrors: Error[] = [];
  checkpointsAsked: (string | null)[] = [];
  concurrent = 0;
  maxConcurrent = 0;

  async sync(_checkpoint: string | null, operations: Operation[]): Promise<SyncResponse> {
    this.concurrent += 1;
    this.maxConcurrent = Math.max(this.maxConcurrent, this.concurrent);
    await new Promise((resolve) => setTimeout(resolve, 5));
    this.concurrent -= 1;
    this.sent.push(operations);
    const answer = this.syncAnswers.shift()?.(operations) ?? applied(operations);
    if (answer instanceof Error) throw answer;
    return answer;
  }

  async changes(checkpoint: string | null): Promise<ChangeFeedPage> {
    this.checkpointsAsked.push(checkpoint);
    const error = this.feedErrors.shift();
    if (error) throw error;
    return this.feed.shift() ?? { checkpoint: checkpoint ?? "0", hasMore: false, changes: [] };
  }

  async movements(): Promise<MovementPage> {
    return { items: [], nextCursor: null };
  }
}

function respond(results: ItemResult[]): SyncResponse {
  return { checkpoint: "10", serverTime: new Date().toISOString(), results };
}

function applied(operations: Operation[]): SyncResponse {
  return respond(operations.map((op) => ({ operationId: op.operationId, status: "applied" })));
}

function serverProduct(id: string, fields: Partial<ProductState> = {}): ProductState {
  return {
    id,
    name: "server",
    sku: null,
    barcode: null,
    unit: null,
    priceCents: null,
    lowStockThreshold: null,
    archived: false,
    deleted: false,
    modifiedAt: new Date().toISOString(),
    checkpoint: "5",
    ...fields,
  };
}

let db: LocalDb;
let gateway: FakeGateway;
let engine: SyncEngine;
let actions: LocalActions;
let online: boolean;
let statuses: SyncStatus[];
let notices: SyncNotice[];

async function settle(): Promise<void> {
  // Sync, then let the syncs it queued (the "again" flag, zero-delay retries) run to the end.
  for (let i = 0; i < 5; i++) {
    await engine.syncNow();
    await engine.idle();
  }
}

beforeEach(async () => {
  db = new LocalDb(`test-${crypto.randomUUID()}`);
  gateway = new FakeGateway();
  online = true;
  engine = new SyncEngine({ db, gateway, isOnline: () => online, random: () => 0, periodMs: 60_000 });
  actions = new LocalActions(db, { changed: () => undefined }, TENANT);
  statuses = [];
  notices = [];
  engine.onStatus((s) => statuses.push(s));
  engine.onNotice((n) => notices.push(n));
});

afterEach(async () => {
  await engine.stop();
  await db.delete();
});

describe("push", () => {
  it("sends the outbox in the order the changes were made, then is up to date", async () => {
    const id = await actions.createProduct({ name: "Tea" });
    await actions.updateProduct(id, { priceCents: 250 });
    await actions.recordMovement(id, "entry", 5);
    await settle();
    const sent = gateway.sent.flat().map((op) => `${op.entityType}:${op.operationType}`);
    expect(sent).toEqual(["product:create", "product:update", "stockMovement:create"]);
    expect(await db.outbox.count()).toBe(0);
    expect(engine.current.state).toBe("upToDate");
    expect(engine.current.queued).toBe(0);
  });

  it("runs one sync at a time however often it is asked", async () => {
    await actions.createProduct({ name: "A" });
    await Promise.all([engine.syncNow(), engine.syncNow(), engine.syncNow()]);
    await settle();
    expect(gateway.maxConcurrent).toBe(1);
    expect(gateway.sent.flat()).toHaveLength(1);
  });

  it("keeps queued items and reports error while the server fails, then syncs them once it recovers", async () => {
    const id = await actions.createProduct({ name: "A" });
    gateway.syncAnswers.push(() => new HttpError(503, "UNAVAILABLE", "down", 5));
    await engine.syncNow();
    expect(engine.current.state).toBe("error");
    expect(engine.current.queued).toBe(1);
    expect(engine.current.lastError).toContain("UNAVAILABLE");
    await actions.recordMovement(id, "entry", 1); // the user keeps working
    await settle();
    expect(engine.current.state).toBe("upToDate");
    expect(gateway.sent.at(-1)?.map((op) => op.operationId)).toEqual(gateway.sent[0]!.map((op) => op.operationId).concat(gateway.sent.at(-1)![1]!.operationId));
  });

  it("does not retry a failing server sooner than its backoff when the user keeps working", async () => {
    await actions.createProduct({ name: "A" });
    gateway.syncAnswers.push(() => new HttpError(503, "UNAVAILABLE", "down", 60));
    await engine.syncNow();
    const realEngineActions = new LocalActions(db, engine, TENANT);
    await realEngineActions.createProduct({ name: "B" });
    engine.requestSync();
    await engine.idle();
    expect(gateway.sent).toHaveLength(1); // the next attempt waits for the backoff (Retry-After 60 s)
    await vi.waitFor(() => expect(engine.current).toMatchObject({ state: "error", queued: 2 }));
  });

  it("is offline, not in error, when the connection drops mid-sync", async () => {
    await actions.createProduct({ name: "A" });
    gateway.syncAnswers.push(() => {
      online = false;
      return new TransportError("Failed to fetch");
    });
    await engine.syncNow();
    expect(engine.current.state).toBe("offline");
    expect(engine.current.lastError).toBeNull();
    expect(engine.current.queued).toBe(1);
  });

  it("marks a permanent refusal failed with its reason, and it blocks nothing behind it", async () => {
    const bad = await actions.createProduct({ name: "bad" });
    const good = await actions.createProduct({ name: "good" });
    gateway.syncAnswers.push((ops) =>
      respond([
        { operationId: ops[0]!.operationId, status: "rejected", code: "VALIDATION_ERROR", message: "name: too long", retryable: false },
        { operationId: ops[1]!.operationId, status: "applied" },
      ]),
    );
    await settle();
    const failed = await db.outbox.where("status").equals("failed").toArray();
    expect(failed.map((e) => e.entityId)).toEqual([bad]);
    expect(failed[0]!.reason).toBe("VALIDATION_ERROR: name: too long");
    expect(engine.current).toMatchObject({ failed: 1, queued: 0, state: "upToDate" });
    expect(notices).toEqual([{ kind: "failed", productId: bad, message: "VALIDATION_ERROR: name: too long" }]);
    expect(gateway.sent.flat().filter((op) => op.entityId === good)).toHaveLength(1);
  });

  it("fails the queued changes of a product whose creation was refused, instead of retrying them forever", async () => {
    const id = await actions.createProduct({ name: "x".repeat(10) });
    const movement = await actions.recordMovement(id, "entry", 3);
    const other = await actions.createProduct({ name: "fine" });
    gateway.syncAnswers.push((ops) =>
      respond([
        { operationId: ops[0]!.operationId, status: "rejected", code: "VALIDATION_ERROR", message: "bad name", retryable: false },
        { operationId: ops[1]!.operationId, status: "rejected", code: "NOT_FOUND", message: "no such product", retryable: true },
        { operationId: ops[2]!.operationId, status: "applied" },
      ]),
    );
    await settle();
    const failed = await db.outbox.where("status").equals("failed").toArray();
    expect(failed.map((e) => e.entityId).sort()).toEqual([id, movement].sort());
    expect(failed.find((e) => e.entityId === movement)?.reason).toContain("creation was refused");
    expect(await db.products.get(id)).toBeUndefined();
    expect((await db.movements.get(movement))?.failed).toBe(true);
    expect(engine.current).toMatchObject({ queued: 0, failed: 2, state: "upToDate" });
    expect(gateway.sent.flat().filter((op) => op.entityId === other)).toHaveLength(1);
  });

  it("keeps pending and retryable items queued and retries them with the same ids", async () => {
    const id = await actions.createProduct({ name: "A" });
    await actions.recordMovement(id, "entry", 2);
    gateway.syncAnswers.push((ops) =>
      respond([
        { operationId: ops[0]!.operationId, status: "pending", retryable: true },
        { operationId: ops[1]!.operationId, status: "rejected", code: "NOT_FOUND", message: "no such product", retryable: true },
      ]),
    );
    await engine.syncNow();
    expect(engine.current).toMatchObject({ queued: 2, failed: 0, state: "syncing" });
    await settle();
    expect(gateway.sent[1]!.map((op) => op.operationId)).toEqual(gateway.sent[0]!.map((op) => op.operationId));
    expect(engine.current.state).toBe("upToDate");
  });

  it("applies the server's state on conflict, with queued edits on top, and says so without asking", async () => {
    const id = await actions.createProduct({ name: "mine" });
    await actions.updateProduct(id, { sku: "SKU-LOCAL" });
    gateway.syncAnswers.push((ops) =>
      respond([
        {
          operationId: ops[0]!.operationId,
          status: "conflict",
          code: "CONFLICT_RESOLVED",
          serverState: serverProduct(id, { name: "theirs", unit: "kg" }),
        },
        { operationId: ops[1]!.operationId, status: "pending", retryable: true },
      ]),
    );
    await engine.syncNow();
    const product = await db.products.get(id);
    expect(product).toMatchObject({ name: "theirs", unit: "kg", sku: "SKU-LOCAL" });
    expect(notices).toEqual([{ kind: "conflict", productId: id, message: "updated from another device" }]);
  });
});

describe("pull", () => {
  it("applies every page and stores the checkpoint after each", async () => {
    const id = crypto.randomUUID();
    gateway.feed.push(
      { checkpoint: "3", hasMore: true, changes: [{ checkpoint: "3", entityType: "product", entityId: id, operation: "upsert", product: serverProduct(id, { name: "P" }) }] },
      {
        checkpoint: "4",
        hasMore: false,
        changes: [
          {
            checkpoint: "4",
            entityType: "stockMovement",
            entityId: crypto.randomUUID(),
            operation: "upsert",
            movement: { id: crypto.randomUUID(), productId: id, kind: "entry", quantity: 7, reason: null, occurredAt: new Date().toISOString(), checkpoint: "4" },
          },
        ],
      },
    );
    await engine.syncNow();
    expect(gateway.checkpointsAsked).toEqual([null, "3"]);
    expect(await db.getMeta(CHECKPOINT_KEY)).toBe("4");
    expect((await db.products.get(id))?.name).toBe("P");
    expect(stockLevels(await db.movements.toArray()).get(id)).toBe(7);
  });

  it("shows queued edits on top of a pulled state, and drops a product the server deleted", async () => {
    const mine = await actions.createProduct({ name: "mine" });
    await actions.updateProduct(mine, { name: "renamed here" });
    const gone = crypto.randomUUID();
    await db.products.put({ ...serverProduct(gone) });
    online = false; // queue stays, then we feed a pull by hand
    online = true;
    gateway.syncAnswers.push((ops) => respond(ops.map((op) => ({ operationId: op.operationId, status: "pending", retryable: true }))));
    gateway.feed.push({
      checkpoint: "9",
      hasMore: false,
      changes: [
        { checkpoint: "8", entityType: "product", entityId: mine, operation: "upsert", product: serverProduct(mine, { name: "server name", unit: "box" }) },
        { checkpoint: "9", entityType: "product", entityId: gone, operation: "delete", product: serverProduct(gone, { deleted: true }) },
      ],
    });
    await engine.syncNow();
    expect(await db.products.get(mine)).toMatchObject({ name: "renamed here", unit: "box" });
    expect(await db.products.get(gone)).toBeUndefined();
  });

  it("downloads everything again on RESET_REQUIRED, keeping the outbox", async () => {
    await db.setMeta(CHECKPOINT_KEY, "2");
    const stale = crypto.randomUUID();
    await db.products.put(serverProduct(stale));
    gateway.syncAnswers.push((ops) => new HttpError(503, "UNAVAILABLE", "down", null));
    const queued = await actions.createProduct({ name: "queued" });
    await engine.syncNow(); // fails: the create stays queued
    gateway.feedErrors.push(new HttpError(409, "RESET_REQUIRED", "too old", null));
    gateway.syncAnswers.push((ops) => respond(ops.map((op) => ({ operationId: op.operationId, status: "pending", retryable: true }))));
    await engine.syncNow();
    expect(gateway.checkpointsAsked.slice(-2)).toEqual(["2", null]);
    expect(await db.products.get(stale)).toBeUndefined();
    expect(await db.products.get(queued)).toMatchObject({ name: "queued" });
    expect(await db.outbox.count()).toBe(1);
  });
});

describe("backoff", () => {
  it("grows exponentially up to the cap, with jitter below it and a floor from Retry-After", () => {
    const policy = { baseMs: 100, maxMs: 1000 };
    expect([1, 2, 3, 4, 5, 9].map((n) => backoffDelay(n, policy, () => 1))).toEqual([100, 200, 400, 800, 1000, 1000]);
    expect(backoffDelay(3, policy, () => 0.5)).toBe(200);
    expect(backoffDelay(1, policy, () => 0, 3000)).toBe(3000);
  });
});

describe("status", () => {
  it("is offline while there is no connection, counting what is queued", async () => {
    online = false;
    await actions.createProduct({ name: "A" });
    await engine.syncNow();
    expect(engine.current).toMatchObject({ state: "offline", queued: 1 });
    expect(gateway.sent).toHaveLength(0);
  });
});
