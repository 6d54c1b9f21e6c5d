/**
 * The client spec (clients/spec/*.json, see its README): every case run against the real engine,
 * LocalActions and Dexie (over fake-indexeddb), with a scripted gateway, a frozen clock and an online
 * flag. A case this file does not run is a failing test (the last one here).
 */
import "fake-indexeddb/auto";
import { readFileSync, readdirSync } from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import { HttpError, TransportError, type Gateway } from "./api/http";
import type { Change, ChangeFeedPage, ItemResult, MovementKind, MovementPage, Operation, ProductState, SnapshotPage, SyncResponse } from "./api/types";
import { DexieStore, LocalDb } from "./sync/db";
import { SyncEngine, type SyncNotice, type Timers } from "./sync/engine";
import { LocalActions, shownStock } from "./sync/local";
import { blankProduct } from "./sync/rebase";

const SPEC_DIR = new URL("../../spec/", import.meta.url);
const DEFAULT_CLOCK = "2026-01-01T00:00:00.000Z";
const GIVEN_CHECKPOINT = 10;

type Fields = Record<string, unknown>;
interface NamedProduct extends Fields {
  id: string;
  stockLevel?: number;
}
type Step =
  | { do: "create"; product: string; fields: Fields }
  | { do: "update"; product: string; fields: Fields }
  | { do: "delete"; product: string }
  | { do: "movement"; id: string; product: string; kind: MovementKind; quantity: number };
interface ScriptedResult {
  for: number;
  status: ItemResult["status"];
  code?: string;
  message?: string;
  retryable?: boolean;
  serverState?: NamedProduct;
}
type PushAnswer = { status: number; results?: ScriptedResult[]; code?: string; retryAfter?: number } | { transport: "lost" | "refused" };
type FeedChange = { product: NamedProduct } | { deleted: string } | { movement: { id: string; product: string; kind: MovementKind; quantity: number } };
type PullAnswer = { changes: FeedChange[] } | { status: number; code: string };
type ServerAnswer = { push: PushAnswer } | { pull: PullAnswer } | { snapshot: { products: NamedProduct[] } };
interface OutboxExpectation {
  for: number;
  status: "queued" | "failed";
  code?: string;
}
interface Case {
  name: string;
  given?: { products?: NamedProduct[]; online?: boolean; clock?: string; clockSteps?: number[] };
  device?: Step[];
  server?: ServerAnswer[];
  syncs?: number;
  expect: {
    products: Record<string, Fields>;
    outbox: OutboxExpectation[];
    state: string;
    notices: { kind: string; product: string }[];
    requests?: number[];
    stamps?: Record<string, string>;
  };
}

function specFiles(): string[] {
  return readdirSync(SPEC_DIR)
    .filter((name) => name.endsWith(".json"))
    .sort();
}

function casesOf(file: string): Case[] {
  return JSON.parse(readFileSync(new URL(file, SPEC_DIR), "utf8")) as Case[];
}

/** The case's names (``p1``, ``m1``) and the UUIDs they stand for in this run. */
class Names {
  private readonly ids = new Map<string, string>();
  private readonly names = new Map<string, string>();

  of(name: string): string {
    let id = this.ids.get(name);
    if (id === undefined) this.bind(name, (id = crypto.randomUUID()));
    return id;
  }

  /** ``name`` is ``id`` (made by the app, as a new product's or movement's id is). */
  bind(name: string, id: string): void {
    if (this.ids.has(name)) throw new Error(`the case names ${name} before the step that makes it`);
    this.ids.set(name, id);
    this.names.set(id, name);
  }

  nameOf(id: string): string {
    return this.names.get(id) ?? `<unnamed ${id}>`;
  }
}

function productState(names: Names, product: NamedProduct, checkpoint: string): ProductState {
  const { id, stockLevel: _stockLevel, ...fields } = product;
  return { ...blankProduct(names.of(id), "2025-12-31T00:00:00.000Z"), checkpoint, ...fields };
}

/** The server as the case scripts it: each kind of request takes the next answer of its kind. */
class ScriptedGateway implements Gateway {
  /** The operations of each push request, in order. */
  readonly pushes: Operation[][] = [];
  /** Until the case starts: the given products' snapshot, then an empty feed. */
  scripted = false;
  private lastCheckpoint = GIVEN_CHECKPOINT;
  private readonly queues: { push: PushAnswer[]; pull: PullAnswer[]; snapshot: { products: NamedProduct[] }[] } = { push: [], pull: [], snapshot: [] };

