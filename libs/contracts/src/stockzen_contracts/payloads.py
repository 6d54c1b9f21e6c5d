"""Operation payloads and the server-side states returned as ``serverState``."""

from __future__ import annotations

from typing import Annotated, Any, Self
from uuid import UUID

from pydantic import ConfigDict, SerializerFunctionWrapHandler, StrictBool, model_serializer, model_validator
from pydantic.alias_generators import to_camel

from ._wire import UtcDateTime, WireModel, bounded, text
from .codes import MovementKind

MAX_PRICE_CENTS = 10**12
MAX_THRESHOLD = 10**9
MAX_QUANTITY = 10**9

ProductName = Annotated[str, text(200, min_length=1)]
Sku = Annotated[str, text(64, min_length=1)]
Barcode = Annotated[str, text(64, min_length=1)]
Unit = Annotated[str, text(16, min_length=1)]
Reason = Annotated[str, text(500)]
PriceCents = Annotated[int, bounded(ge=0, le=MAX_PRICE_CENTS)]
Threshold = Annotated[int, bounded(ge=0, le=MAX_THRESHOLD)]
Quantity = Annotated[int, bounded(ge=1, le=MAX_QUANTITY)]

PRODUCT_FIELDS = ("name", "sku", "barcode", "unit", "price_cents", "low_stock_threshold", "archived")
"""Every product field a client may set, in snake_case (the order of the database columns)."""

_NOT_NULLABLE = ("name", "archived")
_CAMEL = {field: to_camel(field) for field in PRODUCT_FIELDS}  # made once: to_camel runs regexes


class ProductCreate(WireModel):
    """A new product. Only ``name`` is required; absent fields start empty."""

    name: ProductName
    sku: Sku | None = None
    barcode: Barcode | None = None
    unit: Unit | None = None
    price_cents: PriceCents | None = None
    low_stock_threshold: Threshold | None = None
    archived: StrictBool = False

    def changes(self) -> dict[str, Any]:
        """Every field, as the creating device saw the product."""
        return {field: getattr(self, field) for field in PRODUCT_FIELDS}


class ProductPatch(WireModel):
    """An edit: carries only the fields it changes (``null`` clears a nullable field)."""

    name: ProductName | None = None
    sku: Sku | None = None
    barcode: Barcode | None = None
    unit: Unit | None = None
    price_cents: PriceCents | None = None
    low_stock_threshold: Threshold | None = None
    archived: StrictBool | None = None

    @model_validator(mode="after")
    def _changes_something_valid(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("an update must change at least one field")
        cleared = [f for f in _NOT_NULLABLE if f in self.model_fields_set and getattr(self, f) is None]
        if cleared:
            raise ValueError(f"{', '.join(cleared)} cannot be null")
        return self

    @model_serializer(mode="wrap")
    def _only_what_it_sets(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Absent and null differ for an edit (null clears a field), so absent fields stay absent.
        data: dict[str, Any] = handler(self)
        keep = {_CAMEL[f] for f in self.model_fields_set} | set(self.model_fields_set)
        return {k: v for k, v in data.items() if k in keep}

    def changes(self) -> dict[str, Any]:
        """Only the fields this edit sets, in snake_case."""
        return {field: getattr(self, field) for field in PRODUCT_FIELDS if field in self.model_fields_set}


class ProductDelete(WireModel):
    """A delete carries nothing: its payload is ``{}``."""


class StockMovementCreate(WireModel):
    """An entry or exit of a positive quantity of one product."""

    product_id: UUID
    kind: MovementKind
    quantity: Quantity
    reason: Reason | None = None
    occurred_at: UtcDateTime | None = None


class ProductState(WireModel):
    """A product as the server holds it (the winner of last-writer-wins, or its tombstone)."""

    model_config = ConfigDict(extra="ignore")  # clients keep working when the server adds a field

    id: UUID
    name: str | None  # None only for the tombstone of a product deleted before its create arrived
    sku: str | None
    barcode: str | None
    unit: str | None
    price_cents: int | None
    low_stock_threshold: int | None
    archived: bool
    deleted: bool
    modified_at: UtcDateTime
    checkpoint: str


class StockMovementState(WireModel):
    """A movement as recorded in the ledger."""

    model_config = ConfigDict(extra="ignore")

    id: UUID
    product_id: UUID
    kind: MovementKind
    quantity: int
    reason: str | None
    occurred_at: UtcDateTime
    checkpoint: str
