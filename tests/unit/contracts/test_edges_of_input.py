"""Input at the edges of the contract: years before 1000, offsets that leave the range, odd strings."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from stockzen_contracts import ApplySyncBatch, InvalidOperation, parse_operation
from stockzen_contracts._wire import format_utc
from tests.support.ops import create_product


def _op(**overrides: Any) -> dict[str, Any]:
    return {**create_product(uuid.uuid4(), uuid.uuid4()), **overrides}


@pytest.mark.parametrize("year", [1, 9, 99, 999])
def test_a_year_before_1000_is_written_with_four_digits_and_reads_back(year: int) -> None:
    moment = datetime(year, 3, 4, 5, 6, 7, 890, tzinfo=UTC)
    assert format_utc(moment) == f"{year:04d}-03-04T05:06:07.000890Z"
    op = parse_operation(_op(modifiedAt=format_utc(moment)))
    batch = ApplySyncBatch(
        request_id="r",
        tenant_id=op.tenant_id,
        user_id="u",
        received_at=moment,
        reply_to="reply",
        operations=[op],
    )
    again = ApplySyncBatch.model_validate(json.loads(json.dumps(batch.to_wire())))
    assert again == batch


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"])
def test_an_offset_that_pushes_a_time_out_of_range_is_a_validation_error(stamp: str) -> None:
    with pytest.raises(InvalidOperation) as caught:
        parse_operation(_op(modifiedAt=stamp))
    assert "modifiedAt" in caught.value.message
    assert "range" in caught.value.message


def test_an_occurred_at_out_of_range_is_a_validation_error() -> None:
    raw = _op(
        entityType="stockMovement",
        payload={
            "productId": str(uuid.uuid4()),
            "kind": "entry",
            "quantity": 1,
            "occurredAt": "0001-01-01T00:00:00+00:01",
        },
    )
    with pytest.raises(InvalidOperation) as caught:
        parse_operation(raw)
    assert "payload.occurredAt" in caught.value.message


@pytest.mark.parametrize("bad", ["\ud800", "mug\udfff", "nul\x00byte"])
@pytest.mark.parametrize("field", ["name", "sku", "barcode", "unit"])
def test_text_a_database_cannot_hold_is_refused_with_the_field_named(bad: str, field: str) -> None:
    payload = {"name": "Blue mug", field: bad}
    with pytest.raises(InvalidOperation) as caught:
        parse_operation(_op(payload=payload))
    assert f"payload.{field}" in caught.value.message


def test_a_movement_reason_with_a_nul_byte_is_refused() -> None:
    raw = _op(
        entityType="stockMovement",
        payload={"productId": str(uuid.uuid4()), "kind": "entry", "quantity": 1, "reason": "a\x00b"},
    )
    with pytest.raises(InvalidOperation) as caught:
        parse_operation(raw)
    assert "payload.reason" in caught.value.message