  constructor(
    private readonly names: Names,
    private readonly given: NamedProduct[],
    script: ServerAnswer[],
    private readonly operationIds: string[],
    private readonly clock: () => Date,
  ) {
    for (const answer of script) {
      if ("push" in answer) this.queues.push.push(answer.push);
      else if ("pull" in answer) this.queues.pull.push(answer.pull);
      else this.queues.snapshot.push(answer.snapshot);
    }
  }

  async sync(_checkpoint: string | null, operations: Operation[]): Promise<SyncResponse> {
    if (!this.scripted) throw new Error("the runner pushed before the case started");
    this.pushes.push(operations);
    const answer = this.queues.push.shift();
    const carried = new Map(operations.map((op) => [op.operationId, op]));
    const scripted = new Map<string, ItemResult>();
    if (answer && "transport" in answer) throw new TransportError(`scripted: ${answer.transport}`);
    if (answer && answer.status !== 200 && answer.status !== 202) {
      throw new HttpError(answer.status, answer.code ?? `HTTP_${answer.status}`, "scripted refusal", answer.retryAfter ?? null);
    }
    for (const result of answer?.results ?? []) {
      const operationId = this.operationIds[result.for];
      if (operationId === undefined || !carried.has(operationId)) continue;
      scripted.set(operationId, {
        operationId,
        status: result.status,
        code: (result.code ?? null) as ItemResult["code"],
        message: result.message ?? null,
        retryable: result.retryable ?? null,
        serverState: result.serverState ? productState(this.names, result.serverState, String(this.lastCheckpoint)) : null,
      });
    }
    const results = operations.map((op) => scripted.get(op.operationId) ?? { operationId: op.operationId, status: "applied" as const });
    return { checkpoint: String(this.lastCheckpoint), serverTime: this.clock().toISOString(), results };
  }

  async changes(checkpoint: string | null): Promise<ChangeFeedPage> {
    const from = Number(checkpoint ?? "0");
    const answer = this.scripted ? this.queues.pull.shift() : undefined;
    if (answer && "status" in answer) throw new HttpError(answer.status, answer.code, "scripted refusal", null);
    const changes = (answer?.changes ?? []).map((change, i) => this.change(change, String(from + i + 1)));
    const at = from + changes.length;
    this.lastCheckpoint = Math.max(this.lastCheckpoint, at);
    return { checkpoint: String(at), hasMore: false, changes };
  }

  async snapshot(cursor: string | null): Promise<SnapshotPage> {
    if (cursor !== null) throw new Error("the scripted snapshot has one page");
    const products = this.scripted ? (this.queues.snapshot.shift()?.products ?? []) : this.given;
    const checkpoint = this.scripted ? String(++this.lastCheckpoint) : String(GIVEN_CHECKPOINT);
    const items = products.map((p) => ({ ...productState(this.names, p, checkpoint), stockLevel: p.stockLevel ?? 0 }));
    return { checkpoint, items, nextCursor: null, totalProducts: items.length };
  }

  async movements(): Promise<MovementPage> {
    return { items: [], nextCursor: null };
  }

  private change(change: FeedChange, checkpoint: string): Change {
    if ("product" in change) {
      const product = productState(this.names, change.product, checkpoint);
      return { checkpoint, entityType: "product", entityId: product.id, operation: "upsert", product };
    }
    if ("deleted" in change) {
      const product = { ...productState(this.names, { id: change.deleted }, checkpoint), deleted: true };
      return { checkpoint, entityType: "product", entityId: product.id, operation: "delete", product };
    }
    const { id, product, kind, quantity } = change.movement;
    const movement = { id: this.names.of(id), productId: this.names.of(product), kind, quantity, reason: null, occurredAt: this.clock().toISOString(), checkpoint };
    return { checkpoint, entityType: "stockMovement", entityId: movement.id, operation: "upsert", movement };
  }
}

/** Scheduled syncs never run: the case says when a sync runs. */
const NO_TIMERS: Timers = { set: () => null, clear: () => undefined };
const TENANT = "00000000-0000-4000-8000-000000000016";

