"""Server states as the contracts describe them, for tests that need one (fields overridable)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from stockzen_contracts import MovementKind, ProductState, StockMovementState

WHEN = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def product_state(**overrides: Any) -> ProductState:
    """A live product named "Mug" with nothing else set, at checkpoint 1."""
    fields: dict[str, Any] = {
        "id": uuid.uuid4(),
        "name": "Mug",
        "sku": None,
        "barcode": None,
        "unit": None,
        "price_cents": None,
        "low_stock_threshold": None,
        "archived": False,
        "deleted": False,
        "modified_at": WHEN,
        "checkpoint": "1",
    }
    return ProductState.model_validate({**fields, **overrides})


def movement_state(**overrides: Any) -> StockMovementState:
    """An entry of 1 of some product, at checkpoint 1."""
    fields: dict[str, Any] = {
        "id": uuid.uuid4(),
        "product_id": uuid.uuid4(),
        "kind": MovementKind.ENTRY,
        "quantity": 1,
        "reason": None,
        "occurred_at": WHEN,
        "checkpoint": "1",
    }
    return StockMovementState.model_validate({**fields, **overrides})
