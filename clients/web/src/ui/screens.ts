/** The screens: sign-in, products (list, search, add), one product (edit, stock, history), failed changes. */
import Dexie, { liveQuery, type Subscription } from "dexie";
import type { Gateway } from "../api/http";
import { MOVEMENT_LIMITS, PRODUCT_LIMITS } from "../api/limits";
import type { ProductPatch, StockMovementState } from "../api/types";
import type { LocalDb, LocalMovement, LocalProduct, OutboxEntry } from "../sync/db";
import { shownStock, type LocalActions } from "../sync/local";
import { PAGE_SIZE, productListView, type ProductListView } from "../sync/queries";
import { formatCount, formatTime, h, replace } from "./dom";

/** A number input's bounds, as the server validates the field (``src/api/limits.ts``). */
function numberLimits(limits: { minimum?: number; maximum?: number }): Record<string, string | number> {
  return { inputmode: "numeric", ...(limits.minimum !== undefined ? { min: limits.minimum } : {}), ...(limits.maximum !== undefined ? { max: limits.maximum } : {}) };
}

export interface ScreenContext {
  db: LocalDb;
  actions: LocalActions;
  gateway: Gateway;
  isOnline: () => boolean;
  /** Called after each sync; returns an unsubscribe function. */
  onSynced: (listener: () => void) => () => void;
}

/** A screen: draws into ``main`` and returns what to undo when another screen replaces it. */
export type Screen = (main: HTMLElement, context: ScreenContext) => () => void;

function unsubscribeAll(subscriptions: Subscription[], extra: (() => void)[] = []): () => void {
  return () => {
    for (const s of subscriptions) s.unsubscribe();
    for (const undo of extra) undo();
  };
}

function isLow(product: LocalProduct, stock: number): boolean {
  return product.lowStockThreshold !== null && stock <= product.lowStockThreshold;
}

/** A form field's text, trimmed (a file field has none). */
function textOf(value: FormDataEntryValue | null): string {
  return typeof value === "string" ? value.trim() : "";
}

function numberOrNull(value: FormDataEntryValue | null): number | null {
  const text = textOf(value);
  return text === "" ? null : Number(text);
}

function textOrNull(value: FormDataEntryValue | null): string | null {
  const text = textOf(value);
  return text === "" ? null : text;
}

