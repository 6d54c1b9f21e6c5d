"""Settling: what each answer of the server does to the outbox, and to what the device shows.

| answer | the outbox entry | the device shows |
|---|---|---|
| ``applied``, ``duplicate`` | done | its change, until a pull brings the server's state |
| ``conflict``, or ``duplicate`` carrying ``CONFLICT_RESOLVED`` | done | ``serverState``, other queued edits on top; a ``conflict`` notice |
| ``rejected``, final | ``failed`` with its code | its change undone (a failed change is not replayed); a ``rejected`` notice. A refused create fails its product's later changes with it; a final ``NOT_FOUND`` takes the product away |
| ``rejected``, retryable; ``pending``; no result | queued, due again after its backoff | its change |

An item is *in doubt* from its sending until a final answer (applied, duplicate, conflict, a final
rejection) or a retryable rejection (the server holds no record of its id). A request the server
refused unread (401, 429, a 4xx that splits the batch) leaves each item as in doubt as it was before
that request; ``pending``, no result, no answer and a failing server (5xx) keep it in doubt. Everything
here is one local transaction per answer. ``docs/sync-states.md`` says the same in words.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from stockzen_client.adapters.persistence import QUEUED, Database, forget_product, put_product
from stockzen_client.domain.outbox import OutboxItem, Settled
from stockzen_client.domain.status import Notice
from stockzen_client.ports import Clock, Delay

if TYPE_CHECKING:
    from stockzen_contracts import ItemResult

NOTICES_KEPT = 50
NOT_FOUND = "NOT_FOUND"
CONFLICT_RESOLVED = "CONFLICT_RESOLVED"


class Settling:
    """Applies the server's answers to the outbox of one :class:`Database`; ``clock`` (unix seconds)
    times the next attempts."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    def mark_sending(self, items: Sequence[OutboxItem]) -> None:
        """Record that these changes are on their way, and in doubt until a final answer: a crash now
        leaves them ``processing``; the next sync sends them again with the same ids and the server
        answers ``duplicate``."""
        with self._db.transaction() as db:
            db.executemany(
                "UPDATE outbox SET status = 'processing', in_doubt = 1 WHERE seq = ?", [(i.seq,) for i in items]
            )

    def defer(self, items: Sequence[OutboxItem], error: str, delay: Delay, *, stored: bool | None = None) -> None:
        """Keep these changes queued, each due again after ``delay(its attempts)`` seconds.

        ``stored=False`` says the server stored none of them from this request (it refused it before
        reading it): each is in doubt only if it was before it (an earlier send got no final answer).
        Otherwise (no answer, a failing server) they stay in doubt.
        """
        doubts = [(item, error, item.in_doubt if stored is False else None) for item in items]
        with self._db.transaction() as db:
            _requeue(db, doubts, delay, self._clock())

    def release(self, items: Sequence[OutboxItem]) -> None:
        """The server refused the whole request before reading it, and the batch is to be split: these
        changes are queued again as they were before it (no attempt counted; in doubt only if an
        earlier send left them so)."""
        with self._db.transaction() as db:
            db.executemany(
                f"UPDATE outbox SET status = 'pending', in_doubt = ? WHERE seq = ? AND {QUEUED}",
                [(int(i.in_doubt), i.seq) for i in items],
            )

    def refuse(self, item: OutboxItem, code: str, reason: str) -> Notice:
        """The server refuses a request carrying this change alone (413, or another whole-request 4xx):
        refused for good, as a final rejection with that code."""
        with self._db.transaction() as db:
            notice, _ = _reject(db, item, code, reason)
        return notice

    def release_backoff(self) -> None:
        """Make every queued change due now (the connection came back: their failures said nothing
        about the changes themselves)."""
        with self._db.transaction() as db:
            db.execute(f"UPDATE outbox SET next_attempt_at = 0 WHERE {QUEUED}")

    def settle(self, items: Sequence[OutboxItem], results: Iterable[ItemResult], delay: Delay) -> Settled:
        """Apply the server's result for each sent change, in one transaction (see the module's table)."""
        from stockzen_contracts import ItemStatus

        by_id = {r.operation_id: r for r in results}
        notices: list[Notice] = []
        retry: list[tuple[OutboxItem, str, bool | None]] = []  # (item, why, in doubt after: None unchanged)
        failed: set[int] = set()  # failed with a refused create earlier in this batch
        with self._db.transaction() as db:
            for item in items:
                if item.seq in failed:
                    continue
                result = by_id.get(item.operation_id)
                code = result.code.value if result is not None and result.code is not None else None
                if result is None:
                    retry.append((item, "the server sent no result for it", None))
                elif result.status is ItemStatus.PENDING:
                    retry.append((item, _reason(result), None))
                elif result.status is ItemStatus.REJECTED and result.retryable:
                    # The server holds no record of it under its id: none of its sends was applied.
                    retry.append((item, _reason(result), False))
                elif result.status is ItemStatus.CONFLICT or (
                    result.status is ItemStatus.DUPLICATE and code == CONFLICT_RESOLVED
                ):
                    # A duplicate carrying CONFLICT_RESOLVED replays a conflict whose answer was lost.
                    if result.server_state is not None:
                        put_product(db, result.server_state)
                    _complete(db, item, "conflict", awaiting_pull=False)  # its edit lost: nothing to show on top
                    notices.append(_notice(db, "conflict", item, _conflict_message(item)))
                elif result.status in (ItemStatus.APPLIED, ItemStatus.DUPLICATE):
                    _complete(db, item, result.status.value, awaiting_pull=True)
                else:
                    notice, dependants = _reject(db, item, code or result.status.value, _reason(result))
                    notices.append(notice)
                    failed.update(dependants)
            _requeue(db, [r for r in retry if r[0].seq not in failed], delay, self._clock())
        return Settled(notices, len(retry))


