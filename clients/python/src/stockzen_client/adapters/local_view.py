"""The view: what the user sees, read from the profile's database.

A product shows the server's state (as last pulled, or as a settled conflict left it) with this
device's changes replayed on top: those still queued, and those applied that no pull has brought
back yet. A change refused for good is not replayed, so a refusal undoes it on the device. Stock is
the product's kept level (``levels.confirmed``) plus this device's own movements no pull has brought
back; nothing here sums a product's movements.

Reading needs neither the wire models nor pydantic: products and operations are read as JSON.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from stockzen_client.adapters.persistence import MOVEMENT, QUEUED, SHOWN, Database
from stockzen_client.domain.outbox import OutboxEntry, SnapshotProgress
from stockzen_client.domain.status import Notice, SyncProgress
from stockzen_client.domain.view import LocalMovement, LocalProduct, queued_movement, rebase, signed

_IDS_PER_QUERY = 500  # SQLite binds at most 999 parameters in older builds


class LocalView:
    """Reads of one :class:`Database` for people: products, history, the outbox, notices."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # --- products and stock --------------------------------------------------------------------

    def products(self, *, include_deleted: bool = False) -> list[LocalProduct]:
        """Every product as this device shows it, by name."""
        confirmed = dict(self._db.execute("SELECT product_id, confirmed FROM levels").fetchall())
        base = {row[0]: row[1] for row in self._db.execute("SELECT id, state FROM products")}
        queued: dict[str, list[dict[str, Any]]] = {}
        for row in self._db.execute(
            f"SELECT entity_id, body FROM outbox WHERE entity_type = 'product' AND {SHOWN} ORDER BY seq"
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
            products.append(dataclasses.replace(product, stock_level=level))
        return sorted(products, key=lambda p: ((p.name or "").casefold(), str(p.id)))

    def product(self, product_id: UUID) -> LocalProduct | None:
        """One product as this device shows it (None if unknown or deleted)."""
        key = str(product_id)
        row = self._db.execute("SELECT state FROM products WHERE id = ?", (key,)).fetchone()
        queued = [
            json.loads(op[0])
            for op in self._db.execute(
                f"SELECT body FROM outbox WHERE entity_type = 'product' AND entity_id = ? AND {SHOWN} ORDER BY seq",
                (key,),
            )
        ]
        product = rebase(LocalProduct.of_wire(json.loads(row[0])) if row else None, queued)
        if product is None or product.deleted:
            return None
        level = self._db.execute("SELECT confirmed FROM levels WHERE product_id = ?", (key,)).fetchone()
        return dataclasses.replace(product, stock_level=(level[0] if level else 0) + self._pending(key).get(key, 0))

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
            f"SELECT entity_id, body, NOT {SHOWN} FROM outbox"
            f" WHERE {MOVEMENT} AND product_id = ? AND status <> 'failed' ORDER BY seq",
            (key,),
        ):
            if movement_id not in known:
                own = queued_movement(json.loads(body))
                movements.append(dataclasses.replace(own, queued=False) if confirmed else own)
        return sorted(movements, key=lambda m: m.occurred_at, reverse=True)

    def _pending(self, product_id: str | None = None) -> dict[str, int]:
        """Per product, what this device's shown movements add that no pull has brought back yet."""
        query = f"SELECT entity_id, product_id, body FROM outbox WHERE {MOVEMENT} AND {SHOWN}"
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

    # --- the outbox ----------------------------------------------------------------------------

    def counts(self) -> tuple[int, int, int]:
        """(queued, failed, applied but not pulled back yet)."""
        row = self._db.execute(
            f"SELECT coalesce(sum({QUEUED}), 0), coalesce(sum(status = 'failed'), 0),"
            " coalesce(sum(awaiting_pull), 0) FROM outbox"
        ).fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    def max_attempts(self) -> int:
        """The most attempts any queued change has had."""
        row = self._db.execute(f"SELECT coalesce(max(attempts), 0) FROM outbox WHERE {QUEUED}").fetchone()
        return int(row[0])

    def last_queued_error(self) -> str | None:
        """Why the most recently retried queued change is still queued."""
        row = self._db.execute(
            f"SELECT last_error FROM outbox WHERE {QUEUED} AND last_error IS NOT NULL ORDER BY next_attempt_at DESC"
        ).fetchone()
        return row[0] if row else None

    def outbox(self) -> list[OutboxEntry]:
        """The changes this device still holds, in the order they were made: ``queued`` (to be sent,
        again or for the first time) and ``failed`` (refused for good, waiting for the user)."""
        return self._entries(f"{QUEUED} OR status = 'failed'")

    def operation_ids(self) -> list[UUID]:
        """Every change this device made and still keeps a record of (settled ones too), oldest first."""
        return [UUID(row[0]) for row in self._db.execute("SELECT operation_id FROM outbox ORDER BY seq")]

    def failed(self) -> list[OutboxEntry]:
        """The changes the server refused for good, oldest first, each with its code and reason."""
        return self._entries("status = 'failed'")

    def _entries(self, where: str) -> list[OutboxEntry]:
        rows = self._db.execute(
            "SELECT operation_id, entity_type, entity_id, product_id, body, status, code, last_error, attempts"
            f" FROM outbox WHERE {where} ORDER BY seq"
        )
        return [
            OutboxEntry(
                operation_id=UUID(row["operation_id"]),
                entity_type=row["entity_type"],
                entity_id=UUID(row["entity_id"]),
                product_id=UUID(row["product_id"]),
                operation_type=json.loads(row["body"])["operationType"],
                status="failed" if row["status"] == "failed" else "queued",
                code=row["code"],
                reason=row["last_error"],
                attempts=row["attempts"],
            )
            for row in rows
        ]

    # --- notices and progress ------------------------------------------------------------------

    def notices(self, limit: int = 5) -> list[Notice]:
        """The most recent notices, newest first."""
        rows = self._db.execute(
            "SELECT at, kind, entity_id, message, product_id FROM notices ORDER BY id DESC LIMIT ?", (limit,)
        ).fetchall()
        return [
            Notice(datetime.fromisoformat(r["at"]), r["kind"], r["entity_id"], r["message"], r["product_id"])
            for r in rows
        ]

    def snapshot_progress(self) -> SnapshotProgress | None:
        """The first download under way (stored with each of its pages), if one is."""
        saved = self._db.get_meta("snapshot")
        if saved is None:
            return None
        data = json.loads(saved)
        return SnapshotProgress(data["checkpoint"], data["cursor"], data["done"], data["total"])

    def download_progress(self) -> SyncProgress | None:
        """A first download under way, as the status shows it (products stored of how many)."""
        snapshot = self.snapshot_progress()
        return None if snapshot is None else SyncProgress("snapshot", snapshot.done, snapshot.total)


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
