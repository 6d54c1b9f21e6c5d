"""The read API's shapes: camelCase, lenient for clients, and a change that carries its entity."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from stockzen_contracts import (
    Change,
    ChangeFeedPage,
    ChangeOperation,
    EntityType,
    MovementKind,
    ProductPage,
    ProductState,
    ProductView,
)
from tests.support.states import movement_state, product_state


def _state() -> ProductState:
    return product_state(
        sku="MUG-1",
        unit="pc",
        price_cents=450,
        low_stock_threshold=2,
        modified_at=datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        checkpoint="7",
    )


def test_a_product_view_adds_the_stock_level() -> None:
    view = ProductView(**_state().model_dump(), stock_level=-3)
    wire = view.to_wire()
    assert wire["stockLevel"] == -3
    assert wire["modifiedAt"] == "2026-01-02T03:04:05.000006Z"
    assert wire["priceCents"] == 450


def test_clients_ignore_fields_they_do_not_know() -> None:
    wire = ProductPage(items=[ProductView(**_state().model_dump(), stock_level=1)], next_cursor=None).to_wire()
    wire["addedLater"] = 1
    wire["items"][0]["addedLater"] = 1
    assert ProductPage.model_validate(wire).items[0].stock_level == 1
    feed = {"checkpoint": "3", "hasMore": False, "changes": [], "addedLater": True}
    assert ChangeFeedPage.model_validate(feed).checkpoint == "3"


def test_a_change_carries_exactly_the_entity_it_names() -> None:
    movement = movement_state(kind=MovementKind.EXIT, quantity=2, checkpoint="9")
    change = Change.of_movement(movement)
    assert (change.entity_type, change.operation, change.entity_id) == (
        EntityType.STOCK_MOVEMENT,
        ChangeOperation.UPSERT,
        movement.id,
    )
    with pytest.raises(ValidationError, match="carries exactly its movement"):
        Change(
            checkpoint="9",
            entity_type=EntityType.STOCK_MOVEMENT,
            entity_id=movement.id,
            operation=ChangeOperation.UPSERT,
            product=_state(),
        )
    assert Change.model_validate(change.to_wire()) == change
