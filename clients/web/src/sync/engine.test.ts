import "fake-indexeddb/auto";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { HttpError, TransportError, type Gateway } from "../api/http";
import type {
  Change,
  ChangeFeedPage,
  ItemResult,
  MovementKind,
  MovementPage,
  Operation,
  ProductState,
  ProductView,
  SnapshotPage,
  SyncResponse,
} from "../api/types";
import { RETRY_AFTER_CAP_MS, backoffDelay } from "./backoff";
import { CHECKPOINT_KEY, DexieStore, LocalDb, SNAPSHOT_KEY, UNCONFIRMED_KEY, storedProduct } from "./db";
import { SyncEngine, type SyncNotice, type SyncStatus, type Timers } from "./engine";
import { LocalActions, shownStock } from "./local";
import { newId } from "./operations";
import { blankProduct } from "./rebase";

const TENANT = "00000000-0000-4000-8000-000000000001";

type SyncAnswer = (operations: Operation[]) => SyncResponse | Error;

/** A scripted gateway: records what it was sent, answers with the next scripted reply or "applied". */
class FakeGateway implements Gateway {
  sent: Operation[][] = [];
  syncAnswers: SyncAnswer[] = [];
  feed: ChangeFeedPage[] = [];
  feedErrors: Error[] = [];
  checkpointsAsked: (string | null)[] = [];
  /** Snapshot pages (or errors) in the order they are asked for; none left: an empty snapshot at "0". */
  snapshots: (SnapshotPage | Error)[] = [];
  cursorsAsked: (string | null)[] = [];
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

