// @vitest-environment jsdom
import "fake-indexeddb/auto";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { Gateway } from "../api/http";
import type { ProductState } from "../api/types";
import { DexieStore, LocalDb, storedProduct } from "../sync/db";
import { LocalActions } from "../sync/local";
import { blankProduct } from "../sync/rebase";
import { productScreen, productsScreen, type ScreenContext } from "./screens";

const TENANT = "00000000-0000-4000-8000-000000000001";

function product(name: string, fields: Partial<ProductState> = {}): ProductState {
  return { ...blankProduct(crypto.randomUUID(), new Date().toISOString()), name, checkpoint: "1", ...fields };
}

let db: LocalDb;
let main: HTMLElement;
let context: ScreenContext;
let undo: (() => void) | null;

const offlineGateway: Gateway = {
  sync: () => Promise.reject(new Error("offline")),
  changes: () => Promise.reject(new Error("offline")),
  snapshot: () => Promise.reject(new Error("offline")),
  movements: () => Promise.reject(new Error("offline")),
};

beforeEach(() => {
  db = new LocalDb(`test-${crypto.randomUUID()}`);
  main = document.createElement("main");
  document.body.replaceChildren(main);
  context = {
    db,
    actions: new LocalActions(new DexieStore(db), { changed: () => undefined }, TENANT),
    gateway: offlineGateway,
    isOnline: () => false,
    onSynced: () => () => undefined,
  };
  undo = null;
  vi.stubGlobal(
    "IntersectionObserver",
    class {
      observe() {}
      disconnect() {}
    },
  );
});

afterEach(async () => {
  undo?.();
  vi.unstubAllGlobals();
  await db.delete();
});

const rowNames = () => [...main.querySelectorAll("#product-list tbody tr a")].map((a) => a.textContent);
const count = () => main.querySelector("#product-count")?.textContent;
const button = (name: string) => [...main.querySelectorAll("button")].find((b) => b.textContent === name || b.getAttribute("aria-label") === name) as HTMLButtonElement;

describe("products screen", () => {
  it("shows one page of 50 by name, pages with Previous and Next, and says which", async () => {
    const names = Array.from({ length: 120 }, (_, i) => `Item ${String(i + 1).padStart(3, "0")}`);
    await db.products.bulkPut(names.map((n) => storedProduct(product(n))).reverse());
    undo = productsScreen(main, context);
    await vi.waitFor(() => expect(count()).toBe("Showing 1–50 of 120"));
    expect(rowNames()).toEqual(names.slice(0, 50));
    expect(button("Previous").disabled).toBe(true);
    button("Next").click();
    await vi.waitFor(() => expect(count()).toBe("Showing 51–100 of 120"));
    expect(rowNames()).toEqual(names.slice(50, 100));
    button("Next").click();
    await vi.waitFor(() => expect(count()).toBe("Showing 101–120 of 120"));
    expect(button("Next").disabled).toBe(true);
    button("Previous").click();
    await vi.waitFor(() => expect(rowNames()[0]).toBe("Item 051"));
  });

  it("searches by the start of words, from the first page", async () => {
    await db.products.bulkPut(["Green tea", "Black tea", "Coffee", "Teapot"].map((n) => storedProduct(product(n))));
    undo = productsScreen(main, context);
    await vi.waitFor(() => expect(rowNames()).toHaveLength(4));
    expect(button("Next").hidden).toBe(true); // one page: no paging buttons
    const search = main.querySelector("#search") as HTMLInputElement;
    search.value = "tea";
    search.dispatchEvent(new Event("input"));
    await vi.waitFor(() => expect(rowNames()).toEqual(["Black tea", "Green tea", "Teapot"]));
    expect(count()).toBe("Showing 1–3 of 3");
    search.value = "tea zz";
    search.dispatchEvent(new Event("input"));
    await vi.waitFor(() => expect(main.querySelector("#product-list")?.textContent).toBe("No product matches."));
  });

  it("shows the stock as confirmed plus pending, and a +1 at once, queued", async () => {
    const tea = product("Green tea", { lowStockThreshold: 5 });
    await db.products.put(storedProduct(tea));
    await db.levels.put({ productId: tea.id, confirmed: 3, pending: 1 });
    undo = productsScreen(main, context);
    const row = () => main.querySelector(`#product-list tr[data-product-id="${tea.id}"]`);
    await vi.waitFor(() => expect(row()?.querySelector(".stock")?.textContent).toBe("4"));
    expect(row()?.textContent).toContain("Low stock");
    button("Stock entry of 1 for Green tea").click();
    button("Stock entry of 1 for Green tea").click();
    await vi.waitFor(() => expect(row()?.querySelector(".stock")?.textContent).toBe("6"));
    expect(row()?.textContent).toContain("not synced yet");
    expect(row()?.textContent).not.toContain("Low stock");
  });
});

describe("product screen", () => {
  it("shows the product and its level, read by key", async () => {
    const salt = product("Salt", { unit: "kg" });
    await db.products.put(storedProduct(salt));
    await db.levels.put({ productId: salt.id, confirmed: 7, pending: -2 });
    undo = productScreen(salt.id)(main, context);
    await vi.waitFor(() => expect(main.querySelector("#stock-level")?.textContent).toBe("5"));
    expect(main.querySelector("h1")?.textContent).toBe("Salt");
    await context.actions.recordMovement(salt.id, "exit", 1);
    await vi.waitFor(() => expect(main.querySelector("#stock-level")?.textContent).toBe("4"));
    await vi.waitFor(() => expect(main.querySelectorAll(".history li[data-movement-id]")).toHaveLength(1));
  });

  it("keeps what the user typed when a sync changes the product underneath", async () => {
    const salt = product("Salt");
    await db.products.put(storedProduct(salt));
    undo = productScreen(salt.id)(main, context);
    const input = (name: string) => main.querySelector<HTMLInputElement>(`form[aria-label="Edit product"] input[name="${name}"]`);
    await vi.waitFor(() => expect(input("name")?.value).toBe("Salt"));
    input("priceCents")!.value = "250";
    input("priceCents")!.dispatchEvent(new Event("input", { bubbles: true }));
    await db.products.put(storedProduct({ ...salt, unit: "kg", checkpoint: "2" })); // the feed brought it back
    await vi.waitFor(() => expect(input("unit")?.value).toBe("kg"));
    expect(input("priceCents")?.value).toBe("250");
  });
});