export const productsScreen: Screen = (main, { db, actions }) => {
  let query = "";
  let offset = 0;
  const list = h("div", { id: "product-list" });
  // The pager stays in place while pages change, so the button pressed keeps the focus.
  const previous = h("button", { type: "button" }, "Previous") as HTMLButtonElement;
  const next = h("button", { type: "button" }, "Next") as HTMLButtonElement;
  const shown = h("span", { id: "product-count" });
  const pager = h("nav", { class: "row pager", "aria-label": "Product pages" }, shown, previous, next);
  const drawPager = (total: number, start: number, count: number) => {
    pager.hidden = total === 0;
    shown.textContent = `Showing ${formatCount(start + 1)}–${formatCount(start + count)} of ${formatCount(total)}`;
    const single = total <= PAGE_SIZE;
    previous.hidden = next.hidden = single;
    previous.disabled = start === 0;
    next.disabled = start + PAGE_SIZE >= total;
  };
  previous.addEventListener("click", () => {
    offset = Math.max(0, offset - PAGE_SIZE);
    subscribe();
  });
  next.addEventListener("click", () => {
    offset += PAGE_SIZE;
    subscribe();
  });
  const search = h("input", {
    type: "search",
    id: "search",
    placeholder: "Name, SKU or barcode",
    "aria-label": "Search products",
  }) as HTMLInputElement;
  search.addEventListener("input", () => {
    query = search.value.trim();
    offset = 0;
    subscribe();
  });
  const addForm = h(
    "form",
    { class: "row", "aria-label": "Add a product" },
    h("label", {}, "Name", h("input", { name: "name", required: true, maxlength: PRODUCT_LIMITS.name.maxLength })),
    h("label", {}, "SKU", h("input", { name: "sku", maxlength: PRODUCT_LIMITS.sku.maxLength })),
    h("label", {}, "Low stock at", h("input", { name: "lowStockThreshold", type: "number", ...numberLimits(PRODUCT_LIMITS.lowStockThreshold) })),
    h("button", { type: "submit", class: "primary" }, "Add product"),
  ) as HTMLFormElement;
  addForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(addForm);
    void actions.createProduct({
      name: textOf(data.get("name")),
      sku: textOrNull(data.get("sku")),
      lowStockThreshold: numberOrNull(data.get("lowStockThreshold")),
    });
    addForm.reset();
  });
  replace(
    main,
    h("h1", {}, "Products"),
    addForm,
    h("h2", {}, "Stock"),
    h("div", { class: "row" }, h("label", {}, "Search", search)),
    list,
    pager,
  );

  let view: ProductListView | null = null;
  const draw = () => {
    if (!view) return;
    const { products, total, offset, levels, queued } = view;
    drawPager(total, offset, products.length);
    if (products.length === 0) {
      replace(list, h("p", { class: "muted" }, query ? "No product matches." : "No products yet."));
      return;
    }
    // Redrawing replaces the buttons: keep the keyboard focus on the one that had it.
    const focused = document.activeElement;
    const focusedLabel = focused instanceof HTMLElement && list.contains(focused) ? focused.getAttribute("aria-label") : null;
    const rows = products.map((p) => {
      const stock = shownStock(levels.get(p.id));
      const low = isLow(p, stock);
      return h(
        "tr",
        { "data-product-id": p.id },
        h("td", {}, h("a", { href: `#/products/${p.id}` }, p.name ?? "(unnamed)"), " ", queued.has(p.id) ? h("span", { class: "tag" }, "not synced yet") : null),
        h("td", {}, p.sku ?? ""),
        h("td", { class: "num" }, h("span", { class: low ? "low stock" : "stock" }, String(stock)), low ? h("span", { class: "low" }, " ▼ Low stock") : null),
        h(
          "td",
          { class: "num" },
          h("button", { type: "button", "aria-label": `Stock entry of 1 for ${p.name ?? "product"}`, onclick: () => void actions.recordMovement(p.id, "entry", 1) }, "+1"),
          " ",
          h("button", { type: "button", "aria-label": `Stock exit of 1 for ${p.name ?? "product"}`, onclick: () => void actions.recordMovement(p.id, "exit", 1) }, "−1"),
        ),
      );
    });
    replace(
      list,
      h(
        "table",
        {},
        h("caption", { class: "visually-hidden" }, "Products and their stock"),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Name"), h("th", { scope: "col" }, "SKU"), h("th", { scope: "col", class: "num" }, "Stock"), h("th", { scope: "col", class: "num" }, "Quick stock"))),
        h("tbody", {}, ...rows),
      ),
    );
    if (focusedLabel !== null) {
      for (const button of list.querySelectorAll("button")) {
        if (button.getAttribute("aria-label") === focusedLabel) button.focus();
      }
    }
  };

  // One page at a time, read by index; a new search or page replaces the subscription.
  let subscription: Subscription | null = null;
  const subscribe = () => {
    subscription?.unsubscribe();
    const [wanted, searched] = [offset, query];
    subscription = liveQuery(() => productListView(db, searched, wanted)).subscribe((page) => {
      offset = page.offset;
      view = page;
      draw();
    });
  };
  subscribe();
  return () => subscription?.unsubscribe();
};

function movementItem(m: LocalMovement | StockMovementState): HTMLElement {
  const pending = m.checkpoint === null;
  return h(
    "li",
    { "data-movement-id": m.id },
    h("span", {}, m.kind === "entry" ? "+ Entry" : "− Exit"),
    h("strong", {}, String(m.quantity)),
    h("span", { class: "muted" }, formatTime(m.occurredAt)),
    m.reason ? h("span", {}, m.reason) : null,
    pending ? h("span", { class: "tag" }, "not synced yet") : null,
    "failed" in m && m.failed ? h("span", { class: "tag low" }, "refused") : null,
  );
}

/** How many of a product's movements the device shows from its own copy (newest first). */
const LOCAL_HISTORY = 500;

/**
 * A product's movement history, newest first, in pages from the read API's cursor (a position, so
 * movements recorded meanwhile neither repeat nor hide older ones). New movements are merged in by id
 * from a fresh first page; offline, the device's own copy is shown.
 */
class MovementHistory {
  readonly element = h("ul", { class: "history", "aria-label": "Movement history, newest first" });
  private readonly sentinel = h("li", { class: "muted sentinel", "aria-hidden": "true" }, "");
  private readonly loaded = new Map<string, StockMovementState>();
  private local: LocalMovement[] = [];
  private cursor: string | null = null;
  private exhausted = false;
  private loading = false;
  private fromServer = false;
  private readonly observer: IntersectionObserver;

