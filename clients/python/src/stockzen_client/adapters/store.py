"""The local store: one SQLite database (WAL) per profile holding the server's data as last pulled,
the outbox of changes made on this device, the pulled checkpoint, the sync status and recent notices.

Every write is one local transaction, so a crash at any point leaves either the whole change or none
of it; an outbox item is only ever settled by the server's answer for its ``operationId``.
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
from typing import Any
from uuid import UUID

from stockzen_client.domain.status import Notice, SyncState
from stockzen_client.domain.view import LocalMovement, LocalProduct, queued_movement, rebase
from stockzen_contracts import (
    Change,
    ChangeFeedPage,
    EntityType,
    ItemResult,
    ItemStatus,
    Operation,
    ProductState,
    RecordStockMovement,
    StockMovementState,
    parse_operation,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS products (id TEXT PRIMARY KEY, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS movements (id TEXT PRIMARY KEY, product_id TEXT NOT NULL, state TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS movements_by_product ON movements (product_id);
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
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_by_status ON outbox (status, seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS notices (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, kind TEXT NOT NULL, entity_id TEXT NOT NULL,
    message TEXT NOT NULL
);
"""

_QUEUED = "status IN ('pending', 'processing')"
_SHOWN = "(status IN ('pending', 'processing') OR (status = 'completed' AND awaiting_pull = 1))"
NOTICES_KEPT = 50


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
        with self._transaction() as db:
            for statement in _statements(SCHEMA):
                db.execute(statement)

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
        """Record that these changes are on their way. A crash now leaves them ``processing``; the
        next sync sends them again with the same ids and the server answers ``duplicate``."""
        with self._transaction() as db:
            db.executemany("UPDATE outbox SET status = 'processing' WHERE seq = ?", [(i.seq,) for i in items])

    def defer(self, items: Sequence[OutboxItem], error: str, delay: Callable[[int], float]) -> None:
        """Keep these changes queued, each due again after ``delay(its attempts)`` seconds."""
        with self._transaction() as db:
            self._requeue(db, [(item, error) for item in items], delay)

    def _requeue(
        self, db: sqlite3.Connection, items: Sequence[tuple[OutboxItem, str]], delay: Callable[[int], float]
    ) -> None:
        now = self._clock()
        for item, error in items:
            attempts = item.attempts + 1
            db.execute(
                "UPDATE outbox SET status = 'pending', attempts = ?, next_attempt_at = ?, last_error = ?"
                " WHERE seq = ? AND status IN ('pending', 'processing')",
                (attempts, now + delay(attempts), error, item.seq),
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
        rejections: queued again with backoff.
        """
        by_id = {r.operation_id: r for r in results}
        notices: list[Notice] = []
        retry: list[tuple[OutboxItem, str]] = []
        with self._transaction() as db:
            for item in items:
                result = by_id.get(item.operation_id)
                if result is None:
                    retry.append((item, "the server sent no result for it"))
                elif result.status is ItemStatus.PENDING or (result.status is ItemStatus.REJECTED and result.retryable):
                    retry.append((item, _reason(result)))
                elif result.status in (ItemStatus.APPLIED, ItemStatus.DUPLICATE):
                    _complete(db, item, result.status.value, awaiting_pull=True)
                elif result.status is ItemStatus.CONFLICT:
                    if result.server_state is not None:
                        _put_product(db, result.server_state)
                    _complete(db, item, "conflict", awaiting_pull=False)  # its edit lost: nothing to show on top
                    notices.append(self._notice(db, "conflict", item, _conflict_message(item)))
                else:
                    db.execute(
                        "UPDATE outbox SET status = 'failed', outcome = 'rejected', last_error = ? WHERE seq = ?",
                        (_reason(result), item.seq),
                    )
                    notices.append(self._notice(db, "rejected", item, _rejection_message(item, result)))
            self._requeue(db, retry, delay)
        return Settled(notices, len(retry))

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
        """The checkpoint the last pulled page ended at (None before the first download)."""
        return self.get_meta("checkpoint")

    def apply_page(self, page: ChangeFeedPage) -> None:
        """Apply one page of other devices' changes, then move the checkpoint past it: both in one
        transaction, so the checkpoint never covers a change the store does not hold."""
        with self._transaction() as db:
            for change in page.changes:
                _apply_change(db, change)
            _set_meta(db, "checkpoint", page.checkpoint)

    def pull_finished(self) -> None:
        """A complete pull after the push: every applied change is now part of the server's data."""
        with self._transaction() as db:
            db.execute("UPDATE outbox SET awaiting_pull = 0 WHERE awaiting_pull = 1")

    def reset_server_data(self) -> None:
        """Forget the pulled data and checkpoint for a full download; the outbox is kept whole."""
        with self._transaction() as db:
            db.execute("DELETE FROM products")
            db.execute("DELETE FROM movements")
            db.execute("DELETE FROM meta WHERE key = 'checkpoint'")

    # --- what the user sees --------------------------------------------------------------------

    def products(self, *, include_deleted: bool = False) -> list[LocalProduct]:
        """Every product as this device shows it, by name."""
        base = {
            UUID(row["id"]): LocalProduct.of_state(ProductState.model_validate_json(row["state"]))
            for row in self._db.execute("SELECT state, id FROM products")
        }
        shown = self._shown_operations()
        ids = set(base) | {_product_key(op) for op in shown}
        levels = self._levels(shown)
        products = []
        for product_id in ids:
            product = rebase(base.get(product_id), [op for op in shown if op.entity_id == product_id])
            if product is None or (product.deleted and not include_deleted):
                continue
            products.append(_with_level(product, levels.get(product_id, 0)))
        return sorted(products, key=lambda p: ((p.name or "").casefold(), str(p.id)))

    def product(self, product_id: UUID) -> LocalProduct | None:
        """One product as this device shows it (None if unknown or deleted)."""
        row = self._db.execute("SELECT state FROM products WHERE id = ?", (str(product_id),)).fetchone()
        base = LocalProduct.of_state(ProductState.model_validate_json(row["state"])) if row else None
        shown = [op for op in self._shown_operations() if _product_key(op) == product_id]
        product = rebase(base, [op for op in shown if op.entity_id == product_id])
        if product is None or product.deleted:
            return None
        return _with_level(product, self._levels(shown).get(product_id, 0))

    def history(self, product_id: UUID) -> list[LocalMovement]:
        """A product's movements, newest first, the unconfirmed ones included."""
        movements = [
            _movement(StockMovementState.model_validate_json(row["state"])) for row in self._movement_rows(product_id)
        ]
        known = {m.id for m in movements}
        for op in self._shown_operations():
            if (
                isinstance(op, RecordStockMovement)
                and op.payload.product_id == product_id
                and op.entity_id not in known
            ):
                movements.append(queued_movement(op))
        return sorted(movements, key=lambda m: m.occurred_at, reverse=True)

    def _movement_rows(self, product_id: UUID | None = None) -> list[sqlite3.Row]:
        if product_id is None:
            return self._db.execute("SELECT id, product_id, state FROM movements").fetchall()
        return self._db.execute(
            "SELECT id, product_id, state FROM movements WHERE product_id = ?", (str(product_id),)
        ).fetchall()

    def _shown_operations(self) -> list[Operation]:
        rows = self._db.execute(f"SELECT body FROM outbox WHERE {_SHOWN} ORDER BY seq").fetchall()
        return [parse_operation(json.loads(row["body"])) for row in rows]

    def _levels(self, shown: Sequence[Operation]) -> dict[UUID, int]:
        levels: dict[UUID, int] = {}
        known: set[UUID] = set()
        for row in self._movement_rows():
            movement = _movement(StockMovementState.model_validate_json(row["state"]))
            known.add(movement.id)
            levels[movement.product_id] = levels.get(movement.product_id, 0) + movement.signed_quantity
        for op in shown:
            if isinstance(op, RecordStockMovement) and op.entity_id not in known:
                movement = queued_movement(op)
                levels[movement.product_id] = levels.get(movement.product_id, 0) + movement.signed_quantity
        return levels

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


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def _set_meta(db: sqlite3.Connection, key: str, value: str | None) -> None:
    db.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def _put_product(db: sqlite3.Connection, state: ProductState) -> None:
    db.execute(
        "INSERT INTO products (id, state) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET state = excluded.state",
        (str(state.id), state.model_dump_json(by_alias=True)),
    )


def _apply_change(db: sqlite3.Connection, change: Change) -> None:
    if change.entity_type is EntityType.PRODUCT and change.product is not None:
        _put_product(db, change.product)
    elif change.movement is not None:
        db.execute(
            "INSERT OR REPLACE INTO movements (id, product_id, state) VALUES (?, ?, ?)",
            (str(change.movement.id), str(change.movement.product_id), change.movement.model_dump_json(by_alias=True)),
        )


def _movement(state: StockMovementState) -> LocalMovement:
    return LocalMovement(
        id=state.id,
        product_id=state.product_id,
        kind=state.kind,
        quantity=state.quantity,
        reason=state.reason,
        occurred_at=state.occurred_at,
        queued=False,
    )


def _product_key(op: Operation) -> UUID:
    return op.payload.product_id if isinstance(op, RecordStockMovement) else op.entity_id


def _with_level(product: LocalProduct, level: int) -> LocalProduct:
    return dataclasses.replace(product, stock_level=level)


def _reason(result: ItemResult) -> str:
    code = result.code.value if result.code else result.status.value
    return f"{code}: {result.message}" if result.message else code


def _describe(item: OutboxItem) -> str:
    op = item.operation
    if isinstance(op, RecordStockMovement):
        return f"stock {op.payload.kind.value} of {op.payload.quantity} for product {op.payload.product_id}"
    return f"{op.operation_type.value} of product {op.entity_id}"


def _complete(db: sqlite3.Connection, item: OutboxItem, outcome: str, *, awaiting_pull: bool) -> None:
    db.execute(
        "UPDATE outbox SET status = 'completed', outcome = ?, awaiting_pull = ?, last_error = NULL WHERE seq = ?",
        (outcome, int(awaiting_pull), item.seq),
    )


def _conflict_message(item: OutboxItem) -> str:
    return (
        f"conflict resolved: the server kept another device's newer version ({_describe(item)}); your copy now shows it"
    )


def _rejection_message(item: OutboxItem, result: ItemResult) -> str:
    return f"the server refused the {_describe(item)}: {_reason(result)}"
