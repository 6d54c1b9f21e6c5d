"""The queue message's fingerprints, and results encoded without the models' serializer."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from stockzen_contracts import (
    ApplySyncBatch,
    Code,
    ItemResult,
    ItemStatus,
    ProductState,
    RawSyncBatch,
    SyncBatchApplied,
    operation_fingerprint,
    parse_operation,
)
from tests.support.ops import create_product, movement

_HEADER = {
    "requestId": "r-1",
    "tenantId": str(uuid.uuid4()),
    "userId": "u1",
    "receivedAt": "2026-11-01T12:00:00Z",
    "replyTo": "reply:test",
}


def _raws() -> list[dict[str, Any]]:
    tenant, product = uuid.UUID(_HEADER["tenantId"]), uuid.uuid4()
    return [create_product(tenant, product), movement(tenant, product, "entry", 2)]


def test_a_published_message_carries_one_fingerprint_per_operation_in_order() -> None:
    operations = [parse_operation(raw) for raw in _raws()]
    message = ApplySyncBatch.model_validate({**_HEADER, "operations": operations}).to_message()
    assert message["fingerprints"] == [operation_fingerprint(op) for op in operations]
    assert message["operations"] == [op.to_wire() for op in operations]
    again = ApplySyncBatch.model_validate(message)
    assert again.operations == operations
    assert again.operation_fingerprints() == message["fingerprints"]


def test_a_message_without_fingerprints_still_reads_and_its_fingerprints_are_computed() -> None:
    raws = _raws()
    assert RawSyncBatch.model_validate({**_HEADER, "operations": raws}).fingerprints is None
    command = ApplySyncBatch.model_validate({**_HEADER, "operations": raws})
    assert command.operation_fingerprints() == [operation_fingerprint(parse_operation(r)) for r in raws]


@pytest.mark.parametrize(
    "fingerprints",
    [
        ["a" * 64],  # one for two operations
        ["a" * 64, "b" * 64, "c" * 64],
        ["a" * 64, "B" * 64],  # not lowercase hex
        ["a" * 64, "a" * 63],
        ["a" * 64, 7],
    ],
)
def test_fingerprints_that_do_not_line_up_with_the_operations_make_the_message_invalid(fingerprints: list[Any]) -> None:
    # Only the gateway publishes, from the list it hashed: anything else is not a message of this
    # contract, and is refused whole (dead-lettered) like any other malformed header.
    for model in (RawSyncBatch, ApplySyncBatch):
        with pytest.raises(ValidationError, match="fingerprints"):
            model.model_validate({**_HEADER, "operations": _raws(), "fingerprints": fingerprints})


_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)


@st.composite
def _states(draw: st.DrawFn) -> ProductState:
    moment = draw(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)))
    return ProductState(
        id=draw(st.uuids()),
        name=draw(st.none() | _TEXT),
        sku=draw(st.none() | _TEXT),
        barcode=draw(st.none() | _TEXT),
        unit=draw(st.none() | _TEXT),
        price_cents=draw(st.none() | st.integers(0, 10**12)),
        low_stock_threshold=draw(st.none() | st.integers(0, 10**9)),
        archived=draw(st.booleans()),
        deleted=draw(st.booleans()),
        modified_at=moment + timedelta(microseconds=draw(st.integers(0, 999_999))),
        checkpoint=str(draw(st.integers(1, 10**12))),
    )


_RESULTS = st.builds(
    ItemResult,
    operation_id=st.none() | st.uuids(),
    status=st.sampled_from(ItemStatus),
    code=st.none() | st.sampled_from(Code),
    message=st.none() | _TEXT,
    retryable=st.none() | st.booleans(),
    server_state=st.none() | _states(),
)


@settings(max_examples=200, deadline=None)
@given(result=_RESULTS)
def test_a_result_is_encoded_exactly_as_its_model_would_encode_it(result: ItemResult) -> None:
    # Byte for byte, so that what the gateway, Redis and applied_operations read back is unchanged.
    assert result.wire_json() == result.model_dump_json()
    assert ItemResult.model_validate_json(result.wire_json()) == result


@settings(max_examples=50, deadline=None)
@given(results=st.lists(_RESULTS, max_size=5), checkpoint=st.none() | st.text(max_size=12), request_id=_TEXT)
def test_the_workers_answer_is_encoded_exactly_as_its_model_would_encode_it(
    results: list[ItemResult], checkpoint: str | None, request_id: str
) -> None:
    applied = SyncBatchApplied(request_id=request_id, checkpoint=checkpoint, results=results)
    assert applied.wire_json() == applied.model_dump_json()
    assert applied.wire_json([r.wire_json() for r in results]) == applied.model_dump_json()