  async snapshot(cursor: string | null): Promise<SnapshotPage> {
    this.cursorsAsked.push(cursor);
    const page = this.snapshots.shift() ?? { checkpoint: "0", items: [], nextCursor: null, totalProducts: 0 };
    if (page instanceof Error) throw page;
    return page;
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
  return { ...blankProduct(id, new Date().toISOString()), name: "server", checkpoint: "5", ...fields };
}

function productView(id: string, stockLevel: number, fields: Partial<ProductState> = {}): ProductView {
  return { ...serverProduct(id, fields), stockLevel };
}

function movementChange(productId: string, quantity: number, checkpoint: string, kind: MovementKind = "entry", id: string = crypto.randomUUID()): Change {
  return {
    checkpoint,
    entityType: "stockMovement",
    entityId: id,
    operation: "upsert",
    movement: { id, productId, kind, quantity, reason: null, occurredAt: new Date().toISOString(), checkpoint },
  };
}

function productChange(product: ProductState): Change {
  return { checkpoint: product.checkpoint, entityType: "product", entityId: product.id, operation: product.deleted ? "delete" : "upsert", product };
}

const answerAll = (status: "pending" | "applied") => (ops: Operation[]) =>
  respond(ops.map((op) => ({ operationId: op.operationId, status, ...(status === "pending" ? { retryable: true } : {}) })));

async function shown(productId: string): Promise<number> {
  return shownStock(await db.levels.get(productId));
}

let db: LocalDb;
let store: DexieStore;
let gateway: FakeGateway;
/** The delays of the syncs the engine scheduled; none runs by itself (tests say when a sync runs). */
let scheduled: number[];
const timers: Timers = {
  set: (_callback, ms) => scheduled.push(ms),
  clear: () => undefined,
};
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

/** A new engine on the same database, as after a reload. */
async function newEngine(): Promise<SyncEngine> {
  await engine.stop();
  const fresh = new SyncEngine({ store, gateway, isOnline: () => online, random: () => 1, periodMs: 60_000, timers });
  fresh.onStatus((s) => statuses.push(s));
  fresh.onNotice((n) => notices.push(n));
  return fresh;
}

beforeEach(async () => {
  db = new LocalDb(`test-${crypto.randomUUID()}`);
  store = new DexieStore(db);
  gateway = new FakeGateway();
  online = true;
  scheduled = [];
  engine = new SyncEngine({ store, gateway, isOnline: () => online, random: () => 1, periodMs: 60_000, timers });
  actions = new LocalActions(store, { changed: () => undefined }, TENANT);
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

  it("keeps queued items while the server fails, says error from the third failure in a row, then syncs them once it recovers", async () => {
    const id = await actions.createProduct({ name: "A" });
    gateway.syncAnswers.push(...[1, 2, 3].map(() => () => new HttpError(503, "UNAVAILABLE", "down", 5)));
    await engine.syncNow();
    expect(engine.current).toMatchObject({ state: "syncing", queued: 1 }); // one failure is not yet a problem
    expect(engine.current.lastError).toContain("UNAVAILABLE");
    await engine.syncNow();
    expect(engine.current.state).toBe("syncing");
    await engine.syncNow();
    expect(engine.current).toMatchObject({ state: "error", queued: 1 });
    expect(scheduled.slice(-3)).toEqual([5000, 5000, 5000]); // at least Retry-After
    await actions.recordMovement(id, "entry", 1); // the user keeps working
    await settle();
    expect(engine.current.state).toBe("upToDate");
    expect(gateway.sent.at(-1)?.map((op) => op.operationId)).toEqual(gateway.sent[0]!.map((op) => op.operationId).concat(gateway.sent.at(-1)![1]!.operationId));
  });

  it("does not retry a failing server sooner than its backoff when the user keeps working", async () => {
    await actions.createProduct({ name: "A" });
    gateway.syncAnswers.push(() => new HttpError(503, "UNAVAILABLE", "down", 60));
    await engine.syncNow();
    const realEngineActions = new LocalActions(store, engine, TENANT);
    await realEngineActions.createProduct({ name: "B" });
    engine.requestSync();
    await engine.idle();
    expect(gateway.sent).toHaveLength(1); // the next attempt waits for the backoff (Retry-After 60 s)
    expect(scheduled).toEqual([60_000]);
    await vi.waitFor(() => expect(engine.current).toMatchObject({ state: "syncing", queued: 2 }));
  });

  it("backs off up to 60 s, and honours Retry-After up to 300 s only", async () => {
    await actions.createProduct({ name: "A" });
    gateway.syncAnswers.push(...Array.from({ length: 8 }, () => () => new HttpError(503, "UNAVAILABLE", "down", null)));
    for (let i = 0; i < 8; i++) await engine.syncNow();
    expect(scheduled).toEqual([1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000]);
    gateway.syncAnswers.push(() => new HttpError(429, "RATE_LIMITED", "slow down", 86_400));
    await engine.syncNow();
    expect(scheduled.at(-1)).toBe(RETRY_AFTER_CAP_MS);
    expect(RETRY_AFTER_CAP_MS).toBe(300_000);
  });

  it("says error at once on 401, keeping everything queued", async () => {
    await actions.createProduct({ name: "A" });
    gateway.syncAnswers.push(() => new HttpError(401, "UNAUTHORIZED", "expired", null));
    await engine.syncNow();
    expect(engine.current).toMatchObject({ state: "error", queued: 1 });
    expect(engine.current.lastError).toContain("sign in again");
  });

  it("is offline when a request gets no answer while the platform says online, and comes back when the server answers", async () => {
    await actions.createProduct({ name: "A" });
    gateway.syncAnswers.push(() => new TransportError("connection refused"));
    await engine.syncNow();
    expect(engine.current).toMatchObject({ state: "offline", queued: 1 });
    expect((await db.outbox.toArray())[0]?.sent).toBe(true); // in doubt: sent again with the same id
    engine.serverAnswered(); // the live stream opened: a sync at once
    await engine.idle();
    expect(engine.current).toMatchObject({ state: "upToDate", queued: 0 });
    expect(gateway.sent[1]!.map((op) => op.operationId)).toEqual(gateway.sent[0]!.map((op) => op.operationId));
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
    expect(failed[0]).toMatchObject({ code: "VALIDATION_ERROR", reason: "VALIDATION_ERROR: name: too long" });
    expect(engine.current).toMatchObject({ failed: 1, queued: 0, state: "upToDate" });
    expect(notices).toEqual([{ kind: "rejected", productId: bad, message: "VALIDATION_ERROR: name: too long" }]);
    expect(await db.products.get(bad)).toBeUndefined(); // a refused create: the product goes
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
    expect(failed.find((e) => e.entityId === movement)).toMatchObject({ code: "VALIDATION_ERROR" });
    expect(failed.find((e) => e.entityId === movement)?.reason).toContain("creation was refused");
    expect(await db.products.get(id)).toBeUndefined();
    expect((await db.movements.get(movement))?.failed).toBe(true);
    expect(await shown(id)).toBe(0); // its pending +3 was taken back
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
    // The first download then finds the product as the server holds it (its edit still queued).
    gateway.snapshots.push({ checkpoint: "3", items: [productView(id, 0, { name: "theirs", unit: "kg" })], nextCursor: null, totalProducts: 1 });
    await engine.syncNow();
    const product = await db.products.get(id);
    expect(product).toMatchObject({ name: "theirs", unit: "kg", sku: "SKU-LOCAL" });
    expect(notices).toEqual([{ kind: "conflict", productId: id, message: "updated from another device" }]);
  });
});

describe("settling", () => {
  it("applies the server's state carried by a duplicate that replays a conflict (the first answer was lost)", async () => {
    await db.setMeta(CHECKPOINT_KEY, "1");
    const id = await actions.createProduct({ name: "mine" });
    await actions.updateProduct(id, { unit: "box" });
    gateway.syncAnswers.push(() => new TransportError("the answer was lost"));
    await engine.syncNow();
    gateway.syncAnswers.push((ops) =>
      respond([
        { operationId: ops[0]!.operationId, status: "applied" },
        { operationId: ops[1]!.operationId, status: "duplicate", code: "CONFLICT_RESOLVED", serverState: serverProduct(id, { name: "theirs", unit: "kg" }) },
      ]),
    );
    await engine.syncNow();
    expect(await db.products.get(id)).toMatchObject({ name: "theirs", unit: "kg" });
    expect(await db.outbox.count()).toBe(0);
    expect(notices).toEqual([{ kind: "conflict", productId: id, message: "updated from another device" }]);
  });

  it("undoes an edit refused for good: the server's state with the other queued edits on top; dismissing changes nothing shown", async () => {
    await db.setMeta(CHECKPOINT_KEY, "1");
    const id = await actions.createProduct({ name: "Salt" });
    await settle(); // applied: the server holds it
    await actions.updateProduct(id, { priceCents: 10 ** 17 });
    await actions.updateProduct(id, { unit: "kg" });
    expect(await db.products.get(id)).toMatchObject({ priceCents: 10 ** 17, unit: "kg" });
    gateway.syncAnswers.push((ops) =>
      respond([
        { operationId: ops[0]!.operationId, status: "rejected", code: "VALIDATION_ERROR", message: "payload.priceCents: too large", retryable: false },
        { operationId: ops[1]!.operationId, status: "pending", retryable: true },
      ]),
    );
    await engine.syncNow();
    expect(await db.products.get(id)).toMatchObject({ name: "Salt", priceCents: null, unit: "kg" });
    const [failed] = await db.outbox.where("status").equals("failed").toArray();
    await actions.dismissFailed(failed!.seq!);
    expect(await db.products.get(id)).toMatchObject({ name: "Salt", priceCents: null, unit: "kg" });
  });

  it("removes a product whose change is refused NOT_FOUND for good (deleted, its tombstone purged)", async () => {
    await db.setMeta(CHECKPOINT_KEY, "1");
    const id = await actions.createProduct({ name: "Gone" });
    await settle();
    await actions.updateProduct(id, { sku: "X" });
    gateway.syncAnswers.push((ops) =>
      respond([{ operationId: ops[0]!.operationId, status: "rejected", code: "NOT_FOUND", message: "deleted", retryable: false }]),
    );
    await engine.syncNow();
    expect(await db.products.get(id)).toBeUndefined();
    expect(await db.server.get(id)).toMatchObject({ deleted: true }); // kept as a tombstone, never shown
    expect(engine.current).toMatchObject({ state: "upToDate", failed: 1 });
  });

  it("keeps showing a product it created when its create is answered duplicate before the feed brought it, while the pulls fail", async () => {
    await db.setMeta(CHECKPOINT_KEY, "1");
    const id = await actions.createProduct({ name: "Mine" });
    await actions.recordMovement(id, "entry", 1);
    // Accepted, not applied yet; the pull that follows gets no answer.
    gateway.syncAnswers.push(answerAll("pending"));
    gateway.feedErrors.push(new TransportError("the answer was lost"));
    await engine.syncNow();
    // Sent again: applied meanwhile, so a duplicate; the pull gets no answer again (a bad link).
    gateway.syncAnswers.push((ops) => respond(ops.map((op) => ({ operationId: op.operationId, status: "duplicate" }))));
    gateway.feedErrors.push(new TransportError("the answer was lost"));
    await engine.syncNow();
    expect(await db.outbox.count()).toBe(0);
    expect(await db.products.get(id)).toMatchObject({ name: "Mine" }); // not gone from the list
    expect(await shown(id)).toBe(1);
    // The feed brings it, with an edit from elsewhere: shown as the server holds it, and kept.
    gateway.feed.push({ checkpoint: "3", hasMore: false, changes: [productChange(serverProduct(id, { name: "Mine", sku: "X", checkpoint: "2" }))] });
    await engine.syncNow();
    expect(await db.products.get(id)).toMatchObject({ name: "Mine", sku: "X" });
    await engine.syncNow();
    expect(await db.products.get(id)).toMatchObject({ name: "Mine", sku: "X" });
    expect(await db.getMeta(UNCONFIRMED_KEY)).toBeNull();
  });

  it("drops a product created here, answered duplicate, that a complete pull does not bring (deleted before the device's snapshot)", async () => {
    const id = await actions.createProduct({ name: "Short-lived" });
    // In doubt; then the first download: another device deleted it before C, so no page shows it.
    gateway.syncAnswers.push(answerAll("pending"));
    gateway.snapshots.push({ checkpoint: "9", items: [], nextCursor: null, totalProducts: 0 });
    await engine.syncNow();
    expect(await db.products.get(id)).toMatchObject({ name: "Short-lived" }); // its create is still queued
    gateway.syncAnswers.push((ops) => respond(ops.map((op) => ({ operationId: op.operationId, status: "duplicate" }))));
    await engine.syncNow(); // the feed from C says nothing of it
    expect(gateway.checkpointsAsked).toEqual(["9", "9"]);
    expect(await db.products.get(id)).toBeUndefined();
    expect(await db.server.get(id)).toBeUndefined();
    expect(await db.getMeta(UNCONFIRMED_KEY)).toBeNull();
  });

  it("keeps a queued create hidden under a server tombstone", async () => {
    await db.setMeta(CHECKPOINT_KEY, "1");
    const id = await actions.createProduct({ name: "Late" });
    gateway.syncAnswers.push(answerAll("pending"));
    gateway.feed.push({ checkpoint: "2", hasMore: false, changes: [productChange(serverProduct(id, { deleted: true, checkpoint: "2" }))] });
    await engine.syncNow();
    expect(await db.products.get(id)).toBeUndefined();
    await actions.updateProduct(id, { sku: "still hidden" });
    expect(await db.products.get(id)).toBeUndefined();
  });

  it("splits a batch the server refuses whole (413) and fails the single operation it refuses, then still pulls", async () => {
    await db.setMeta(CHECKPOINT_KEY, "1");
    const ids = [await actions.createProduct({ name: "a" }), await actions.createProduct({ name: "b" }), await actions.createProduct({ name: "c" })];
    gateway.syncAnswers.push(
      () => new HttpError(413, "TOO_MANY_OPERATIONS", "too many", null),
      () => new HttpError(413, "TOO_MANY_OPERATIONS", "too many", null),
      () => new HttpError(413, "PAYLOAD_TOO_LARGE", "too large", null),
    );
    await engine.syncNow();
    expect(gateway.sent.map((ops) => ops.length)).toEqual([3, 2, 1, 1, 1]);
    expect((await db.outbox.toArray()).map((e) => [e.entityId, e.status, e.code])).toEqual([[ids[0], "failed", "PAYLOAD_TOO_LARGE"]]);
    expect(gateway.checkpointsAsked).toEqual(["1"]);
    expect(engine.current).toMatchObject({ state: "upToDate", failed: 1 });
  });

  it("holds a product's later changes behind its earlier one still waiting, within one sync", async () => {
    await db.setMeta(CHECKPOINT_KEY, "1");
    const engine2 = new SyncEngine({ store, gateway, isOnline: () => online, timers, batchSize: 1 });
    const id = await actions.createProduct({ name: "a" });
    await actions.updateProduct(id, { sku: "1" });
    const other = await actions.createProduct({ name: "b" });
    gateway.syncAnswers.push(answerAll("pending"));
    await engine2.syncNow();
    expect(gateway.sent.map((ops) => ops.map((op) => op.entityId))).toEqual([[id], [other]]);
    await engine2.stop();
  });
});

describe("pull", () => {
  it("applies every page and stores the checkpoint after each", async () => {
    await db.setMeta(CHECKPOINT_KEY, "2");
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
    expect(gateway.checkpointsAsked).toEqual(["2", "3"]);
    expect(gateway.cursorsAsked).toEqual([]); // a checkpoint: no snapshot
    expect(await db.getMeta(CHECKPOINT_KEY)).toBe("4");
    expect((await db.products.get(id))?.name).toBe("P");
    expect(await db.levels.get(id)).toEqual({ productId: id, confirmed: 7, pending: 0 });
  });

  it("shows queued edits on top of a pulled state, and drops a product the server deleted", async () => {
    await db.setMeta(CHECKPOINT_KEY, "7");
    const mine = await actions.createProduct({ name: "mine" });
    await actions.updateProduct(mine, { name: "renamed here" });
    const gone = crypto.randomUUID();
    await db.products.put(storedProduct(serverProduct(gone)));
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
    expect(await db.products.get(mine)).toMatchObject({ name: "renamed here", unit: "box", sortName: "renamed here" });
    expect((await db.products.get(mine))?.terms.sort()).toEqual(["here", "renamed"]);
    expect(await db.products.get(gone)).toBeUndefined();
  });

  it("takes a snapshot again on RESET_REQUIRED, keeping the outbox", async () => {
    await db.setMeta(CHECKPOINT_KEY, "2");
    const stale = crypto.randomUUID();
    await db.products.put(storedProduct(serverProduct(stale)));
    gateway.syncAnswers.push(() => new HttpError(503, "UNAVAILABLE", "down", null));
    const queued = await actions.createProduct({ name: "queued" });
    await engine.syncNow(); // fails: the create stays queued
    gateway.feedErrors.push(new HttpError(409, "RESET_REQUIRED", "too old", null));
    gateway.syncAnswers.push((ops) => respond(ops.map((op) => ({ operationId: op.operationId, status: "pending", retryable: true }))));
    gateway.snapshots.push({ checkpoint: "20", items: [], nextCursor: null, totalProducts: 0 });
    await engine.syncNow();
    expect(gateway.checkpointsAsked.slice(-2)).toEqual(["2", "20"]);
    expect(gateway.cursorsAsked).toEqual([null]);
    expect(await db.getMeta(CHECKPOINT_KEY)).toBe("20");
    expect(await db.products.get(stale)).toBeUndefined();
    expect(await db.products.get(queued)).toMatchObject({ name: "queued" });
    expect(await db.outbox.count()).toBe(1);
  });
});

describe("snapshot", () => {
  beforeEach(async () => {
    engine = await newEngine();
  });

  it("downloads the products with their levels as of C, then the feed from C, counting each movement once", async () => {
    const [a, b, c, early] = [crypto.randomUUID(), crypto.randomUUID(), crypto.randomUUID(), crypto.randomUUID()];
    gateway.snapshots.push(
      { checkpoint: "50", items: [productView(a, 10, { name: "Apple" }), productView(b, 3, { name: "Bean" })], nextCursor: "c1", totalProducts: 3 },
      { checkpoint: "50", items: [productView(c, 0, { name: "Corn" })], nextCursor: null, totalProducts: null },
    );
    const repeated = movementChange(a, 5, "51");
    gateway.feed.push(
      { checkpoint: "52", hasMore: true, remaining: 2, changes: [repeated, movementChange(b, 2, "52", "exit")] },
      {
        checkpoint: "54",
        hasMore: false,
        remaining: 0,
        changes: [
          { ...repeated, checkpoint: "53" }, // the same movement again: counted once
          productChange(serverProduct(b, { name: "Bean (dried)", checkpoint: "54" })),
          movementChange(early, 4, "54"), // before its product: the level is kept anyway
        ],
      },
    );
    await engine.syncNow();
    expect(gateway.cursorsAsked).toEqual([null, "c1"]);
    expect(gateway.checkpointsAsked).toEqual(["50", "52"]);
    expect(await db.getMeta(CHECKPOINT_KEY)).toBe("54");
    expect(await db.getMeta(SNAPSHOT_KEY)).toBeNull();
    expect([await shown(a), await shown(b), await shown(c), await shown(early)]).toEqual([15, 1, 0, 4]);
    expect(await db.levels.get(a)).toEqual({ productId: a, confirmed: 15, pending: 0 });
    expect((await db.products.get(b))?.name).toBe("Bean (dried)");
    expect(await db.movements.count()).toBe(3); // only the movements after C
    const progress = statuses.map((s) => s.progress).filter((p) => p !== null);
    expect(progress).toEqual([
      { done: 2, total: 3 },
      { done: 2, total: 4 },
    ]);
    expect(engine.current).toMatchObject({ state: "upToDate", progress: null });
  });

  it("keeps queued (unsent) movements and their pending level through RESET_REQUIRED, and forgets the rest", async () => {
    const p = crypto.randomUUID();
    await db.setMeta(CHECKPOINT_KEY, "2");
    gateway.feed.push({ checkpoint: "3", hasMore: false, changes: [productChange(serverProduct(p, { name: "Pear" })), movementChange(p, 10, "3")] });
    await engine.syncNow();
    expect(await shown(p)).toBe(10);

    online = false;
    const queued = await actions.recordMovement(p, "entry", 4);
    online = true;
    expect(await shown(p)).toBe(14);
    // The server stores nothing of it this time (retryable): queued, not in doubt.
    gateway.syncAnswers.push((ops) =>
      respond([{ operationId: ops[0]!.operationId, status: "rejected", code: "UNAVAILABLE", message: "later", retryable: true }]),
    );
    gateway.feedErrors.push(new HttpError(409, "RESET_REQUIRED", "too old", null));
    gateway.snapshots.push({ checkpoint: "40", items: [productView(p, 12, { name: "Pear" })], nextCursor: null, totalProducts: 1 });
    await engine.syncNow();
    expect(gateway.cursorsAsked).toEqual([null]);
    expect(await db.levels.get(p)).toEqual({ productId: p, confirmed: 12, pending: 4 });
    expect(await db.movements.toArray()).toMatchObject([{ id: queued, checkpoint: null }]);
    expect(await db.outbox.toArray()).toMatchObject([{ entityId: queued, status: "queued", sent: false }]);
    expect(await db.getMeta(CHECKPOINT_KEY)).toBe("40");
  });

  it("waits for a movement in doubt to settle before it starts, keeping the local data meanwhile", async () => {
    const p = crypto.randomUUID();
    await db.setMeta(CHECKPOINT_KEY, "2");
    gateway.feed.push({ checkpoint: "3", hasMore: false, changes: [productChange(serverProduct(p, { name: "Plum" })), movementChange(p, 10, "3")] });
    await engine.syncNow();
    await actions.recordMovement(p, "entry", 4);
    gateway.syncAnswers.push(answerAll("pending")); // accepted, not applied yet: in doubt
    gateway.feedErrors.push(new HttpError(409, "RESET_REQUIRED", "too old", null));
    await engine.syncNow();
    expect((await db.outbox.toArray())[0]?.sent).toBe(true);
    expect(gateway.cursorsAsked).toEqual([]); // no snapshot while it is in doubt
    expect(await db.getMeta(CHECKPOINT_KEY)).toBeNull();
    expect((await db.products.get(p))?.name).toBe("Plum");
    expect(await shown(p)).toBe(14);
    expect(engine.current.state).toBe("syncing");

    // Applied before the snapshot's C: inside its level, so no longer pending here.
    gateway.syncAnswers.push(answerAll("applied"));
    gateway.snapshots.push({ checkpoint: "60", items: [productView(p, 14, { name: "Plum" })], nextCursor: null, totalProducts: 1 });
    await engine.syncNow();
    expect(gateway.cursorsAsked).toEqual([null]);
    expect(await db.levels.get(p)).toEqual({ productId: p, confirmed: 14, pending: 0 });
    expect(await db.movements.count()).toBe(0);
    expect(engine.current.state).toBe("upToDate");
  });

  it("drops a product the server deleted before the snapshot even while an edit of it is queued here", async () => {
    const gone = newId();
    await db.products.put(storedProduct({ ...serverProduct(gone, { name: "Gone" }), checkpoint: "1" }));
    await db.setMeta(CHECKPOINT_KEY, "1");
    await actions.updateProduct(gone, { sku: "EDITED" });
    // The edit's answer is lost (it was applied before the delete); then the server purged the tombstone.
    gateway.syncAnswers.push(() => new TransportError("cut"));
    await engine.syncNow();
    gateway.syncAnswers.push((ops) => respond(ops.map((op) => ({ operationId: op.operationId, status: "duplicate" }))));
    gateway.feedErrors.push(new HttpError(409, "RESET_REQUIRED", "purged", null));
    gateway.snapshots.push({ checkpoint: "9", items: [], nextCursor: null, totalProducts: 0 });
    await settle();
    expect(await db.products.get(gone)).toBeUndefined(); // no page shows it, and no tombstone follows C
  });

  it("resumes an interrupted snapshot from its stored cursor, also in a new engine", async () => {
    const [a, b] = [crypto.randomUUID(), crypto.randomUUID()];
    gateway.snapshots.push(
      { checkpoint: "30", items: [productView(a, 1)], nextCursor: "c1", totalProducts: 2 },
      new TransportError("Failed to fetch"),
    );
    await engine.syncNow();
    expect(engine.current.state).toBe("offline"); // no answer: offline, not error
    expect(JSON.parse((await db.getMeta(SNAPSHOT_KEY)) ?? "null")).toEqual({ checkpoint: "30", cursor: "c1", done: 1, total: 2 });
    expect(await db.getMeta(CHECKPOINT_KEY)).toBeNull();
    engine = await newEngine(); // as after a reload
    gateway.snapshots.push({ checkpoint: "30", items: [productView(b, 2)], nextCursor: null, totalProducts: null });
    await engine.syncNow();
    expect(gateway.cursorsAsked).toEqual([null, "c1", "c1"]);
    expect([await shown(a), await shown(b)]).toEqual([1, 2]);
    expect(await db.getMeta(CHECKPOINT_KEY)).toBe("30");
    expect(gateway.checkpointsAsked).toEqual(["30"]);
  });

  it("starts again from the first page on RESET_REQUIRED on a later page", async () => {
    const [a, b] = [crypto.randomUUID(), crypto.randomUUID()];
    gateway.snapshots.push(
      { checkpoint: "30", items: [productView(a, 1)], nextCursor: "c1", totalProducts: 2 },
      new HttpError(409, "RESET_REQUIRED", "too old", null),
      { checkpoint: "90", items: [productView(b, 7)], nextCursor: null, totalProducts: 1 },
    );
    await engine.syncNow();
    expect(gateway.cursorsAsked).toEqual([null, "c1", null]);
    expect(await db.products.get(a)).toBeUndefined(); // deleted since: not in the new snapshot
    expect(await db.levels.get(a)).toBeUndefined();
    expect(await shown(b)).toBe(7);
    expect(await db.getMeta(CHECKPOINT_KEY)).toBe("90");
    expect(engine.current.state).toBe("upToDate");
  });
});

describe("levels", () => {
  let p: string;
  beforeEach(async () => {
    engine = await newEngine();
    p = crypto.randomUUID();
    gateway.snapshots.push({ checkpoint: "5", items: [productView(p, 10, { name: "Pepper" })], nextCursor: null, totalProducts: 1 });
    await engine.syncNow();
  });

  it("a movement queued, then received from the feed, leaves the shown level unchanged", async () => {
    const id = await actions.recordMovement(p, "entry", 3);
    expect(await db.levels.get(p)).toEqual({ productId: p, confirmed: 10, pending: 3 });
    await engine.syncNow(); // applied, not back from the feed yet
    expect(await db.outbox.count()).toBe(0);
    expect(await shown(p)).toBe(13);
    gateway.feed.push({ checkpoint: "6", hasMore: false, changes: [movementChange(p, 3, "6", "entry", id)] });
    await engine.syncNow();
    expect(await db.levels.get(p)).toEqual({ productId: p, confirmed: 13, pending: 0 });
    expect((await db.movements.get(id))?.checkpoint).toBe("6");
  });

  it("a movement refused for good takes its pending back and stays listed as failed", async () => {
    const id = await actions.recordMovement(p, "exit", 2);
    expect(await shown(p)).toBe(8);
    gateway.syncAnswers.push((ops) =>
      respond([{ operationId: ops[0]!.operationId, status: "rejected", code: "VALIDATION_ERROR", message: "no", retryable: false }]),
    );
    await engine.syncNow();
    expect(await db.levels.get(p)).toEqual({ productId: p, confirmed: 10, pending: 0 });
    expect(await db.movements.get(id)).toMatchObject({ failed: true });
    expect(await db.outbox.toArray()).toMatchObject([{ entityId: id, status: "failed", sent: false }]);
  });

  it("marks an entry in doubt before sending it, and clears that on a final answer", async () => {
    await actions.recordMovement(p, "entry", 1);
    const seen: boolean[] = [];
    gateway.syncAnswers.push(answerAll("pending"));
    const sync = gateway.sync.bind(gateway);
    gateway.sync = async (checkpoint, operations) => {
      seen.push(...(await db.outbox.toArray()).map((e) => e.sent));
      return sync(checkpoint, operations);
    };
    await engine.syncNow();
    expect(seen).toEqual([true]);
    expect((await db.outbox.toArray())[0]?.sent).toBe(true); // pending: still in doubt
    gateway.syncAnswers.push((ops) =>
      respond([{ operationId: ops[0]!.operationId, status: "rejected", code: "NOT_FOUND", message: "later", retryable: true }]),
    );
    await engine.syncNow();
    expect((await db.outbox.toArray())[0]?.sent).toBe(false); // nothing stored: not in doubt
  });
});

describe("local actions", () => {
  it("stamp strictly increasing times, kept in the database for the next tab or reload", async () => {
    const at = (iso: string) => () => new Date(iso);
    const id = await new LocalActions(store, { changed: () => undefined }, TENANT, at("2026-05-01T10:00:00.000Z")).createProduct({ name: "Salt" });
    const other = new LocalDb(db.name); // another tab, or the page reloaded with its clock set back an hour
    const reloaded = new LocalActions(new DexieStore(other), { changed: () => undefined }, TENANT, at("2026-05-01T09:00:00.000Z"));
    await reloaded.updateProduct(id, { sku: "S" });
    await reloaded.recordMovement(id, "entry", 1);
    expect((await db.outbox.orderBy("seq").toArray()).map((e) => e.operation.modifiedAt)).toEqual([
      "2026-05-01T10:00:00.000Z",
      "2026-05-01T10:00:00.001Z",
      "2026-05-01T10:00:00.002Z",
    ]);
    other.close();
  });

  it("reads the product inside the write, so two edits at once both stay", async () => {
    const id = await actions.createProduct({ name: "Salt" });
    await Promise.all([actions.updateProduct(id, { sku: "S-1" }), actions.updateProduct(id, { unit: "kg" })]);
    expect(await db.products.get(id)).toMatchObject({ name: "Salt", sku: "S-1", unit: "kg" });
    expect((await db.products.get(id))?.terms.sort()).toEqual(["s-1", "salt"]);
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
