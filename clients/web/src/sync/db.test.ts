import "fake-indexeddb/auto";
import Dexie from "dexie";
import { afterEach, describe, expect, it } from "vitest";
import { LocalDb, storedProduct, words } from "./db";

const names: string[] = [];

afterEach(async () => {
  for (const name of names.splice(0)) await Dexie.delete(name);
});

describe("search keys", () => {
  it("are the folded words of the name and the whole SKU and barcode", () => {
    expect(words("Tea-Green (1.5L)")).toEqual(["tea-green", "tea", "green", "1.5l", "1", "5l"]);
    const product = storedProduct({
      id: "x",
      name: "  Crème Brûlée ",
      sku: " CB-01 ",
      barcode: "0123",
      unit: null,
      priceCents: null,
      lowStockThreshold: null,
      archived: false,
      deleted: false,
      modifiedAt: "2026-01-01T00:00:00Z",
      checkpoint: null,
    });
    expect(product.sortName).toBe("creme brulee");
    expect(product.terms).toEqual(["creme", "brulee", "cb-01", "0123"]);
  });
});

describe("upgrade from version 1", () => {
  it("keeps the outbox (in doubt), adds search keys, and builds the levels from the movements held", async () => {
    const name = `test-${crypto.randomUUID()}`;
    names.push(name);
    const v1 = new Dexie(name);
    v1.version(1).stores({ products: "id, name", movements: "id, productId, [productId+occurredAt]", outbox: "++seq, status, productId", meta: "key" });
    const [p, q] = [crypto.randomUUID(), crypto.randomUUID()];
    const at = "2026-01-01T00:00:00Z";
    const movement = (productId: string, kind: string, quantity: number, checkpoint: string | null, failed?: boolean) => ({
      id: crypto.randomUUID(), productId, kind, quantity, reason: null, occurredAt: at, checkpoint, ...(failed ? { failed } : {}),
    });
    await v1.table("products").bulkAdd([
      { id: p, name: "Green Tea", sku: "TG", barcode: null, unit: null, priceCents: null, lowStockThreshold: null, archived: false, deleted: false, modifiedAt: at, checkpoint: "3" },
    ]);
    await v1.table("movements").bulkAdd([
      movement(p, "entry", 10, "2"),
      movement(p, "exit", 3, "3"),
      movement(p, "entry", 4, null), // this device's, not back from the feed
      movement(p, "entry", 100, null, true), // refused
      movement(q, "exit", 1, "3"),
    ]);
    await v1.table("outbox").add({ operation: { operationId: "o" }, entityId: "m", productId: p, status: "queued", attempts: 0, reason: null });
    await v1.table("outbox").add({ operation: { operationId: "f" }, entityId: "n", productId: p, status: "failed", attempts: 1, reason: "no" });
    await v1.table("meta").put({ key: "checkpoint", value: "3" });
    v1.close();

    const db = new LocalDb(name);
    expect(await db.levels.get(p)).toEqual({ productId: p, confirmed: 7, pending: 4 });
    expect(await db.levels.get(q)).toEqual({ productId: q, confirmed: -1, pending: 0 });
    expect(await db.products.get(p)).toMatchObject({ name: "Green Tea", sortName: "green tea", terms: ["green", "tea", "tg"] });
    expect((await db.outbox.orderBy("seq").toArray()).map((e) => [e.status, e.sent])).toEqual([
      ["queued", true],
      ["failed", false],
    ]);
    expect(await db.getMeta("checkpoint")).toBe("3");
    expect(await db.products.where("terms").startsWith("gre").count()).toBe(1);
    db.close();
  });
});

describe("upgrade from version 2", () => {
  it("keeps the server's copy of each product (not of one whose create is still queued), and the code of each refusal", async () => {
    const name = `test-${crypto.randomUUID()}`;
    names.push(name);
    const v2 = new Dexie(name);
    v2.version(2).stores({
      products: "id, [sortName+id], *terms",
      levels: "productId",
      movements: "id, productId, [productId+occurredAt]",
      outbox: "++seq, status, productId",
      meta: "key",
    });
    const [synced, local] = [crypto.randomUUID(), crypto.randomUUID()];
    const at = "2026-01-01T00:00:00.000Z";
    const base = { sku: null, barcode: null, unit: null, priceCents: null, lowStockThreshold: null, archived: false, deleted: false, modifiedAt: at };
    await v2.table("products").bulkAdd([
      storedProduct({ ...base, id: synced, name: "Salt", checkpoint: "4" }),
      storedProduct({ ...base, id: local, name: "Pepper", checkpoint: null }),
    ]);
    const create = { operationId: "o1", entityType: "product", operationType: "create", entityId: local, payload: { name: "Pepper" } };
    await v2.table("outbox").add({ operation: create, entityId: local, productId: local, status: "queued", attempts: 0, reason: null, sent: false });
    await v2.table("outbox").add({ operation: { operationId: "o2" }, entityId: "m", productId: synced, status: "failed", attempts: 1, reason: "VALIDATION_ERROR: payload.quantity: too large", sent: false });
    v2.close();

    const db = new LocalDb(name);
    expect(await db.server.toArray()).toEqual([{ ...base, id: synced, name: "Salt", checkpoint: "4" }]);
    expect((await db.outbox.orderBy("seq").toArray()).map((e) => [e.status, e.code])).toEqual([
      ["queued", null],
      ["failed", "VALIDATION_ERROR"],
    ]);
    expect(await db.products.count()).toBe(2);
    db.close();
  });
});
