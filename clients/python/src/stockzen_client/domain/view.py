"""The local view: the server's state with the still-queued changes applied on top (Replicache's rebase)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from stockzen_contracts import (
    PRODUCT_FIELDS,
    CreateProduct,
    DeleteProduct,
    MovementKind,
    Operation,
    ProductState,
    RecordStockMovement,
    UpdateProduct,
)


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
    def of_state(cls, state: ProductState, stock_level: int = 0) -> LocalProduct:
        """The server's product."""
        return cls(
            id=state.id,
            name=state.name,
            **{f: getattr(state, f) for f in PRODUCT_FIELDS if f not in ("name",)},
            deleted=state.deleted,
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

    @property
    def signed_quantity(self) -> int:
        """What the movement adds to the stock level."""
        return self.quantity if self.kind is MovementKind.ENTRY else -self.quantity

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


def rebase(base: LocalProduct | None, queued: Iterable[Operation]) -> LocalProduct | None:
    """``base`` (the server's product, or None) with this device's queued changes of it on top, in order.

    Edits are replayed over whatever the server holds, so a pull never hides them; a tombstone stays a
    tombstone, since deletes win under the server's last-writer-wins. The push then settles each edit,
    and a lost one comes back as a conflict carrying the server's state.
    """
    product = base
    for op in queued:
        match op:
            case CreateProduct():
                fields = op.payload.changes()
                if product is None:
                    product = LocalProduct(id=op.entity_id, **fields)
                elif not product.deleted:
                    product = dataclasses.replace(product, **fields)
            case UpdateProduct():
                if product is not None and not product.deleted:
                    product = dataclasses.replace(product, **op.payload.changes())
            case DeleteProduct():
                product = dataclasses.replace(product or LocalProduct(id=op.entity_id, name=None), deleted=True)
            case _:
                continue
        if product is not None:
            product = dataclasses.replace(product, queued_changes=product.queued_changes + 1)
    return product


def queued_movement(op: RecordStockMovement) -> LocalMovement:
    """A movement this device recorded and has not seen confirmed yet."""
    return LocalMovement(
        id=op.entity_id,
        product_id=op.payload.product_id,
        kind=op.payload.kind,
        quantity=op.payload.quantity,
        reason=op.payload.reason,
        occurred_at=op.payload.occurred_at or op.modified_at,
        queued=True,
    )
