"""The change feed's rules: checkpoint tokens, when a client must reset, and how a page is assembled."""

from __future__ import annotations

import pytest

from stockzen_contracts import Change, ChangeOperation, EntityType, ProductState, StockMovementState
from stockzen_inventory.domain.feed import (
    FeedPosition,
    InvalidCheckpoint,
    ResetRequired,
    assemble_feed_page,
    check_resumable,
    parse_checkpoint,
    snapshot_checkpoint,
)
from stockzen_inventory.domain.products import ProductFilter, contains_pattern
from tests.support.states import movement_state, product_state


def _product(checkpoint: int, *, deleted: bool = False) -> ProductState:
    return product_state(checkpoint=str(checkpoint), deleted=deleted)


def _movement(checkpoint: int) -> StockMovementState:
    return movement_state(checkpoint=str(checkpoint))


def test_checkpoints_are_decimal_counter_values() -> None:
    assert parse_checkpoint(None) is None
    assert parse_checkpoint("0") == 0
    assert parse_checkpoint("42") == 42
    assert parse_checkpoint(str(2**63 - 1)) == 2**63 - 1


@pytest.mark.parametrize("token", ["", " 1", "1 ", "+1", "-1", "01", "1.0", "1e3", "abc", "١٢", str(2**63)])
def test_anything_else_is_not_a_checkpoint(token: str) -> None:
    with pytest.raises(InvalidCheckpoint):
        parse_checkpoint(token)


def test_a_client_resumes_from_the_horizon_up_to_the_last_checkpoint() -> None:
    position = FeedPosition(last_checkpoint=50, horizon=10)
    for since in (None, 10, 11, 50):
        check_resumable(since, position)  # raises ResetRequired when it cannot


@pytest.mark.parametrize("since", [0, 9, 51])
def test_a_client_below_the_horizon_or_ahead_of_the_data_must_reset(since: int) -> None:
    with pytest.raises(ResetRequired):
        check_resumable(since, FeedPosition(last_checkpoint=50, horizon=10))


def _changes(*items: ProductState | StockMovementState) -> list[Change]:
    return [Change.of_product(i) if isinstance(i, ProductState) else Change.of_movement(i) for i in items]


def test_a_page_shows_product_states_and_movements_as_changes() -> None:
    products = [_product(2), _product(5, deleted=True)]
    changes = _changes(products[0], _movement(3), _movement(4), products[1], _movement(7))
    page = assemble_feed_page(changes, limit=10, position=FeedPosition(last_checkpoint=9, horizon=0))
    assert [c.checkpoint for c in page.changes] == ["2", "3", "4", "5", "7"]
    assert [c.entity_type for c in page.changes] == [EntityType.PRODUCT] + [EntityType.STOCK_MOVEMENT] * 2 + [
        EntityType.PRODUCT,
        EntityType.STOCK_MOVEMENT,
    ]
    assert page.changes[0].operation is ChangeOperation.UPSERT
    assert page.changes[3].operation is ChangeOperation.DELETE
    assert page.changes[3].entity_id == products[1].id
    # Nothing more: the client resumes after the tenant's last checkpoint, even past the last change.
    assert (page.has_more, page.checkpoint) == (False, "9")


def test_a_full_page_resumes_after_its_last_change() -> None:
    changes = _changes(_product(1), _movement(2), _movement(3), _product(4), _movement(5))  # limit + 1 fetched
    page = assemble_feed_page(changes, limit=4, position=FeedPosition(last_checkpoint=6, horizon=0))
    assert [c.checkpoint for c in page.changes] == ["1", "2", "3", "4"]
    assert (page.has_more, page.checkpoint) == (True, "4")
    assert page.remaining == 2  # at most checkpoints 5 and 6 follow


def test_a_last_page_leaves_nothing_remaining() -> None:
    page = assemble_feed_page(_changes(_movement(3)), limit=4, position=FeedPosition(last_checkpoint=90, horizon=0))
    assert (page.has_more, page.remaining) == (False, 0)


def test_a_first_snapshot_page_is_read_as_of_the_last_checkpoint_and_later_ones_as_of_the_cursors() -> None:
    position = FeedPosition(last_checkpoint=70, horizon=20)
    assert snapshot_checkpoint(None, position) == 70
    assert snapshot_checkpoint(40, position) == 40
    for stale in (19, 71):  # tombstones after it were purged, or the server lost data since
        with pytest.raises(ResetRequired):
            snapshot_checkpoint(stale, position)


def test_an_empty_feed_keeps_the_clients_place() -> None:
    page = assemble_feed_page([], limit=100, position=FeedPosition(last_checkpoint=12, horizon=3))
    assert (page.changes, page.has_more, page.checkpoint) == ([], False, "12")


def test_the_wire_form_leaves_out_the_absent_entity() -> None:
    page = assemble_feed_page(_changes(_product(1), _movement(2)), limit=10, position=FeedPosition(2, 0))
    product_change, movement_change = page.to_wire()["changes"]
    assert "movement" not in product_change
    assert product_change["product"]["checkpoint"] == "1"
    assert "product" not in movement_change
    assert movement_change["entityType"] == "stockMovement"
    assert page.to_wire()["hasMore"] is False


def test_product_filters_take_text_literally() -> None:
    assert contains_pattern("mug") == "%mug%"
    assert contains_pattern("100%_\\") == "%100\\%\\_\\\\%"
    assert ProductFilter.of("  ", None) == ProductFilter(text=None, archived=None)
    assert ProductFilter.of(" mug ", False) == ProductFilter(text="mug", archived=False)
