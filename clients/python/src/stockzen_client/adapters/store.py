"""The local store: one profile's database, as the client and the sync engine use it.

It ties three parts together and adds what is neither: queueing a change (stamped with the device's
hybrid logical clock in the same transaction), choosing what a push sends, and storing what a pull
brings (feed pages, snapshot pages, the checkpoint).

- :mod:`~stockzen_client.adapters.persistence`: the SQLite schema, its migrations, its transactions;
- :mod:`~stockzen_client.adapters.settling`: what each answer of the server does to the outbox;
- :mod:`~stockzen_client.adapters.local_view`: what the user sees.

Stock is kept per product in ``levels``: ``confirmed`` is the snapshot's level (as of its checkpoint
C) plus every movement the feed brought after C, each counted once, in the transaction that stores
it. Reading needs neither the wire models nor pydantic; the contracts are imported where a page is
stored or an operation is parsed, by which time the caller has loaded them anyway.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID

from stockzen_client.adapters.local_view import LocalView
from stockzen_client.adapters.persistence import (
    MOVEMENT,
    QUEUED,
    Database,
    add_movement,
    forget_server_copy,
    put_product,
    set_meta,
)
from stockzen_client.adapters.settling import Settling
from stockzen_client.domain.outbox import OutboxEntry, OutboxItem, Settled, SnapshotProgress
from stockzen_client.domain.stamps import next_stamp, stamp_time, to_millis
from stockzen_client.domain.status import Notice, SyncProgress, SyncState
from stockzen_client.domain.view import LocalMovement, LocalProduct
from stockzen_client.ports import Clock, Delay

if TYPE_CHECKING:
    from stockzen_contracts import ChangeFeedPage, ItemResult, Operation, SnapshotPage

__all__ = ["LocalStore", "OutboxItem", "Settled", "SnapshotProgress"]

LAST_STAMP = "last_stamp"
"""``meta``: the device's last stamp (ms since the epoch), so stamps keep increasing across restarts."""