  constructor(
    private readonly productId: string,
    private readonly context: ScreenContext,
  ) {
    this.observer = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) void this.more();
    });
  }

  start(): () => void {
    // The newest movements the device holds (the feed's since its snapshot, and its own).
    const subscription = liveQuery(() =>
      this.context.db.movements
        .where("[productId+occurredAt]")
        .between([this.productId, Dexie.minKey], [this.productId, Dexie.maxKey])
        .reverse()
        .limit(LOCAL_HISTORY)
        .toArray(),
    ).subscribe((rows) => {
      this.local = rows;
      this.draw();
    });
    const stopSynced = this.context.onSynced(() => void this.refreshNewest());
    void this.more();
    this.observer.observe(this.sentinel);
    return () => {
      subscription.unsubscribe();
      stopSynced();
      this.observer.disconnect();
    };
  }

  private async more(): Promise<void> {
    if (this.loading || this.exhausted || !this.context.isOnline()) return;
    this.loading = true;
    try {
      const page = await this.context.gateway.movements(this.productId, this.cursor);
      this.fromServer = true;
      for (const item of page.items) this.loaded.set(item.id, item);
      this.cursor = page.nextCursor;
      this.exhausted = page.nextCursor === null;
    } catch {
      // Offline or failing: the device's copy is shown; scrolling tries again.
    } finally {
      this.loading = false;
      this.draw();
    }
  }

  /** Newer movements: pages from the top until one overlaps what is loaded, so none is skipped. */
  private async refreshNewest(): Promise<void> {
    if (!this.fromServer || !this.context.isOnline()) return;
    try {
      let cursor: string | null = null;
      for (let pages = 0; pages < 20; pages++) {
        const page = await this.context.gateway.movements(this.productId, cursor);
        const overlaps = page.items.some((item) => this.loaded.has(item.id));
        for (const item of page.items) this.loaded.set(item.id, item);
        if (overlaps || page.nextCursor === null) break;
        cursor = page.nextCursor;
      }
      this.draw();
    } catch {
      // The next sync tries again.
    }
  }

  private draw(): void {
    const byId = new Map<string, LocalMovement | StockMovementState>();
    if (this.fromServer) {
      for (const m of this.loaded.values()) byId.set(m.id, m);
      // The device's own, not yet on the server (or refused), on top of what the server returned.
      for (const m of this.local) if (m.checkpoint === null || m.failed) byId.set(m.id, m);
    } else {
      for (const m of this.local) byId.set(m.id, m);
    }
    const items = [...byId.values()].sort(
      (a, b) => b.occurredAt.localeCompare(a.occurredAt) || Number(b.checkpoint ?? Infinity) - Number(a.checkpoint ?? Infinity),
    );
    this.sentinel.textContent = this.exhausted || !this.fromServer ? "" : "Loading older movements…";
    replace(this.element, ...(items.length ? items.map(movementItem) : [h("li", { class: "muted" }, "No movements yet.")]), this.sentinel);
  }
}

