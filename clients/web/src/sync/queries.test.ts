import "fake-indexeddb/auto";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { ProductState } from "../api/types";
import { LocalDb, storedProduct } from "./db";
import { PAGE_SIZE, productListView, productPage } from "./queries";
import { blankProduct } from "./rebase";

function product(name: string | null, fields: Partial<ProductState> = {}): ProductState {
  return { ...blankProduct(crypto.randomUUID(), new Date().toISOString()), name, checkpoint: "1", ...fields };
}

let db: LocalDb;

async function add(...products: ProductState[]): Promise<void> {
  // Shuffled: the order must come from the index, not from the order of writing.
  const shuffled = [...products].sort(() => Math.random() - 0.5);
  await db.products.bulkPut(shuffled.map(storedProduct));
}

const names = async (query: string, offset = 0) => (await productPage(db, query, offset)).products.map((p) => p.name);

beforeEach(() => {
  db = new LocalDb(`test-${crypto.randomUUID()}`);
});

afterEach(async () => {
  await db.delete();
});

describe("search", () => {
  beforeEach(async () => {
    await add(
      product("Green tea", { sku: "TEA-GREEN" }),
      product("Black tea"),
      product("Teapot"),
      product("Café crème", { barcode: "4006381333931" }),
      product("Coffee beans", { sku: "CB 1" }),
      product("Rice (this tablet)"),
    );
  });

  it("finds products by the start of a word of their name, in name order", async () => {
    expect(await names("tea")).toEqual(["Black tea", "Green tea", "Teapot"]);
    expect(await names("TEA")).toEqual(["Black tea", "Green tea", "Teapot"]);
    expect(await names("ea")).toEqual([]); // a prefix, not any substring
    expect(await names("(this")).toEqual(["Rice (this tablet)"]);
    expect((await productPage(db, "tea", 0)).total).toBe(3);
  });

  it("matches every word, each through the index", async () => {
    expect(await names("green tea")).toEqual(["Green tea"]);
    expect(await names("tea green")).toEqual(["Green tea"]);
    expect(await names("tea  b")).toEqual(["Black tea"]);
    expect(await names("tea coffee")).toEqual([]);
  });

  it("finds by the start of the whole SKU or barcode, and ignores case and accents", async () => {
    expect(await names("tea-gr")).toEqual(["Green tea"]);
    expect(await names("4006381")).toEqual(["Café crème"]);
    expect(await names("cafe CRE")).toEqual(["Café crème"]);
    expect(await names("CAFÉ")).toEqual(["Café crème"]);
  });

  it("reads the terms index: a product stored without terms is not found by its name", async () => {
    const hidden = storedProduct(product("Tea tin"));
    await db.products.put({ ...hidden, terms: [] });
    expect(await names("tea")).toEqual(["Black tea", "Green tea", "Teapot"]);
  });

  it("pages the matches", async () => {
    await add(...Array.from({ length: 57 }, (_, i) => product(`Tea blend ${String(i + 1).padStart(2, "0")}`)));
    const first = await productPage(db, "blend", 0);
    const second = await productPage(db, "blend", PAGE_SIZE);
    expect(first.total).toBe(57);
    expect(first.products.map((p) => p.name).at(-1)).toBe("Tea blend 50");
    expect(second.products.map((p) => p.name)).toEqual(["Tea blend 51", "Tea blend 52", "Tea blend 53", "Tea blend 54", "Tea blend 55", "Tea blend 56", "Tea blend 57"]);
  });
});

describe("search with many matches", () => {
  it("orders them by the list index and reads the page's products", async () => {
    const pad = (n: number) => String(n).padStart(3, "0");
    await add(...Array.from({ length: 260 }, (_, i) => product(`Product ${pad(i + 1)}`)), product("Apple"), product("Zed product"));
    const last = await productPage(db, "product", 250);
    expect(last.total).toBe(261);
    expect(last.products.map((p) => p.name)).toEqual([...Array.from({ length: 10 }, (_, i) => `Product ${pad(i + 251)}`), "Zed product"]);
    expect((await productPage(db, "prod", 0)).products.map((p) => p.name).slice(0, 2)).toEqual(["Product 001", "Product 002"]);
    expect(await names("product 0077")).toEqual([]);
    expect(await names("product 077")).toEqual(["Product 077"]);
    expect((await productPage(db, "product 1", 0)).total).toBe(100);
  });
});

describe("list", () => {
  it("gives one page of 50 in name order, case and accents aside, and the total", async () => {
    await add(...Array.from({ length: 118 }, (_, i) => product(`Item ${String(i + 1).padStart(3, "0")}`)), product("apple"), product("Éclair"));
    const first = await productPage(db, "", 0);
    expect(first.total).toBe(120);
    expect(first.offset).toBe(0);
    expect(first.products).toHaveLength(50);
    expect(first.products.slice(0, 3).map((p) => p.name)).toEqual(["apple", "Éclair", "Item 001"]);
    expect((await names("", 50)).slice(0, 2)).toEqual(["Item 049", "Item 050"]);
    const last = await productPage(db, "", 100);
    expect(last.products.map((p) => p.name)).toEqual(Array.from({ length: 20 }, (_, i) => `Item ${String(i + 99).padStart(3, "0")}`));
  });

  it("moves a page past the end back onto the last page", async () => {
    await add(...Array.from({ length: 60 }, (_, i) => product(`P${String(i).padStart(2, "0")}`)));
    const page = await productPage(db, "", 150);
    expect(page.offset).toBe(50);
    expect(page.products).toHaveLength(10);
    expect((await productPage(db, "", 0)).offset).toBe(0);
  });

  it("keeps the order by name when a product is renamed", async () => {
    const renamed = product("Zucchini");
    await add(renamed, product("Melon"));
    expect(await names("")).toEqual(["Melon", "Zucchini"]);
    await db.products.put(storedProduct({ ...renamed, name: "Apricot" }));
    expect(await names("")).toEqual(["Apricot", "Melon"]);
    expect(await names("zucc")).toEqual([]);
  });

  it("reads the levels and queued changes of the page's products only", async () => {
    const products = Array.from({ length: 55 }, (_, i) => product(`N${String(i).padStart(2, "0")}`));
    await add(...products);
    await db.levels.bulkPut(products.map((p, i) => ({ productId: p.id, confirmed: i, pending: 1 })));
    const outside = products[54]!;
    const inside = products[3]!;
    for (const p of [inside, outside]) {
      await db.outbox.add({
        operation: { operationId: crypto.randomUUID(), idempotencyKey: crypto.randomUUID(), entityId: p.id, tenantId: crypto.randomUUID(), modifiedAt: p.modifiedAt, entityType: "product", operationType: "delete", payload: {} },
        entityId: p.id,
        productId: p.id,
        status: "queued",
        attempts: 0,
        reason: null,
        sent: false,
      });
    }
    const view = await productListView(db, "", 0);
    expect(view.levels.size).toBe(50);
    expect(view.levels.get(inside.id)).toEqual({ productId: inside.id, confirmed: 3, pending: 1 });
    expect(view.levels.has(outside.id)).toBe(false);
    expect([...view.queued]).toEqual([inside.id]);
  });
});
