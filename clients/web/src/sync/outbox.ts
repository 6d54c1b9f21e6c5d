/**
 * The outbox and its settling: queued changes pushed in the order they were made, and what each of
 * the server's answers does to the device (docs/sync-states.md, "What each answer does").
 */
import { HttpError, type Gateway } from "../api/http";
import type { ItemResult } from "../api/types";
import { foldOperation, reshow, tombstone } from "./rebase";
import { refusesTheBatch } from "./states";
import { CHECKPOINT_KEY, UNCONFIRMED_KEY, signed, type LocalProduct, type OutboxEntry, type SyncStore, type SyncTx } from "./store";

/** Something the user should hear about without being interrupted. */
export interface SyncNotice {
  kind: "conflict" | "rejected";
  productId: string;
  message: string;
}

/** The server's word on one operation, from an item result or from a whole request refused. */
interface Answer {
  status: ItemResult["status"];
  code: string | null;
  message: string | null;
  retryable: boolean;
  serverState: LocalProduct | null;
}

function answerOf(result: ItemResult): Answer {
  return {
    status: result.status,
    code: result.code ?? null,
    message: result.message ?? null,
    retryable: result.retryable ?? false,
    serverState: result.serverState ?? null,
  };
}

function reasonOf(answer: Answer): string | null {
  return answer.code ? `${answer.code}: ${answer.message ?? ""}`.trim() : answer.message;
}

/** What settling one batch left: what to tell the user, and the products with a change still waiting. */
interface Settled {
  notices: SyncNotice[];
  waiting: Set<string>;
}

/**
 * The server's answers to ``batch``, applied in one transaction, in the order the changes were made:
 * - ``applied``: gone from the outbox; the kept server copy takes a product change;
 * - ``duplicate``: gone; the copy stays (the change was applied at an earlier send, and the feed may
 *   already hold a later edit), the product is shown from it, and the pull that follows brings the change
 *   (a create with no copy at all becomes the copy until a complete pull confirms it: ``dropUnconfirmed``);
 * - ``conflict``, or a ``duplicate`` replaying one (``CONFLICT_RESOLVED`` with ``serverState``): gone;
 *   the product shows the server's state with the other queued edits on top; a ``conflict`` notice;
 * - ``rejected`` for good: ``failed`` with its code, and undone (a refused movement no longer counts;
 *   a refused create fails the product's later changes with it; ``NOT_FOUND``: the product was deleted
 *   and its tombstone purged, so it goes); a ``rejected`` notice;
 * - ``rejected`` retryable, ``pending``: stays queued, sent again with the same ids.
 * ``closed`` collects entries failed with their product's create (their own answers change nothing).
 */
