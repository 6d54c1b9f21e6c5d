"""The worker's results passed on as it wrote them: the same bytes as reading and writing them again."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from pydantic_core import to_json

from stockzen_contracts import ItemResult, ItemStatus, SyncBatchApplied, SyncRequest, SyncResponse, describe_errors
from stockzen_gateway.domain.envelope import Judged, judge_operations
from stockzen_gateway.domain.results import WorkerReply, assemble_results, is_complete, passed_through
from stockzen_gateway.entrypoints.sync_routes import _envelope, _RawEnvelope
from stockzen_platform.http import ApiError
from tests.support.ops import movement
from tests.unit.contracts.test_queue_messages import _RESULTS

NOW = datetime(2026, 12, 3, 18, 0, 0, 123456, tzinfo=UTC)


def _slow(judged: Judged, reply: WorkerReply) -> tuple[bytes, list[ItemResult]]:
    """What the gateway made of every reply before: validate it, assemble, encode the response."""
    applied = reply.read()
    results = assemble_results(judged, applied)
    body = SyncResponse(checkpoint=applied.checkpoint, server_time=NOW, results=results).model_dump_json().encode()
    return body, results


def _batch(tenant: uuid.UUID, size: int) -> tuple[Judged, list[Any]]:
    raws: list[Any] = [movement(tenant, uuid.uuid4()) for _ in range(size)]
    return judge_operations(raws, tenant), raws


@settings(max_examples=200, deadline=None)
@given(
    results=st.lists(_RESULTS, min_size=1, max_size=5),
    checkpoint=st.none() | st.text(max_size=12),
    request_id=st.text(max_size=20),
)
def test_the_passed_through_body_is_the_one_the_models_would_write(
    results: list[ItemResult], checkpoint: str | None, request_id: str
) -> None:
    tenant = uuid.uuid4()
    judged, raws = _batch(tenant, len(results))
    # The worker answers for the operations it was sent, in their order.
    results = [
        r.model_copy(update={"operation_id": op.operation_id}) for r, op in zip(results, judged.accepted, strict=True)
    ]
    reply = WorkerReply(
        SyncBatchApplied(request_id=request_id, checkpoint=checkpoint, results=results).wire_json().encode()
    )

    fast = passed_through(judged, raws, reply, NOW)
    body, slow_results = _slow(judged, reply)
    assert fast is not None
    assert fast.body == body
    assert fast.complete == is_complete(slow_results)
    assert list(fast.outcomes) == [(r.status, r.code, r.retryable) for r in slow_results]


def _reply(judged: Judged, results: list[dict[str, Any]], checkpoint: str | None = "7") -> WorkerReply:
    head = SyncBatchApplied(request_id="r", checkpoint=checkpoint, results=[]).wire_json()
    return WorkerReply((head[: -len("]}")] + to_json(results).decode()[1:-1] + "]}").encode())


def test_anything_but_the_usual_reply_is_read_whole_as_before() -> None:
    tenant = uuid.uuid4()
    judged, raws = _batch(tenant, 2)
    ids = [str(op.operation_id) for op in judged.accepted]
    usual = [{"operationId": i, "status": "applied"} for i in ids]
    assert passed_through(judged, raws, _reply(judged, usual), NOW) is not None

    unusual: dict[str, tuple[Judged, list[dict[str, Any]]]] = {
        "a gateway refusal among the items": (judge_operations([*raws, {"bad": 1}], tenant), usual),
        "a result missing": (judged, usual[:1]),
        "results out of order": (judged, usual[::-1]),
        "an unknown field": (judged, [usual[0], {**usual[1], "extra": 1}]),
        "a null field": (judged, [usual[0], {**usual[1], "code": None}]),
        "an unknown status": (judged, [usual[0], {**usual[1], "status": "maybe"}]),
        "an unknown code": (judged, [usual[0], {**usual[1], "code": "NOPE"}]),
        "no status": (judged, [usual[0], {"operationId": ids[1]}]),
    }
    for name, (this_judged, results) in unusual.items():
        assert passed_through(this_judged, raws, _reply(this_judged, results), NOW) is None, name
    for name, payload in {
        "another layout": b'{"checkpoint":"7","requestId":"r","results":[]}',
        "not JSON": b'{"requestId":"r","checkpoint":"7","results":[}',
        "a number for a checkpoint": b'{"requestId":"r","checkpoint":7,"results":[]}',
        "a key more": b'{"requestId":"r","checkpoint":"7","x":1,"results":[]}',
    }.items():
        assert passed_through(judged, raws, WorkerReply(payload), NOW) is None, name


def test_an_operation_id_the_client_wrote_in_upper_case_still_passes_through() -> None:
    tenant = uuid.uuid4()
    judged, raws = _batch(tenant, 1)
    raws = [{**raws[0], "operationId": raws[0]["operationId"].upper(), "idempotencyKey": raws[0]["operationId"]}]
    judged = judge_operations(raws, tenant)
    reply = _reply(judged, [{"operationId": str(judged.accepted[0].operation_id), "status": "applied"}])
    fast = passed_through(judged, raws, reply, NOW)
    assert fast is not None
    assert fast.body == _slow(judged, reply)[0]


def test_a_pending_result_passed_through_makes_the_answer_incomplete() -> None:
    judged, raws = _batch(uuid.uuid4(), 1)
    pending = ItemResult.pending(judged.accepted[0].operation_id).wire_json()
    reply = WorkerReply(f'{{"requestId":"r","checkpoint":null,"results":[{pending}]}}'.encode())
    fast = passed_through(judged, raws, reply, NOW)
    assert fast is not None
    assert not fast.complete
    assert fast.outcomes[0].status is ItemStatus.PENDING


def test_the_gateways_envelope_follows_the_contracts() -> None:
    # The gateway checks the envelope with a model of its own that does not walk the operations again.
    assert {n: f.alias for n, f in _RawEnvelope.model_fields.items()} == {
        n: f.alias for n, f in SyncRequest.model_fields.items()
    }
    bodies: tuple[Any, ...] = (
        {"operations": []},
        {"operations": {}},
        {"operations": [{}], "since": 3},
        {"operations": [{}], "checkpoint": ""},
        {"operations": [{}], "checkpoint": 3},
        {"operations": [{}], "checkpoint": "x" * 41},
        [1, 2],
    )
    for body in bodies:
        with pytest.raises(ValidationError) as expected:
            SyncRequest.model_validate(body)
        with pytest.raises(ApiError) as refused:
            _envelope(body, 500)
        assert refused.value.status_code == 422
        assert refused.value.message == describe_errors(expected.value)
    body = {"checkpoint": " 12 ", "operations": [{"a": [1, {"b": None}]}]}
    read, expected_request = _envelope(body, 500), SyncRequest.model_validate(body)
    assert isinstance(read, SyncRequest)
    assert read.model_dump() == expected_request.model_dump()
    assert read.model_fields_set == expected_request.model_fields_set
