"""The local store: one SQLite database (WAL) per profile holding the server's data as last pulled,
the outbox of changes made on this device, the pulled checkpoint, the sync status and recent notices.

Every write is one local transaction, so a crash at any point leaves either the whole change or none
of it; an outbox item is only ever settled by the server's answer for its ``operationId``.

Stock is kept per product in ``levels``: ``confirmed`` is the snapshot's level (as of its checkpoint
C) plus every movement the feed brought after C, each counted once, in the transaction that stores
it. The shown level adds this device's own movements that no pull has brought back yet. Nothing here
sums a product's movements to show its stock.

Reading (products, counts, status) needs neither the wire models nor pydantic: products are kept as
their JSON and read back with ``json.loads``; the contracts are imported where a page is stored or
an operation is parsed, by which time the caller has loaded them anyway.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from stockzen_client.domain.status import Notice, SyncProgress, SyncState
from stockzen_client.domain.view import LocalMovement, LocalProduct, queued_movement, rebase, signed

if TYPE_CHECKING:
    from stockzen_contracts import (
        ChangeFeedPage,
        ItemResult,
        Operation,
        ProductState,
        SnapshotPage,
        StockMovementState,
    )

SCHEMA = """
CREATE TABLE IF NOT EXISTS products (id TEXT PRIMARY KEY, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS movements (id TEXT PRIMARY KEY, product_id TEXT NOT NULL, state TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS movements_by_product ON movements (product_id);
CREATE TABLE IF NOT EXISTS levels (
    product_id TEXT PRIMARY KEY,
    confirmed INTEGER NOT NULL DEFAULT 0  -- the snapshot's level + the feed's movements after it
);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- the order the changes were made in
    operation_id TEXT NOT NULL UNIQUE,
    entity_type TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    product_id TEXT NOT NULL,  -- the product a change touches: its changes go out in order
    body TEXT NOT NULL,        -- the operation exactly as it is (re)sent
    status TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,  -- unix time
    last_error TEXT,
    outcome TEXT,                              -- the server's status for it, once settled
    awaiting_pull INTEGER NOT NULL DEFAULT 0,  -- applied, but no pull has brought it back yet
    in_doubt INTEGER NOT NULL DEFAULT 0,       -- sent, and no final answer yet: it may be applied
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_by_status ON outbox (status, seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS notices (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, kind TEXT NOT NULL, entity_id TEXT NOT NULL,
    message TEXT NOT NULL
);
"""

SCHEMA_VERSION = 1
"""``PRAGMA user_version``: 0 for a database from before ``levels`` and ``in_doubt``."""

_QUEUED = "status IN ('pending', 'processing')"
_SHOWN = "(status IN ('pending', 'processing') OR (status = 'completed' AND awaiting_pull = 1))"
_MOVEMENT = "entity_type = 'stockMovement'"
NOTICES_KEPT = 50
_IDS_PER_QUERY = 500  # SQLite binds at most 999 parameters in older builds


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One queued change."""

    seq: int
    operation: Operation
    body: dict[str, Any]
    attempts: int

    @property
    def operation_id(self) -> UUID:
        return self.operation.operation_id


@dataclass(frozen=True, slots=True)
class Settled:
    """What reconciling one batch's results did."""

    notices: list[Notice]
    deferred: int


@dataclass(frozen=True, slots=True)
class SnapshotProgress:
    """Where a first download stands: its checkpoint C, the cursor of the next page (None once the last
    page is stored), and how many products are stored of how many the server announced."""

    checkpoint: str
    cursor: str | None
    done: int
    total: int


class LocalStore:
    """The profile's SQLite database. Not thread-safe: one store per thread (or event loop)."""

    def __init__(self, path: Path | str, *, clock: Callable[[], float]) -> None:
        self.path = path
        self._clock = clock
        self._db = sqlite3.connect(path, isolation_level=None, timeout=10)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA busy_timeout = 10000")  # other processes on the profile write too
        self._db.execute("PRAGMA journal_mode = WAL")  # readers never wait for the engine's writes
        self._db.execute("PRAGMA synchronous = FULL")  # an acknowledged local write survives a power cut
        if self._db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            with self._transaction() as db:
                _migrate(db)

    def close(self) -> None:
        """Close the database connection."""
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock up front, so two processes never interleave a read-modify-write.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # --- local changes -------------------------------------------------------------------------

    def enqueue(self, operation: Operation) -> int:
        """Queue one change made on this device; returns its place in the outbox."""
        from stockzen_contracts import RecordStockMovement

        product_id = operation.payload.product_id if isinstance(operation, RecordStockMovement) else operation.entity_id
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO outbox (operation_id, entity_type, entity_id, product_id, body, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    str(operation.operation_id),
                    operation.entity_type.value,
                    str(operation.entity_id),
                    str(product_id),
                    json.dumps(operation.to_wire()),
                    _now_iso(),
                ),
            )
        return int(cursor.lastrowid or 0)

    def outbox_head(self) -> int:
        """The outbox's last sequence number: it grows whenever any process queues a change."""
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        return int(row[0]) if row else 0

    # --- the push side -------------------------------------------------------------------------

    def sendable(self, limit: int) -> list[OutboxItem]:
        """Queued changes due now, oldest first; a product's later changes wait behind an earlier one
        that is backing off, so they reach the server in the order they were made."""
        from stockzen_contracts import parse_operation

        now = self._clock()
        rows = self._db.execute(
            f"SELECT seq, product_id, body, attempts, next_attempt_at FROM outbox WHERE {_QUEUED} ORDER BY seq"
        ).fetchall()
        waiting: set[str] = set()
        due: list[OutboxItem] = []
        for row in rows:
            if row["product_id"] in waiting:
                continue
            if row["next_attempt_at"] > now:
                waiting.add(row["product_id"])
                continue
            body = json.loads(row["body"])
            due.append(OutboxItem(row["seq"], parse_operation(body), body, row["attempts"]))
            if len(due) == limit:
                break
        return due

    def next_attempt_at(self) -> float | None:
        """When the earliest backing-off change is due (None when nothing is queued)."""
        row = self._db.execute(f"SELECT min(next_attempt_at) FROM outbox WHERE {_QUEUED}").fetchone()
        return float(row[0]) if row[0] is not None else None

    def mark_sending(self, items: Sequence[OutboxItem]) -> None:
        """Record that these changes are on their way, and in doubt until a final answer: a crash now
        leaves them ``processing``; the next sync sends them again with the same ids and the server
        answers ``duplicate``."""
        with self._transaction() as db:
            db.executemany(
                "UPDATE outbox SET status = 'processing', in_doubt = 1 WHERE seq = ?", [(i.seq,) for i in items]
            )

    def defer(
        self, items: Sequence[OutboxItem], error: str, delay: Callable[[int], float], *, stored: bool | None = None
    ) -> None:
        """Keep these changes queued, each due again after ``delay(its attempts)`` seconds.

        ``stored=False`` says the server certainly stored none of them (it refused the whole request
        before reading it): they are no longer in doubt. Otherwise (no answer, a failing server) they
        stay as they were.
        """
        with self._transaction() as db:
            self._requeue(db, [(item, error, stored is False) for item in items], delay)

    def _requeue(
        self, db: sqlite3.Connection, items: Sequence[tuple[OutboxItem, str, bool]], delay: Callable[[int], float]
    ) -> None:
        now = self._clock()
        for item, error, not_stored in items:
            attempts = item.attempts + 1
            db.execute(
                "UPDATE outbox SET status = 'pending', attempts = ?, next_attempt_at = ?, last_error = ?,"
                " in_doubt = CASE WHEN ? THEN 0 ELSE in_doubt END"
                " WHERE seq = ? AND status IN ('pending', 'processing')",
                (attempts, now + delay(attempts), error, not_stored, item.seq),
            )

    def release_backoff(self) -> None:
        """Make every queued change due now (the connection came back: their failures said nothing
        about the changes themselves)."""
        with self._transaction() as db:
            db.execute(f"UPDATE outbox SET next_attempt_at = 0 WHERE {_QUEUED}")

    def settle(
        self,
        items: Sequence[OutboxItem],
        results: Iterable[ItemResult],
        delay: Callable[[int], float],
    ) -> Settled:
        """Apply the server's result for each sent change, in one transaction.

        ``applied``/``duplicate``: done (shown on top of the server's data until a pull brings it back);
        ``conflict``: the server's state replaces the local record and a notice says so; ``rejected``
        and final: parked as failed with its reason and a notice; ``pending`` and retryable
        rejections: queued again with backoff. A final answer and a retryable rejection (nothing was
        stored) end the change's doubt; ``pending`` and a missing result keep it.
        """
        from stockzen_contracts import ItemStatus

        by_id = {r.operation_id: r for r in results}
        notices: list[Notice] = []
        retry: list[tuple[OutboxItem, str, bool]] = []
        with self._transaction() as db:
            for item in items:
                result = by_id.get(item.operation_id)
                if result is None:
                    retry.append((item, "the server sent no result for it", False))
                elif result.status is ItemStatus.PENDING:
                    retry.append((item, _reason(result), False))
                elif result.status is ItemStatus.REJECTED and result.retryable:
                    retry.append((item, _reason(result), True))
                elif result.status in (ItemStatus.APPLIED, ItemStatus.DUPLICATE):
                    _complete(db, item, result.status.value, awaiting_pull=True)
                elif result.status is ItemStatus.CONFLICT:
                    if result.server_state is not None:
                        _put_product(db, result.server_state)
                    _complete(db, item, "conflict", awaiting_pull=False)  # its edit lost: nothing to show on top
                    notices.append(self._notice(db, "conflict", item, _conflict_message(item)))
                else:
                    db.execute(
                        "UPDATE outbox SET status = 'failed', outcome = 'rejected', last_error = ?, in_doubt = 0"
                        " WHERE seq = ?",
                        (_reason(result), item.seq),
                    )
                    notices.append(self._notice(db, "rejected", item, _rejection_message(item, result)))
            self._requeue(db, retry, delay)
        return Settled(notices, len(retry))

    def in_doubt_movements(self) -> int:
        """How many of this device's stock movements were sent without a final answer yet."""
        row = self._db.execute(f"SELECT count(*) FROM outbox WHERE in_doubt = 1 AND {_MOVEMENT}").fetchone()
        return int(row[0])

    def _notice(self, db: sqlite3.Connection, kind: str, item: OutboxItem, message: str) -> Notice:
        notice = Notice(datetime.now(UTC), kind, str(item.operation.entity_id), message)
        db.execute(
            "INSERT INTO notices (at, kind, entity_id, message) VALUES (?, ?, ?, ?)",
            (notice.at.isoformat(), notice.kind, notice.entity_id, notice.message),
        )
        db.execute(
            "DELETE FROM notices WHERE id <= (SELECT max(id) FROM notices) - ?",
            (NOTICES_KEPT,),
        )
        return notice

    # --- the pull side -------------------------------------------------------------------------

    @property
    def checkpoint(self) -> str | None:
        """The checkpoint the last pulled page ended at (None before the first download completes)."""
        return self.get_meta("checkpoint")

    def apply_page(self, page: ChangeFeedPage) -> None:
        """Apply one page of the change feed, then move the checkpoint past it: both in one transaction,
        so the checkpoint never covers a change the store does not hold. A movement not held before
        adds to its product's confirmed level; one held already adds nothing."""
        with self._transaction() as db:
            for change in page.changes:
                if change.product is not None:
                    _put_product(db, change.product)
                elif change.movement is not None:
                    _add_movement(db, change.movement)
            _set_meta(db, "checkpoint", page.checkpoint)

    def pull_finished(self) -> None:
        """A complete pull after the push: every applied change is now part of the server's data."""
        with self._transaction() as db:
            db.execute("UPDATE outbox SET awaiting_pull = 0 WHERE awaiting_pull = 1")

    def forget_checkpoint(self) -> None:
        """The feed cannot resume from the checkpoint (``RESET_REQUIRED``): the next pull downloads a
        snapshot. What the store shows stays until the snapshot's first page replaces it."""
        with self._transaction() as db:
            db.execute("DELETE FROM meta WHERE key IN ('checkpoint', 'snapshot')")

    def snapshot_progress(self) -> SnapshotProgress | None:
        """The first download under way (stored with each of its pages), if one is."""
        saved = self.get_meta("snapshot")
        if saved is None:
            return None
        data = json.loads(saved)
        return SnapshotProgress(data["checkpoint"], data["cursor"], data["done"], data["total"])

    def store_snapshot_page(self, page: SnapshotPage, resumed: SnapshotProgress | None) -> SnapshotProgress:
        """Store one page of a snapshot and where the snapshot stands now, in one transaction.

        The first page (``resumed`` None) first forgets the server copy: every product (those with
        queued changes come back with their page, or from a queued create), every movement the feed
        brought, every level; the changes already applied are inside the snapshot's levels, so they
        stop being shown on top. This device's queued changes stay, with their effect. After the last
        page the feed checkpoint becomes the snapshot's checkpoint C.
        """
        with self._transaction() as db:
            if resumed is None:
                _forget_server_copy(db)
            for item in page.items:
                _put_product(db, item)
            db.executemany(
                "INSERT INTO levels (product_id, confirmed) VALUES (?, ?)"
                " ON CONFLICT (product_id) DO UPDATE SET confirmed = excluded.confirmed",
                [(str(item.id), item.stock_level) for item in page.items],
            )
            done = (resumed.done if resumed else 0) + len(page.items)
            announced = resumed.total if resumed else page.total_products
            now = SnapshotProgress(page.checkpoint, page.next_cursor, done, max(done, announced or 0))
            if now.cursor is None:
                _set_meta(db, "checkpoint", now.checkpoint)
                db.execute("DELETE FROM meta WHERE key = 'snapshot'")
            else:
                progress = {"checkpoint": now.checkpoint, "cursor": now.cursor, "done": now.done, "total": now.total}
                _set_meta(db, "snapshot", json.dumps(progress))
        return now

    def abandon_snapshot(self) -> None:
        """Start the snapshot again from its first page at the next pull (its cursor is no use)."""
        with self._transaction() as db:
            db.execute("DELETE FROM meta WHERE key = 'snapshot'")

    # --- what the user sees --------------------------------------------------------------------

    def products(self, *, include_deleted: bool = False) -> list[LocalProduct]:
        """Every product as this device shows it, by name."""
        confirmed = dict(self._db.execute("SELECT product_id, confirmed FROM levels").fetchall())
        base = {row[0]: row[1] for row in self._db.execute("SELECT id, state FROM products")}
        queued: dict[str, list[dict[str, Any]]] = {}
        for row in self._db.execute(
            f"SELECT entity_id, body FROM outbox WHERE entity_type = 'product' AND {_SHOWN} ORDER BY seq"
        ):
            queued.setdefault(row[0], []).append(json.loads(row[1]))
        pending = self._pending()
        products = []
        for product_id in base.keys() | queued.keys():
            state = base.get(product_id)
            product = rebase(LocalProduct.of_wire(json.loads(state)) if state else None, queued.get(product_id, ()))
            if product is None or (product.deleted and not include_deleted):
                continue
            level = confirmed.get(product_id, 0) + pending.get(product_id, 0)
            products.append(_with_level(product, level))
        return sorted(products, key=lambda p: ((p.name or "").casefold(), str(p.id)))

    def product(self, product_id: UUID) -> LocalProduct | None:
        """One product as this device shows it (None if unknown or deleted)."""
        key = str(product_id)
        row = self._db.execute("SELECT state FROM products WHERE id = ?", (key,)).fetchone()
        queued = [
            json.loads(op[0])
            for op in self._db.execute(
                f"SELECT body FROM outbox WHERE entity_type = 'product' AND entity_id = ? AND {_SHOWN} ORDER BY seq",
                (key,),
            )
        ]
        product = rebase(LocalProduct.of_wire(json.loads(row[0])) if row else None, queued)
        if product is None or product.deleted:
            return None
        level = self._db.execute("SELECT confirmed FROM levels WHERE product_id = ?", (key,)).fetchone()
        return _with_level(product, (level[0] if level else 0) + self._pending(key).get(key, 0))

    def history(self, product_id: UUID) -> list[LocalMovement]:
        """A product's movements this device holds, newest first: those the feed brought (after the
        snapshot) and this device's own, ``queued`` until a pull brings them back (those a snapshot
        covered are shown as confirmed; refused ones are not shown)."""
        key = str(product_id)
        movements = [
            _movement(json.loads(row[0]))
            for row in self._db.execute("SELECT state FROM movements WHERE product_id = ?", (key,))
        ]
        known = {str(m.id) for m in movements}
        for movement_id, body, confirmed in self._db.execute(
            f"SELECT entity_id, body, NOT {_SHOWN} FROM outbox"
            f" WHERE {_MOVEMENT} AND product_id = ? AND status <> 'failed' ORDER BY seq",
            (key,),
        ):
            if movement_id not in known:
                own = queued_movement(json.loads(body))
                movements.append(dataclasses.replace(own, queued=False) if confirmed else own)
        return sorted(movements, key=lambda m: m.occurred_at, reverse=True)

    def _pending(self, product_id: str | None = None) -> dict[str, int]:
        """Per product, what this device's shown movements add that no pull has brought back yet."""
        query = f"SELECT entity_id, product_id, body FROM outbox WHERE {_MOVEMENT} AND {_SHOWN}"
        rows = (
            self._db.execute(query + " AND product_id = ?", (product_id,)).fetchall()
            if product_id is not None
            else self._db.execute(query).fetchall()
        )
        if not rows:
            return {}
        received = self._held([row[0] for row in rows])
        pending: dict[str, int] = {}
        for movement_id, product, body in rows:
            if movement_id not in received:
                payload = json.loads(body)["payload"]
                pending[product] = pending.get(product, 0) + signed(payload["kind"], payload["quantity"])
        return pending

    def _held(self, movement_ids: Sequence[str]) -> set[str]:
        """Which of these movements the feed has brought (only these few ids are looked up)."""
        held: set[str] = set()
        for start in range(0, len(movement_ids), _IDS_PER_QUERY):
            chunk = movement_ids[start : start + _IDS_PER_QUERY]
            marks = ", ".join("?" * len(chunk))
            held.update(row[0] for row in self._db.execute(f"SELECT id FROM movements WHERE id IN ({marks})", chunk))
        return held

    # --- status and notices --------------------------------------------------------------------

    def counts(self) -> tuple[int, int, int]:
        """(queued, failed, applied but not pulled back yet)."""
        row = self._db.execute(
            f"SELECT coalesce(sum({_QUEUED}), 0), coalesce(sum(status = 'failed'), 0),"
            " coalesce(sum(awaiting_pull), 0) FROM outbox"
        ).fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    def max_attempts(self) -> int:
        """The most attempts any queued change has had."""
        row = self._db.execute(f"SELECT coalesce(max(attempts), 0) FROM outbox WHERE {_QUEUED}").fetchone()
        return int(row[0])

    def last_queued_error(self) -> str | None:
        """Why the most recently retried queued change is still queued."""
        row = self._db.execute(
            f"SELECT last_error FROM outbox WHERE {_QUEUED} AND last_error IS NOT NULL ORDER BY next_attempt_at DESC"
        ).fetchone()
        return row[0] if row else None

    def outbox(self) -> list[tuple[UUID, str]]:
        """Every change this device made, oldest first: (operation id, outbox status)."""
        rows = self._db.execute("SELECT operation_id, status FROM outbox ORDER BY seq")
        return [(UUID(row[0]), row[1]) for row in rows]

    def failed(self) -> list[tuple[UUID, str]]:
        """Changes the server refused for good: (operation id, reason)."""
        rows = self._db.execute("SELECT operation_id, last_error FROM outbox WHERE status = 'failed' ORDER BY seq")
        return [(UUID(row[0]), row[1] or "") for row in rows]

    def notices(self, limit: int = 5) -> list[Notice]:
        """The most recent notices, newest first."""
        rows = self._db.execute(
            "SELECT at, kind, entity_id, message FROM notices ORDER BY id DESC LIMIT ?", (limit,)
        ).fetchall()
        return [Notice(datetime.fromisoformat(r["at"]), r["kind"], r["entity_id"], r["message"]) for r in rows]

    def download_progress(self) -> SyncProgress | None:
        """A first download under way, as the status shows it (products stored of how many)."""
        snapshot = self.snapshot_progress()
        return None if snapshot is None else SyncProgress("snapshot", snapshot.done, snapshot.total)

    def save_status(self, state: SyncState, last_error: str | None, synced_at: datetime | None) -> None:
        """Keep the engine's view of syncing, for ``stockzen status`` in another process."""
        with self._transaction() as db:
            _set_meta(db, "state", state.value)
            _set_meta(db, "last_error", last_error)
            if synced_at is not None:
                _set_meta(db, "last_synced_at", synced_at.isoformat())

    def get_meta(self, key: str) -> str | None:
        """A value the store keeps about itself."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def _migrate(db: sqlite3.Connection) -> None:
    """Create the schema, or bring a database of an earlier version up to it (in one transaction)."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    had_levels = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'levels'").fetchone()
    columns = {row[1] for row in db.execute("PRAGMA table_info(outbox)")}
    if columns and "in_doubt" not in columns:
        db.execute("ALTER TABLE outbox ADD COLUMN in_doubt INTEGER NOT NULL DEFAULT 0")
        # A change left ``processing`` may have reached the server: its fate is unknown.
        db.execute("UPDATE outbox SET in_doubt = 1 WHERE status = 'processing'")
    for statement in _statements(SCHEMA):
        db.execute(statement)
    if version < SCHEMA_VERSION and not had_levels:
        # An older database holds every movement since its first pull: its levels are their sums, once.
        db.execute(
            "INSERT INTO levels (product_id, confirmed)"
            " SELECT product_id, sum(CASE json_extract(state, '$.kind') WHEN 'entry' THEN 1 ELSE -1 END"
            " * json_extract(state, '$.quantity')) FROM movements GROUP BY product_id"
        )
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _forget_server_copy(db: sqlite3.Connection) -> None:
    # Every product goes, those with queued changes too: the snapshot and the feed bring back each one
    # the server holds, and the queued changes are replayed on top (a queued create shows its product
    # meanwhile). A copy kept instead would outlive a delete made before C: the feed never says it again.
    db.execute("DELETE FROM products")
    db.execute("DELETE FROM movements")
    db.execute("DELETE FROM levels")
    db.execute("UPDATE outbox SET awaiting_pull = 0 WHERE awaiting_pull = 1")
    db.execute("DELETE FROM meta WHERE key IN ('checkpoint', 'snapshot')")


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def _set_meta(db: sqlite3.Connection, key: str, value: str | None) -> None:
    db.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def _put_product(db: sqlite3.Connection, state: ProductState) -> None:
    # A snapshot's ProductView carries its level too; the level lives in ``levels``, not in the state.
    db.execute(
        "INSERT INTO products (id, state) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET state = excluded.state",
        (str(state.id), state.model_dump_json(by_alias=True, exclude={"stock_level"})),
    )


def _add_movement(db: sqlite3.Connection, movement: StockMovementState) -> None:
    product_id = str(movement.product_id)
    added = db.execute(
        "INSERT OR IGNORE INTO movements (id, product_id, state) VALUES (?, ?, ?)",
        (str(movement.id), product_id, movement.model_dump_json(by_alias=True)),
    ).rowcount
    if added:
        db.execute(
            "INSERT INTO levels (product_id, confirmed) VALUES (?, ?)"
            " ON CONFLICT (product_id) DO UPDATE SET confirmed = confirmed + excluded.confirmed",
            (product_id, signed(movement.kind, movement.quantity)),
        )


def _movement(state: dict[str, Any]) -> LocalMovement:
    from stockzen_contracts import MovementKind

    return LocalMovement(
        id=UUID(state["id"]),
        product_id=UUID(state["productId"]),
        kind=MovementKind(state["kind"]),
        quantity=state["quantity"],
        reason=state.get("reason"),
        occurred_at=datetime.fromisoformat(state["occurredAt"]),
        queued=False,
    )


def _with_level(product: LocalProduct, level: int) -> LocalProduct:
    return dataclasses.replace(product, stock_level=level)


def _reason(result: ItemResult) -> str:
    code = result.code.value if result.code else result.status.value
    return f"{code}: {result.message}" if result.message else code


def _describe(item: OutboxItem) -> str:
    from stockzen_contracts import RecordStockMovement

    op = item.operation
    if isinstance(op, RecordStockMovement):
        return f"stock {op.payload.kind.value} of {op.payload.quantity} for product {op.payload.product_id}"
    return f"{op.operation_type.value} of product {op.entity_id}"


def _complete(db: sqlite3.Connection, item: OutboxItem, outcome: str, *, awaiting_pull: bool) -> None:
    db.execute(
        "UPDATE outbox SET status = 'completed', outcome = ?, awaiting_pull = ?, last_error = NULL, in_doubt = 0"
        " WHERE seq = ?",
        (outcome, int(awaiting_pull), item.seq),
    )


def _conflict_message(item: OutboxItem) -> str:
    return (
        f"conflict resolved: the server kept another device's newer version ({_describe(item)}); your copy now shows it"
    )


def _rejection_message(item: OutboxItem, result: ItemResult) -> str:
    return f"the server refused the {_describe(item)}: {_reason(result)}"