export async function settle(tx: SyncTx, batch: readonly OutboxEntry[], answers: ReadonlyMap<string, Answer>, closed: Set<number>): Promise<Settled> {
  const notices: SyncNotice[] = [];
  const waiting = new Set<string>();
  const touched = new Set<string>();
  const servers = new ServerCopies(tx);
  const unconfirmed: string[] = [];
  for (const entry of batch) {
    const seq = entry.seq;
    if (seq === undefined) continue;
    const answer = answers.get(entry.operation.operationId);
    if (!answer) {
      waiting.add(entry.productId); // no word on it: it stays queued, and in doubt
      continue;
    }
    const settled = answer.status === "applied" || answer.status === "duplicate";
    if (closed.has(seq) && !settled) continue;
    const reason = reasonOf(answer);
    const replaysConflict = answer.status === "duplicate" && answer.code === "CONFLICT_RESOLVED" && answer.serverState !== null;
    if (answer.status === "conflict" || replaysConflict) {
      await tx.deleteEntries([seq]);
      if (answer.serverState) await servers.set(answer.serverState.id, answer.serverState);
      touched.add(entry.productId);
      notices.push({ kind: "conflict", productId: entry.productId, message: "updated from another device" });
    } else if (answer.status === "applied") {
      // Applied by this very request: the kept copy is older, so it takes the change. A movement stays
      // pending until the feed brings it back (then it is confirmed).
      await tx.deleteEntries([seq]);
      await servers.fold(entry);
    } else if (settled) {
      // A duplicate was applied by an earlier send, at a time the device cannot tell: the feed may
      // since have brought the product with a later edit from elsewhere, which the change must not
      // overwrite. The copy stays as the server last said; the pull that follows brings the change if
      // it is not in it yet.
      await tx.deleteEntries([seq]);
      if (isCreate(entry) && !(await servers.has(entry.productId))) {
        // Except a create of which the device holds no copy at all (the feed has not brought it yet):
        // shown from nothing, the user's new product would vanish until a pull gets through, which
        // on a bad link can take long. The create is the copy until a complete pull confirms it or,
        // not bringing it, says the server no longer holds it (``dropUnconfirmed``).
        await servers.fold(entry);
        unconfirmed.push(entry.productId);
      }
      touched.add(entry.productId);
    } else if (answer.status === "pending" || answer.retryable) {
      // Pending: accepted, not applied yet, still in doubt. Retryable: nothing was stored, not in doubt.
      const sent = answer.status === "pending" ? entry.sent : false;
      await tx.updateEntries([{ seq, changes: { attempts: entry.attempts + 1, code: answer.code, reason, sent } }]);
      waiting.add(entry.productId);
    } else {
      await tx.updateEntries([{ seq, changes: { status: "failed", attempts: entry.attempts + 1, code: answer.code, reason, sent: false } }]);
      if (entry.operation.entityType === "stockMovement") await refuseMovement(tx, entry.entityId);
      if (entry.operation.entityType === "product" && entry.operation.operationType === "create") {
        for (const dependent of await refuseDependents(tx, entry, answer.code, reason)) closed.add(dependent);
      }
      if (answer.code === "NOT_FOUND") await servers.delete(entry.productId, entry.operation.modifiedAt);
      touched.add(entry.productId);
      notices.push({ kind: "rejected", productId: entry.productId, message: reason ?? "refused by the server" });
    }
  }
  await servers.save();
  if (unconfirmed.length > 0) {
    const held = JSON.parse((await tx.getMeta(UNCONFIRMED_KEY)) ?? "[]") as string[];
    await tx.setMeta(UNCONFIRMED_KEY, JSON.stringify([...new Set([...held, ...unconfirmed])]));
  }
  await reshow(tx, touched);
  return { notices, waiting };
}

function isCreate(entry: OutboxEntry): boolean {
  return entry.operation.entityType === "product" && entry.operation.operationType === "create";
}

/** The kept server copies a batch changes, read once and written once, changed in the batch's order. */
class ServerCopies {
  private readonly copies = new Map<string, LocalProduct | undefined>();
  private readonly changed = new Set<string>();

  constructor(private readonly tx: SyncTx) {}

  private async get(id: string): Promise<LocalProduct | undefined> {
    if (!this.copies.has(id)) this.copies.set(id, (await this.tx.getServerStates([id]))[0]);
    return this.copies.get(id);
  }

  /** Whether the device holds a copy (a tombstone included). */
  async has(id: string): Promise<boolean> {
    return (await this.get(id)) !== undefined;
  }

  async set(id: string, state: LocalProduct): Promise<void> {
    await this.get(id);
    this.copies.set(id, state);
    this.changed.add(id);
  }

  /** A product change the server applied: the copy takes it (see ``foldOperation``), so undoing another change later keeps it. */
  async fold(entry: OutboxEntry): Promise<void> {
    if (entry.operation.entityType !== "product") return;
    const id = entry.productId;
    const after = foldOperation(await this.get(id), entry.operation);
    if (after) await this.set(id, after);
  }

  /** The server deleted it (and purged the tombstone): a tombstone here, so it is not shown again. */
  async delete(id: string, modifiedAt: string): Promise<void> {
    await this.set(id, tombstone(id, await this.get(id), modifiedAt));
  }

  async save(): Promise<void> {
    const states = [...this.changed].map((id) => this.copies.get(id)).filter((s): s is LocalProduct => s !== undefined);
    await this.tx.putServerStates(states);
  }
}

