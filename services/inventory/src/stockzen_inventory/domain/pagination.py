"""Keyset pagination: opaque cursors naming the last row a page showed, and splitting fetched rows.

A cursor is base64url (unpadded) of a small JSON object. It names a position in a total order,
never an offset, so rows inserted while a client scrolls neither repeat nor hide rows it has
not reached yet. Clients must treat cursors as opaque; only this module reads them.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

from stockzen_contracts import CURSOR_MAX_LENGTH, storable_text

from .feed import MAX_CHECKPOINT

T = TypeVar("T")


class InvalidCursor(ValueError):
    """The cursor was not made by this service for this route (or was altered)."""


@dataclass(frozen=True, slots=True)
class ProductCursor:
    """A position in the product list, ordered by ``(lower(name), id)``.

    ``sort_name`` is ``lower(name)`` as Postgres computed it: Python's ``str.lower`` differs for
    some characters, and the comparison must use the database's own value.
    """

    sort_name: str
    product_id: UUID


@dataclass(frozen=True, slots=True)
class MovementCursor:
    """A position in a movement history, ordered newest first by ``(occurred_at, checkpoint)``.

    The checkpoint is unique per tenant, so two movements at the same instant still have a fixed order.
    """

    occurred_at: datetime
    checkpoint: int


@dataclass(frozen=True, slots=True)
class SnapshotCursor:
    """A position in a snapshot: the checkpoint C every page is read as of, and the last product id shown."""

    checkpoint: int
    product_id: UUID


def encode_product_cursor(cursor: ProductCursor) -> str:
    """The opaque token for a product-list position."""
    return _encode({"k": "product", "n": cursor.sort_name, "i": str(cursor.product_id)})


def decode_product_cursor(token: str) -> ProductCursor:
    """The product-list position a token names, or :class:`InvalidCursor`."""
    data = _decode(token, "product")
    name, product_id = data.get("n"), data.get("i")
    if not isinstance(name, str) or not isinstance(product_id, str):
        raise InvalidCursor("cursor is not a product-list cursor")
    try:
        storable_text(name)
    except ValueError:
        raise InvalidCursor("cursor is not a product-list cursor") from None
    return ProductCursor(sort_name=name, product_id=_uuid(product_id))


def encode_movement_cursor(cursor: MovementCursor) -> str:
    """The opaque token for a movement-history position (times kept to the microsecond)."""
    occurred = cursor.occurred_at.astimezone(UTC).isoformat(timespec="microseconds")
    return _encode({"k": "movement", "t": occurred, "c": cursor.checkpoint})


def decode_movement_cursor(token: str) -> MovementCursor:
    """The movement-history position a token names, or :class:`InvalidCursor`."""
    data = _decode(token, "movement")
    occurred, checkpoint = data.get("t"), data.get("c")
    if not isinstance(occurred, str) or type(checkpoint) is not int or not 0 <= checkpoint <= MAX_CHECKPOINT:
        raise InvalidCursor("cursor is not a movement-history cursor")
    try:
        moment = datetime.fromisoformat(occurred)
    except ValueError:
        raise InvalidCursor("cursor is not a movement-history cursor") from None
    if moment.tzinfo is None:
        raise InvalidCursor("cursor is not a movement-history cursor")
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:  # an offset pushing it out of range: no row sits there
        raise InvalidCursor("cursor is not a movement-history cursor") from None
    return MovementCursor(occurred_at=moment, checkpoint=checkpoint)


def encode_snapshot_cursor(cursor: SnapshotCursor) -> str:
    """The opaque token for the next page of a snapshot."""
    return _encode({"k": "snapshot", "c": cursor.checkpoint, "i": str(cursor.product_id)})


def decode_snapshot_cursor(token: str) -> SnapshotCursor:
    """The snapshot position a token names, or :class:`InvalidCursor`."""
    data = _decode(token, "snapshot")
    checkpoint, product_id = data.get("c"), data.get("i")
    if type(checkpoint) is not int or not 0 <= checkpoint <= MAX_CHECKPOINT or not isinstance(product_id, str):
        raise InvalidCursor("cursor is not a snapshot cursor")
    return SnapshotCursor(checkpoint=checkpoint, product_id=_uuid(product_id))


def split_page(rows: Sequence[T], limit: int) -> tuple[list[T], bool]:
    """The page to show out of ``limit + 1`` fetched rows, and whether another page follows."""
    return list(rows[:limit]), len(rows) > limit


def _encode(payload: dict[str, Any]) -> str:
    raw = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode(token: str, kind: str) -> dict[str, Any]:
    if not token or len(token) > CURSOR_MAX_LENGTH:
        raise InvalidCursor("cursor is empty or too long")
    try:
        # validate=True: characters outside the alphabet are an error, not silently skipped.
        raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
        data = json.loads(raw)
    except (binascii.Error, ValueError):
        # UnicodeDecodeError and JSONDecodeError are ValueErrors too.
        raise InvalidCursor("cursor is not one this service made") from None
    if not isinstance(data, dict) or data.get("k") != kind:
        raise InvalidCursor(f"cursor is not a {kind} cursor")
    return data


def _uuid(value: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise InvalidCursor("cursor names no product") from None