export function productScreen(productId: string): Screen {
  return (main, context) => {
    const { db, actions } = context;
    const title = h("h1", {}, "Product");
    const stockLine = h("p", { id: "stock-line" });
    const editForm = h("form", { class: "row", "aria-label": "Edit product" }) as HTMLFormElement;
    const movementForm = h(
      "form",
      { class: "row", "aria-label": "Record stock" },
      h("label", {}, "Quantity", h("input", { name: "quantity", type: "number", value: 1, required: true, ...numberLimits(MOVEMENT_LIMITS.quantity) })),
      h("label", {}, "Reason", h("input", { name: "reason", maxlength: MOVEMENT_LIMITS.reason.maxLength })),
      h("button", { type: "submit", name: "kind", value: "entry", class: "primary" }, "Stock entry"),
      h("button", { type: "submit", name: "kind", value: "exit" }, "Stock exit"),
    ) as HTMLFormElement;
    movementForm.addEventListener("submit", (event) => {
      event.preventDefault();
      const data = new FormData(movementForm);
      const kind = (event.submitter as HTMLButtonElement | null)?.value === "exit" ? "exit" : "entry";
      void actions.recordMovement(productId, kind, Number(data.get("quantity")), textOrNull(data.get("reason")) ?? undefined);
      movementForm.reset();
    });
    let confirming = false;
    const deleteButton = h("button", { type: "button", class: "danger" }, "Delete product") as HTMLButtonElement;
    deleteButton.addEventListener("click", () => {
      // A second click confirms: no dialog, nothing blocks.
      if (!confirming) {
        confirming = true;
        deleteButton.textContent = "Confirm delete";
        return;
      }
      void actions.deleteProduct(productId);
      location.hash = "#/";
    });
    const history = new MovementHistory(productId, context);
    replace(
      main,
      h("p", {}, h("a", { href: "#/" }, "← All products")),
      title,
      stockLine,
      h("h2", {}, "Record stock"),
      movementForm,
      h("h2", {}, "Details"),
      editForm,
      h("p", {}, deleteButton),
      h("h2", {}, "Movement history"),
      history.element,
    );
    let drawnFor: string | null = null;
    // The product as the form last showed it: a save sends only the fields that differ from it.
    // Comparing with the stored product instead would send back, as the user's own edit, every
    // field another device changed between the last redraw and the click.
    let shown: LocalProduct | null = null;
    // What the user typed since the last save: kept when the product changes underneath (a sync
    // brought it back), so typing is never lost; the other fields show the product as it now is.
    const typed = new Map<string, string>();
    editForm.addEventListener("input", (event) => {
      const target = event.target;
      if (target instanceof HTMLInputElement) typed.set(target.name, target.value);
    });
    const fill = (product: LocalProduct) => {
      // Redraw the form only when the product changed elsewhere.
      const key = JSON.stringify(product);
      if (key === drawnFor) return;
      drawnFor = key;
      shown = product;
      const focused = document.activeElement instanceof HTMLInputElement && editForm.contains(document.activeElement) ? document.activeElement.name : null;
      const field = (label: string, name: keyof typeof PRODUCT_LIMITS, value: string | number | null) => {
        const limits: { maxLength?: number; minimum?: number; maximum?: number } = PRODUCT_LIMITS[name];
        const bounds = limits.maxLength !== undefined ? { maxlength: limits.maxLength } : { type: "number", ...numberLimits(limits) };
        return h("label", {}, label, h("input", { name, value: typed.get(name) ?? value ?? "", ...bounds }));
      };
      replace(
        editForm,
        field("Name", "name", product.name),
        field("SKU", "sku", product.sku),
        field("Barcode", "barcode", product.barcode),
        field("Unit", "unit", product.unit),
        field("Price (cents)", "priceCents", product.priceCents),
        field("Low stock at", "lowStockThreshold", product.lowStockThreshold),
        h("button", { type: "submit", class: "primary" }, "Save"),
      );
      if (focused !== null) (editForm.elements.namedItem(focused) as HTMLInputElement | null)?.focus();
    };
    editForm.addEventListener("submit", (event) => {
      event.preventDefault();
      const data = new FormData(editForm);
      typed.clear();
      const base = shown;
      if (base === null) return;
      const next: ProductPatch = {
        name: textOf(data.get("name")),
        sku: textOrNull(data.get("sku")),
        barcode: textOrNull(data.get("barcode")),
        unit: textOrNull(data.get("unit")),
        priceCents: numberOrNull(data.get("priceCents")),
        lowStockThreshold: numberOrNull(data.get("lowStockThreshold")),
      };
      // Send only what changed: an edit carries the fields it changes.
      const changed = Object.fromEntries(
        Object.entries(next).filter(([k, v]) => (base as Record<string, unknown>)[k] !== v),
      ) as ProductPatch;
      if (Object.keys(changed).length > 0) void actions.updateProduct(productId, changed);
    });
    // The product and its level row, each by key: nothing here grows with the ledger.
    const subscription = liveQuery(async () => {
      const [product, level] = await Promise.all([db.products.get(productId), db.levels.get(productId)]);
      return { product, level };
    }).subscribe(({ product, level }) => {
      if (!product) {
        title.textContent = "Product not found";
        stockLine.textContent = "It was deleted, or is not on this device yet.";
        editForm.replaceChildren();
        return;
      }
      const stock = shownStock(level);
      title.textContent = product.name ?? "(unnamed)";
      replace(stockLine, "Stock: ", h("strong", { id: "stock-level" }, String(stock)), product.unit ? ` ${product.unit}` : "", isLow(product, stock) ? h("span", { class: "low" }, " ▼ Low stock") : null);
      fill(product);
    });
    return unsubscribeAll([subscription], [history.start()]);
  };
}

export const failedScreen: Screen = (main, { db, actions }) => {
  const list = h("ul", { class: "failed-list" });
  replace(
    main,
    h("p", {}, h("a", { href: "#/" }, "← All products")),
    h("h1", {}, "Changes the server refused"),
    h("p", { class: "muted" }, "Each was undone on this device, which shows what the server holds. Dismiss one once you have read it."),
    list,
  );
  const describe = (entry: OutboxEntry) => {
    const op = entry.operation;
    const what = op.entityType === "stockMovement" ? "Stock movement" : `Product ${op.operationType}`;
    return `${what} of ${formatTime(op.modifiedAt)}`;
  };
  const subscription = liveQuery(() => db.outbox.where("status").equals("failed").toArray()).subscribe((entries) => {
    if (entries.length === 0) {
      replace(list, h("li", { class: "muted" }, "Nothing failed."));
      return;
    }
    replace(
      list,
      ...entries.map((entry) =>
        h(
          "li",
          {},
          h("strong", {}, describe(entry)),
          " — ",
          h("span", { class: "reason" }, entry.reason ?? "refused"),
          " ",
          h("button", { type: "button", onclick: () => entry.seq !== undefined && void actions.dismissFailed(entry.seq) }, "Dismiss"),
        ),
      ),
    );
  });
  return unsubscribeAll([subscription]);
};
