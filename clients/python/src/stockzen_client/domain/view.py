"""The local view: the server's state with the still-queued changes applied on top (Replicache's rebase).

Everything here works on plain values: the product's stored JSON, the operations' wire JSON as they
were queued. Showing a list of products never needs the wire models (nor pydantic) to be loaded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

if TYPE_CHECKING:
    from stockzen_contracts import MovementKind, StockMovementState

PRODUCT_FIELDS = ("name", "sku", "barcode", "unit", "price_cents", "low_stock_threshold", "archived")
"""The contract's product fields (``stockzen_contracts.PRODUCT_FIELDS``; a test keeps the two equal)."""

_WIRE_NAMES = {
    "name": "name",
    "sku": "sku",
    "barcode": "barcode",
    "unit": "unit",
    "priceCents": "price_cents",
    "lowStockThreshold": "low_stock_threshold",
    "archived": "archived",
}
"""camelCase on the wire -> the field's name here."""

_CREATE_DEFAULTS: dict[str, Any] = dict.fromkeys(PRODUCT_FIELDS) | {"archived": False}


@dataclass(frozen=True, slots=True)
class LocalProduct:
    """A product as this device shows it."""

    id: UUID
    name: str | None
    sku: str | None = None
    barcode: str | None = None
    unit: str | None = None
    price_cents: int | None = None
    low_stock_threshold: int | None = None
    archived: bool = False
    deleted: bool = False
    stock_level: int = 0
    queued_changes: int = 0  # how many of this product's changes the server has not confirmed yet

    @classmethod
    def of_wire(cls, state: Mapping[str, Any], stock_level: int = 0) -> LocalProduct:
        """The server's product from its camelCase JSON (a ``ProductState`` as stored or sent)."""
        return cls(
            id=UUID(state["id"]),
            name=state.get("name"),
            sku=state.get("sku"),
            barcode=state.get("barcode"),
            unit=state.get("unit"),
            price_cents=state.get("priceCents"),
            low_stock_threshold=state.get("lowStockThreshold"),
            archived=bool(state.get("archived", False)),
            deleted=bool(state.get("deleted", False)),
            stock_level=stock_level,
        )

    def fields(self) -> dict[str, Any]:
        """The product's own fields (no stock, no sync bookkeeping)."""
        return {f: getattr(self, f) for f in PRODUCT_FIELDS}

    def to_json(self) -> dict[str, Any]:
        """camelCase, as the CLI's ``--json`` prints it."""
        return {
            "id": str(self.id),
            "name": self.name,
            "sku": self.sku,
            "barcode": self.barcode,
            "unit": self.unit,
            "priceCents": self.price_cents,
            "lowStockThreshold": self.low_stock_threshold,
            "archived": self.archived,
            "stockLevel": self.stock_level,
            "queuedChanges": self.queued_changes,
        }


@dataclass(frozen=True, slots=True)
class LocalMovement:
    """A stock movement as this device shows it; ``queued`` until the server confirms it."""

    id: UUID
    product_id: UUID
    kind: MovementKind
    quantity: int
    reason: str | None
    occurred_at: datetime
    queued: bool

    @classmethod
    def of_state(cls, state: StockMovementState) -> LocalMovement:
        """A movement the server recorded (as the read API returns it)."""
        return cls(
            id=state.id,
            product_id=state.product_id,
            kind=state.kind,
            quantity=state.quantity,
            reason=state.reason,
            occurred_at=state.occurred_at,
            queued=False,
        )

    @property
    def signed_quantity(self) -> int:
        """What the movement adds to the stock level."""
        return signed(self.kind, self.quantity)

    def to_json(self) -> dict[str, Any]:
        """camelCase, as the CLI's ``--json`` prints it."""
        return {
            "id": str(self.id),
            "productId": str(self.product_id),
            "kind": self.kind.value,
            "quantity": self.quantity,
            "reason": self.reason,
            "occurredAt": self.occurred_at.isoformat(),
            "queued": self.queued,
        }


def signed(kind: str, quantity: int) -> int:
    """What a movement of ``kind`` (``entry`` or ``exit``) and ``quantity`` adds to the stock level."""
    return quantity if kind == "entry" else -quantity


def rebase(base: LocalProduct | None, queued: Iterable[Mapping[str, Any]]) -> LocalProduct | None:
    """``base`` (the server's product, or None) with this device's queued changes of it on top, in order.

    ``queued`` holds the operations as they were queued (their wire JSON, already validated); stock
    movements among them are skipped. Edits are replayed over whatever the server holds, so a pull
    never hides them; a tombstone stays a tombstone, since deletes win under the server's
    last-writer-wins. The push then settles each edit, and a lost one comes back as a conflict
    carrying the server's state.
    """
    product = base
    for op in queued:
        if op.get("entityType") != "product":
            continue
        kind, payload = op.get("operationType"), op.get("payload") or {}
        changes = {_WIRE_NAMES[key]: value for key, value in payload.items() if key in _WIRE_NAMES}
        if kind == "create":
            fields = _CREATE_DEFAULTS | changes
            if product is None:
                product = LocalProduct(id=UUID(op["entityId"]), **fields)
            elif not product.deleted:
                product = dataclasses.replace(product, **fields)
        elif kind == "update":
            if product is not None and not product.deleted:
                product = dataclasses.replace(product, **changes)
        elif kind == "delete":
            product = dataclasses.replace(product or LocalProduct(id=UUID(op["entityId"]), name=None), deleted=True)
        else:
            continue
        if product is not None:
            product = dataclasses.replace(product, queued_changes=product.queued_changes + 1)
    return product


def queued_movement(op: Mapping[str, Any]) -> LocalMovement:
    """A movement this device recorded (its operation's wire JSON) and has not seen confirmed yet."""
    from stockzen_contracts import MovementKind  # only history needs the enum (and pydantic)

    payload = op["payload"]
    return LocalMovement(
        id=UUID(op["entityId"]),
        product_id=UUID(payload["productId"]),
        kind=MovementKind(payload["kind"]),
        quantity=payload["quantity"],
        reason=payload.get("reason"),
        occurred_at=datetime.fromisoformat(payload.get("occurredAt") or op["modifiedAt"]),
        queued=True,
    )
