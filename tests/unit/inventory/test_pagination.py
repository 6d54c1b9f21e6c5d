"""Cursors: opaque, exact round trips, and refusal of anything this service did not make."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from stockzen_contracts import CURSOR_MAX_LENGTH
from stockzen_inventory.domain.pagination import (
    InvalidCursor,
    MovementCursor,
    ProductCursor,
    SnapshotCursor,
    decode_movement_cursor,
    decode_product_cursor,
    decode_snapshot_cursor,
    encode_movement_cursor,
    encode_product_cursor,
    encode_snapshot_cursor,
    split_page,
)


def _token(payload: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()


def test_a_product_cursor_round_trips_any_name() -> None:
    for name in ("mug", 'ÉCLAIR \u2013 ÇA VA? 100% _off_ \\ "quoted"', "ß" * 200, "日本語の名前"):
        cursor = ProductCursor(sort_name=name, product_id=uuid.uuid4())
        token = encode_product_cursor(cursor)
        assert decode_product_cursor(token) == cursor
        assert len(token) <= CURSOR_MAX_LENGTH
        assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_a_movement_cursor_keeps_the_microsecond_and_the_instant() -> None:
    moment = datetime(2026, 3, 1, 12, 30, 5, 123456, tzinfo=timezone(timedelta(hours=2)))
    decoded = decode_movement_cursor(encode_movement_cursor(MovementCursor(moment, 2**62)))
    assert decoded.occurred_at == moment
    assert decoded.occurred_at.microsecond == 123456
    assert decoded.checkpoint == 2**62


def test_a_cursor_of_one_route_is_refused_by_the_other() -> None:
    product = encode_product_cursor(ProductCursor("mug", uuid.uuid4()))
    movement = encode_movement_cursor(MovementCursor(datetime.now(UTC), 3))
    with pytest.raises(InvalidCursor):
        decode_movement_cursor(product)
    with pytest.raises(InvalidCursor):
        decode_product_cursor(movement)


def test_a_snapshot_cursor_keeps_its_checkpoint_and_is_no_other_routes() -> None:
    cursor = SnapshotCursor(checkpoint=2**62, product_id=uuid.uuid4())
    token = encode_snapshot_cursor(cursor)
    assert decode_snapshot_cursor(token) == cursor
    with pytest.raises(InvalidCursor):
        decode_product_cursor(token)
    with pytest.raises(InvalidCursor):
        decode_snapshot_cursor(encode_product_cursor(ProductCursor("mug", uuid.uuid4())))


@pytest.mark.parametrize(
    "token",
    [
        _token({"k": "snapshot", "c": -1, "i": str(uuid.uuid4())}),
        _token({"k": "snapshot", "c": 2**63, "i": str(uuid.uuid4())}),
        _token({"k": "snapshot", "c": "5", "i": str(uuid.uuid4())}),
        _token({"k": "snapshot", "c": True, "i": str(uuid.uuid4())}),
        _token({"k": "snapshot", "c": 5, "i": "not-a-uuid"}),
        _token({"k": "snapshot", "c": 5}),
    ],
)
def test_malformed_snapshot_cursors_are_refused(token: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_snapshot_cursor(token)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not base64!",
        "a" * (CURSOR_MAX_LENGTH + 1),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        _token([1, 2]),
        _token({"k": "product", "n": 5, "i": str(uuid.uuid4())}),
        _token({"k": "product", "n": "mug", "i": "not-a-uuid"}),
        _token({"k": "product", "n": "mug"}),
    ],
)
def test_malformed_product_cursors_are_refused(token: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_product_cursor(token)


@pytest.mark.parametrize(
    "token",
    [
        _token({"k": "movement", "t": "2026-01-01T00:00:00+00:00", "c": "7"}),
        _token({"k": "movement", "t": "2026-01-01T00:00:00+00:00", "c": True}),
        _token({"k": "movement", "t": "2026-01-01T00:00:00+00:00", "c": -1}),
        _token({"k": "movement", "t": "2026-01-01T00:00:00+00:00", "c": 2**63}),
        _token({"k": "movement", "t": "2026-01-01T00:00:00", "c": 7}),
        _token({"k": "movement", "t": "yesterday", "c": 7}),
    ],
)
def test_malformed_movement_cursors_are_refused(token: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_movement_cursor(token)


def test_split_page_shows_limit_rows_and_says_whether_more_follow() -> None:
    assert split_page([1, 2, 3], 2) == ([1, 2], True)
    assert split_page([1, 2], 2) == ([1, 2], False)
    assert split_page([], 2) == ([], False)