class LocalStore:
    """The profile's SQLite database. Not thread-safe: one store per thread (or event loop).

    ``clock`` (unix seconds) stamps the changes queued and times the outbox's next attempts.
    """

    def __init__(self, path: Path | str, *, clock: Clock) -> None:
        self.path = path
        self._clock = clock
        self.database = Database(path)
        self.settling = Settling(self.database, clock)
        self.view = LocalView(self.database)

    @property
    def _db(self) -> sqlite3.Connection:
        return self.database.connection

    def close(self) -> None:
        """Close the database connection."""
        self.database.close()

    # --- local changes -------------------------------------------------------------------------

    def enqueue(self, operation: Operation) -> int:
        """Queue one change made on this device; returns its place in the outbox.

        The change is stamped here, in the transaction that queues it: its ``modifiedAt`` is the later
        of now and the device's last stamp + 1 ms, so a later change (from any process on the
        profile) always carries a later time than every change queued before it.
        """
        from stockzen_contracts import RecordStockMovement

        product_id = operation.payload.product_id if isinstance(operation, RecordStockMovement) else operation.entity_id
        with self.database.transaction() as db:
            last = db.execute("SELECT value FROM meta WHERE key = ?", (LAST_STAMP,)).fetchone()
            stamp = next_stamp(to_millis(self._clock()), int(last[0]) if last and last[0] else None)
            set_meta(db, LAST_STAMP, str(stamp))
            stamped = operation.model_copy(update={"modified_at": stamp_time(stamp)})
            cursor = db.execute(
                "INSERT INTO outbox (operation_id, entity_type, entity_id, product_id, body, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    str(operation.operation_id),
                    operation.entity_type.value,
                    str(operation.entity_id),
                    str(product_id),
                    json.dumps(stamped.to_wire()),
                    datetime.now(UTC).isoformat(),
                ),
            )
        return int(cursor.lastrowid or 0)

    def outbox_head(self) -> int:
        """The outbox's last sequence number: it grows whenever any process queues a change."""
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        return int(row[0]) if row else 0

    def discard(self, operation_ids: Iterable[UUID] | None = None) -> list[UUID]:
        """Let go of refused changes: these (or every one when None). Only ``failed`` changes go: a
        queued one is the server's to settle. Returns those discarded, oldest first. Nothing shown
        changes, since a refused change is not shown."""
        with self.database.transaction() as db:
            failed = [
                row[0] for row in db.execute("SELECT operation_id FROM outbox WHERE status = 'failed' ORDER BY seq")
            ]
            asked = None if operation_ids is None else {str(op) for op in operation_ids}
            wanted = [op for op in failed if asked is None or op in asked]
            db.executemany("DELETE FROM outbox WHERE operation_id = ? AND status = 'failed'", [(op,) for op in wanted])
        return [UUID(op) for op in wanted]

    # --- the push side -------------------------------------------------------------------------

    def sendable(self, limit: int, exclude: Collection[int] = ()) -> list[OutboxItem]:
        """Queued changes due now, oldest first, at most ``limit``.

        A product's later changes wait behind an earlier one still queued that is not sent now: one
        backing off, or one of ``exclude`` (the outbox places already sent in this sync, which go out
        once per sync), so they reach the server in the order they were made.
        """
        from stockzen_contracts import parse_operation

        now = self._clock()
        rows = self._db.execute(
            f"SELECT seq, product_id, body, attempts, next_attempt_at, in_doubt FROM outbox WHERE {QUEUED} ORDER BY seq"
        ).fetchall()
        waiting: set[str] = set()
        due: list[OutboxItem] = []
        for row in rows:
            if row["product_id"] in waiting:
                continue
            if row["seq"] in exclude or row["next_attempt_at"] > now:
                waiting.add(row["product_id"])
                continue
            body = json.loads(row["body"])
            due.append(OutboxItem(row["seq"], parse_operation(body), body, row["attempts"], bool(row["in_doubt"])))
            if len(due) == limit:
                break
        return due

    def still_queued(self, items: Sequence[OutboxItem]) -> list[OutboxItem]:
        """Those of ``items`` still waiting for a final answer (none of them settled or failed since)."""
        seqs = ", ".join(str(int(item.seq)) for item in items)
        if not seqs:
            return []
        queued = {row[0] for row in self._db.execute(f"SELECT seq FROM outbox WHERE seq IN ({seqs}) AND {QUEUED}")}
        return [item for item in items if item.seq in queued]

    def next_attempt_at(self) -> float | None:
        """When the earliest backing-off change is due (None when nothing is queued)."""
        row = self._db.execute(f"SELECT min(next_attempt_at) FROM outbox WHERE {QUEUED}").fetchone()
        return float(row[0]) if row[0] is not None else None

    def backing_off(self, now: float) -> bool:
        """Whether some queued change waits for its backoff (is not due at ``now``)."""
        row = self._db.execute(f"SELECT 1 FROM outbox WHERE {QUEUED} AND next_attempt_at > ? LIMIT 1", (now,))
        return row.fetchone() is not None

    def in_doubt_movements(self) -> int:
        """How many of this device's stock movements were sent without a final answer yet."""
        row = self._db.execute(f"SELECT count(*) FROM outbox WHERE in_doubt = 1 AND {MOVEMENT}").fetchone()
        return int(row[0])

    def mark_sending(self, items: Sequence[OutboxItem]) -> None:
        """See :meth:`Settling.mark_sending`."""
        self.settling.mark_sending(items)

    def defer(self, items: Sequence[OutboxItem], error: str, delay: Delay, *, stored: bool | None = None) -> None:
        """See :meth:`Settling.defer`."""
        self.settling.defer(items, error, delay, stored=stored)

    def release(self, items: Sequence[OutboxItem]) -> None:
        """See :meth:`Settling.release`."""
        self.settling.release(items)

    def refuse(self, item: OutboxItem, code: str, reason: str) -> Notice:
        """See :meth:`Settling.refuse`."""
        return self.settling.refuse(item, code, reason)

    def settle(self, items: Sequence[OutboxItem], results: Iterable[ItemResult], delay: Delay) -> Settled:
        """See :meth:`Settling.settle`."""
        return self.settling.settle(items, results, delay)

    def release_backoff(self) -> None:
        """See :meth:`Settling.release_backoff`."""
        self.settling.release_backoff()

    # --- the pull side -------------------------------------------------------------------------

    @property
    def checkpoint(self) -> str | None:
        """The checkpoint the last pulled page ended at (None before the first download completes)."""
        return self.get_meta("checkpoint")

    def apply_page(self, page: ChangeFeedPage) -> None:
        """Apply one page of the change feed, then move the checkpoint past it: both in one transaction,
        so the checkpoint never covers a change the store does not hold. A movement not held before
        adds to its product's confirmed level; one held already adds nothing."""
        with self.database.transaction() as db:
            for change in page.changes:
                if change.product is not None:
                    put_product(db, change.product)
                elif change.movement is not None:
                    add_movement(db, change.movement)
            set_meta(db, "checkpoint", page.checkpoint)

    def pull_finished(self) -> None:
        """A complete pull after the push: every applied change is now part of the server's data."""
        with self.database.transaction() as db:
            db.execute("UPDATE outbox SET awaiting_pull = 0 WHERE awaiting_pull = 1")

    def forget_checkpoint(self) -> None:
        """The feed cannot resume from the checkpoint (``RESET_REQUIRED``): the next pull downloads a
        snapshot. What the store shows stays until the snapshot's first page replaces it."""
        with self.database.transaction() as db:
            db.execute("DELETE FROM meta WHERE key IN ('checkpoint', 'snapshot')")

    def snapshot_progress(self) -> SnapshotProgress | None:
        """The first download under way (stored with each of its pages), if one is."""
        return self.view.snapshot_progress()

    def store_snapshot_page(self, page: SnapshotPage, resumed: SnapshotProgress | None) -> SnapshotProgress:
        """Store one page of a snapshot and where the snapshot stands now, in one transaction.

        The first page (``resumed`` None) first forgets the server copy: every product (those with
        queued changes come back with their page, or from a queued create), every movement the feed
        brought, every level; the changes already applied are inside the snapshot's levels, so they
        stop being shown on top. This device's queued changes stay, with their effect. After the last
        page the feed checkpoint becomes the snapshot's checkpoint C.
        """
        with self.database.transaction() as db:
            if resumed is None:
                forget_server_copy(db)
            for item in page.items:
                put_product(db, item)
            db.executemany(
                "INSERT INTO levels (product_id, confirmed) VALUES (?, ?)"
                " ON CONFLICT (product_id) DO UPDATE SET confirmed = excluded.confirmed",
                [(str(item.id), item.stock_level) for item in page.items],
            )
            done = (resumed.done if resumed else 0) + len(page.items)
            announced = resumed.total if resumed else page.total_products
            now = SnapshotProgress(page.checkpoint, page.next_cursor, done, max(done, announced or 0))
            if now.cursor is None:
                set_meta(db, "checkpoint", now.checkpoint)
                db.execute("DELETE FROM meta WHERE key = 'snapshot'")
            else:
                progress = {"checkpoint": now.checkpoint, "cursor": now.cursor, "done": now.done, "total": now.total}
                set_meta(db, "snapshot", json.dumps(progress))
        return now

    def abandon_snapshot(self) -> None:
        """Start the snapshot again from its first page at the next pull (its cursor is no use)."""
        with self.database.transaction() as db:
            db.execute("DELETE FROM meta WHERE key = 'snapshot'")

    # --- what the user sees (the view) ---------------------------------------------------------

    def products(self, *, include_deleted: bool = False) -> list[LocalProduct]:
        """See :meth:`LocalView.products`."""
        return self.view.products(include_deleted=include_deleted)

    def product(self, product_id: UUID) -> LocalProduct | None:
        """See :meth:`LocalView.product`."""
        return self.view.product(product_id)

    def history(self, product_id: UUID) -> list[LocalMovement]:
        """See :meth:`LocalView.history`."""
        return self.view.history(product_id)

    def counts(self) -> tuple[int, int, int]:
        """See :meth:`LocalView.counts`."""
        return self.view.counts()

    def max_attempts(self) -> int:
        """See :meth:`LocalView.max_attempts`."""
        return self.view.max_attempts()

    def last_queued_error(self) -> str | None:
        """See :meth:`LocalView.last_queued_error`."""
        return self.view.last_queued_error()

    def outbox(self) -> list[OutboxEntry]:
        """See :meth:`LocalView.outbox`."""
        return self.view.outbox()

    def operation_ids(self) -> list[UUID]:
        """See :meth:`LocalView.operation_ids`."""
        return self.view.operation_ids()

    def failed(self) -> list[OutboxEntry]:
        """See :meth:`LocalView.failed`."""
        return self.view.failed()

    def notices(self, limit: int = 5) -> list[Notice]:
        """See :meth:`LocalView.notices`."""
        return self.view.notices(limit)

    def download_progress(self) -> SyncProgress | None:
        """See :meth:`LocalView.download_progress`."""
        return self.view.download_progress()

    # --- the sync status -----------------------------------------------------------------------

    def save_status(self, state: SyncState, last_error: str | None, synced_at: datetime | None) -> None:
        """Keep the engine's view of syncing, for ``stockzen status`` in another process."""
        with self.database.transaction() as db:
            set_meta(db, "state", state.value)
            set_meta(db, "last_error", last_error)
            if synced_at is not None:
                set_meta(db, "last_synced_at", synced_at.isoformat())

    def get_meta(self, key: str) -> str | None:
        """A value the store keeps about itself."""
        return self.database.get_meta(key)