/** A movement refused for good: listed as failed, and its pending effect on the level taken back. */
async function refuseMovement(tx: SyncTx, movementId: string): Promise<void> {
  const [movement] = await tx.getMovements([movementId]);
  if (!movement || movement.failed || movement.checkpoint !== null) return;
  await tx.putMovements([{ ...movement, failed: true }]);
  const [level] = await tx.getLevels([movement.productId]);
  if (level) await tx.putLevels([{ ...level, pending: level.pending - signed(movement) }]);
}

/**
 * A product whose creation the server refused for good will never exist there: its other queued
 * changes would wait forever (the server calls a never-seen product retryable), so they fail too, with
 * the create's code, and the product leaves the local list. Returns their ``seq``.
 */
async function refuseDependents(tx: SyncTx, create: OutboxEntry, code: string | null, reason: string | null): Promise<number[]> {
  const refused: number[] = [];
  for (const entry of await tx.entriesOf([create.productId])) {
    if (entry.seq === undefined || entry.seq === create.seq || entry.status !== "queued") continue;
    refused.push(entry.seq);
    await tx.updateEntries([
      { seq: entry.seq, changes: { status: "failed", sent: false, code, reason: `its product's creation was refused (${reason ?? "no reason given"})` } },
    ]);
    if (entry.operation.entityType === "stockMovement") await refuseMovement(tx, entry.entityId);
  }
  return refused;
}

/**
 * Pushes the outbox: batches in the order the changes were made, each settled as its answer comes.
 * A whole request refused for what the batch holds (``413``, another 4xx, see ``refusesTheBatch``) is
 * split in halves and sent again in the same push; a single operation refused so is refused for good
 * with the request's code. Other failures (401, 408, 409, 429, 5xx, no answer) end the push: thrown.
 */
export class Push {
  /** Products with a change still waiting: their later changes wait for the next sync. */
  private readonly waiting = new Set<string>();
  private readonly closed = new Set<number>();

  constructor(
    private readonly store: SyncStore,
    private readonly gateway: Gateway,
    private readonly batchSize: number,
    private readonly report: (notices: SyncNotice[]) => void,
    private readonly afterBatch: () => Promise<void>,
  ) {}

  async run(): Promise<void> {
    const queued = await this.store.queuedEntries();
    let next = 0;
    for (;;) {
      const batch: OutboxEntry[] = [];
      while (next < queued.length && batch.length < this.batchSize) {
        const entry = queued[next++] as OutboxEntry;
        if (this.waiting.has(entry.productId) || (entry.seq !== undefined && this.closed.has(entry.seq))) continue;
        batch.push(entry);
      }
      if (batch.length === 0) return;
      await this.send(batch);
      await this.afterBatch();
    }
  }

  private async send(batch: readonly OutboxEntry[]): Promise<void> {
    const open = batch.filter((entry) => entry.seq !== undefined && !this.closed.has(entry.seq));
    if (open.length === 0) return;
    // In doubt from here on, until the server's word on each item arrives.
    const unsent = open.filter((entry) => !entry.sent);
    await this.store.updateEntries(unsent.map((entry) => ({ seq: entry.seq as number, changes: { sent: true } })));
    const sending = open.map((entry) => ({ ...entry, sent: true }));
    const answers = new Map<string, Answer>();
    try {
      const checkpoint = await this.store.getMeta(CHECKPOINT_KEY);
      const response = await this.gateway.sync(
        checkpoint,
        sending.map((entry) => entry.operation),
      );
      for (const result of response.results) if (result.operationId) answers.set(result.operationId, answerOf(result));
    } catch (error) {
      if (!(error instanceof HttpError) || !refusesTheBatch(error.status, error.code)) throw error;
      if (sending.length > 1) {
        const half = Math.ceil(sending.length / 2);
        await this.send(sending.slice(0, half));
        await this.send(sending.slice(half));
        return;
      }
      const [only] = sending as [OutboxEntry];
      answers.set(only.operation.operationId, { status: "rejected", code: error.code, message: error.message, retryable: false, serverState: null });
    }
    const settled = await this.store.transaction((tx) => settle(tx, sending, answers, this.closed));
    for (const productId of settled.waiting) this.waiting.add(productId);
    if (settled.notices.length > 0) this.report(settled.notices);
  }
}