def _requeue(
    db: sqlite3.Connection, items: Sequence[tuple[OutboxItem, str, bool | None]], delay: Delay, now: float
) -> None:
    """Queue these again with backoff; each one's doubt becomes the given value (None: unchanged)."""
    for item, error, doubt in items:
        attempts = item.attempts + 1
        db.execute(
            "UPDATE outbox SET status = 'pending', attempts = ?, next_attempt_at = ?, last_error = ?,"
            " in_doubt = coalesce(?, in_doubt)"
            f" WHERE seq = ? AND {QUEUED}",
            (attempts, now + delay(attempts), error, None if doubt is None else int(doubt), item.seq),
        )


def _complete(db: sqlite3.Connection, item: OutboxItem, outcome: str, *, awaiting_pull: bool) -> None:
    db.execute(
        "UPDATE outbox SET status = 'completed', outcome = ?, awaiting_pull = ?, last_error = NULL, code = NULL,"
        " in_doubt = 0 WHERE seq = ?",
        (outcome, int(awaiting_pull), item.seq),
    )


def _reject(db: sqlite3.Connection, item: OutboxItem, code: str, reason: str) -> tuple[Notice, list[int]]:
    """Refuse ``item`` for good: ``failed`` with ``code``. A final ``NOT_FOUND`` (the product was deleted
    and its tombstone purged) takes the product away from the device; a refused product create fails
    the product's later queued changes with the same code. The notice, and the dependants failed."""
    db.execute(
        "UPDATE outbox SET status = 'failed', outcome = 'rejected', code = ?, last_error = ?, in_doubt = 0"
        " WHERE seq = ?",
        (code, reason, item.seq),
    )
    product_id = str(item.product_id)
    if code == NOT_FOUND:
        forget_product(db, product_id)
    dependants: list[int] = []
    if item.is_product_create:
        dependants = [
            row[0]
            for row in db.execute(
                f"SELECT seq FROM outbox WHERE product_id = ? AND seq > ? AND {QUEUED} ORDER BY seq",
                (product_id, item.seq),
            )
        ]
        db.executemany(
            "UPDATE outbox SET status = 'failed', outcome = 'rejected', code = ?, last_error = ?, in_doubt = 0"
            " WHERE seq = ?",
            [(code, f"{code}: the product's create was refused", seq) for seq in dependants],
        )
    return _notice(db, "rejected", item, f"the server refused the {_describe(item)}: {reason}"), dependants


def _notice(db: sqlite3.Connection, kind: str, item: OutboxItem, message: str) -> Notice:
    notice = Notice(datetime.now(UTC), kind, str(item.operation.entity_id), message, str(item.product_id))
    db.execute(
        "INSERT INTO notices (at, kind, entity_id, message, product_id) VALUES (?, ?, ?, ?, ?)",
        (notice.at.isoformat(), notice.kind, notice.entity_id, notice.message, notice.product_id),
    )
    db.execute("DELETE FROM notices WHERE id <= (SELECT max(id) FROM notices) - ?", (NOTICES_KEPT,))
    return notice


def _reason(result: ItemResult) -> str:
    code = result.code.value if result.code else result.status.value
    return f"{code}: {result.message}" if result.message else code


def _describe(item: OutboxItem) -> str:
    body = item.body
    if body.get("entityType") == "stockMovement":
        payload = body.get("payload") or {}
        return f"stock {payload.get('kind')} of {payload.get('quantity')} for product {item.product_id}"
    return f"{body.get('operationType')} of product {item.operation.entity_id}"


def _conflict_message(item: OutboxItem) -> str:
    return (
        f"conflict resolved: the server kept another device's newer version ({_describe(item)}); your copy now shows it"
    )