async function runCase(spec: Case): Promise<void> {
  const names = new Names();
  const given = spec.given ?? {};
  let clock = Date.parse(given.clock ?? DEFAULT_CLOCK);
  const now = () => new Date(clock);
  let online = true;
  const operationIds: string[] = [];
  const stamps: string[] = [];
  const gateway = new ScriptedGateway(names, given.products ?? [], spec.server ?? [], operationIds, now);
  const db = new LocalDb(`spec-${crypto.randomUUID()}`);
  const store = new DexieStore(db);
  const engine = new SyncEngine({ store, gateway, isOnline: () => online, now, timers: NO_TIMERS, random: () => 0 });
  const notices: SyncNotice[] = [];
  engine.onNotice((notice) => notices.push(notice));
  // A change queued does not start a sync here: the case says when one runs.
  const actions = new LocalActions(store, { changed: () => void engine.refresh() }, TENANT, now);
  try {
    // The device starts synced: a first download of the given products.
    await engine.start();
    await engine.idle();
    expect(engine.current, "the device starts up to date").toMatchObject({ state: "upToDate" });
    gateway.scripted = true;
    online = given.online ?? true;
    if (!online) engine.setOnline(false);

    for (const [i, step] of (spec.device ?? []).entries()) {
      if (i > 0) clock += given.clockSteps?.[i - 1] ?? 0;
      switch (step.do) {
        case "create":
          names.bind(step.product, await actions.createProduct(step.fields as never));
          break;
        case "update":
          await actions.updateProduct(names.of(step.product), step.fields);
          break;
        case "delete":
          await actions.deleteProduct(names.of(step.product));
          break;
        case "movement":
          names.bind(step.id, await actions.recordMovement(names.of(step.product), step.kind, step.quantity));
          break;
      }
      const entries = await store.allEntries();
      const made = entries.at(-1);
      if (!made || operationIds.includes(made.operation.operationId)) throw new Error(`step ${i} made no operation`);
      operationIds.push(made.operation.operationId);
      stamps.push(made.operation.modifiedAt);
    }

    for (let n = 0; n < (spec.syncs ?? 1); n++) {
      await engine.syncNow();
      await engine.idle();
    }
    await engine.refresh();

    const products: Record<string, Fields> = {};
    const levels = new Map((await db.levels.toArray()).map((row) => [row.productId, row]));
    for (const product of await db.products.toArray()) {
      const wanted = spec.expect.products[names.nameOf(product.id)] ?? {};
      const shown: Fields = {};
      for (const field of Object.keys(wanted)) {
        shown[field] = field === "stockLevel" ? shownStock(levels.get(product.id)) : (product as unknown as Fields)[field];
      }
      products[names.nameOf(product.id)] = shown;
    }
    const forOf = (operationId: string) => operationIds.indexOf(operationId);
    const outbox = (await store.allEntries()).map((entry) => ({
      for: forOf(entry.operation.operationId),
      status: entry.status,
      ...(entry.status === "failed" ? { code: entry.code } : {}),
    }));
    const seen = {
      products,
      outbox,
      state: engine.current.state,
      notices: notices.map((notice) => ({ kind: notice.kind, product: names.nameOf(notice.productId) })),
      ...(spec.expect.requests ? { requests: gateway.pushes.map((ops) => ops.length) } : {}),
      ...(spec.expect.stamps ? { stamps: Object.fromEntries(stamps.map((stamp, i) => [String(i), stamp])) } : {}),
    };
    expect(seen).toEqual(spec.expect);
    // Stamps as sent: every operation carried the stamp it was made with.
    for (const op of gateway.pushes.flat()) expect(op.modifiedAt).toBe(stamps[forOf(op.operationId)]);
  } finally {
    await engine.stop();
    db.close();
    await db.delete();
  }
}

const ran: string[] = [];

for (const file of specFiles()) {
  describe(file, () => {
    for (const spec of casesOf(file)) {
      it(spec.name, async () => {
        ran.push(`${file}: ${spec.name}`);
        await runCase(spec);
      });
    }
  });
}

describe("the spec", () => {
  it("is run whole: every case in clients/spec/*.json ran here, once", () => {
    const inFiles = specFiles().flatMap((file) => casesOf(file).map((spec) => `${file}: ${spec.name}`));
    expect(new Set(inFiles).size, "case names are unique").toBe(inFiles.length);
    expect(inFiles.length).toBeGreaterThan(0);
    expect([...ran].sort()).toEqual([...inFiles].sort());
  });
});

afterAll(() => {
  ran.length = 0;
});
