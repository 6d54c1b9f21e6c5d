"""The gateway's pure rules: judging items, Idempotency-Key rules, assembling results."""

from __future__ import annotations

import uuid
from typing import Any

from stockzen_contracts import Code, ItemResult, ItemStatus, SyncBatchApplied
from stockzen_gateway.domain.envelope import judge_operations
from stockzen_gateway.domain.rate_limits import RateDecision, RateLimit, judge
from stockzen_gateway.domain.request_keys import (
    RequestKeyState,
    check_request_key,
    fingerprint,
    is_replayable,
    refusal_for,
)
from stockzen_gateway.domain.results import assemble_results, is_complete
from tests.support.ops import movement


def test_items_are_judged_one_by_one_in_order() -> None:
    tenant = uuid.uuid4()
    good = movement(tenant, uuid.uuid4())
    bad: dict[str, Any] = {**movement(tenant, uuid.uuid4()), "payload": {}}
    foreign = movement(uuid.uuid4(), uuid.uuid4())
    judged = judge_operations([good, bad, foreign, "junk"], tenant)

    assert [str(o.operation_id) for o in judged.accepted] == [good["operationId"]]
    refusals = [item for item in judged.items if isinstance(item, ItemResult)]
    assert [(r.code, r.status) for r in refusals] == [
        (Code.VALIDATION_ERROR, ItemStatus.REJECTED),
        (Code.TENANT_MISMATCH, ItemStatus.REJECTED),
        (Code.VALIDATION_ERROR, ItemStatus.REJECTED),
    ]
    assert refusals[0].operation_id == uuid.UUID(bad["operationId"])
    assert refusals[2].operation_id is None


def test_the_worker_results_fill_the_published_slots_and_the_rest_stay_pending() -> None:
    tenant = uuid.uuid4()
    a, b, c = (movement(tenant, uuid.uuid4()) for _ in range(3))
    judged = judge_operations([a, movement(uuid.uuid4(), uuid.uuid4()), b, c], tenant)
    applied = SyncBatchApplied(
        request_id="r",
        checkpoint="9",
        results=[
            ItemResult(operation_id=uuid.UUID(a["operationId"]), status=ItemStatus.APPLIED),
            ItemResult(operation_id=uuid.UUID(b["operationId"]), status=ItemStatus.DUPLICATE),
        ],
    )
    results = assemble_results(judged, applied)
    assert [r.status for r in results] == [
        ItemStatus.APPLIED,
        ItemStatus.REJECTED,
        ItemStatus.DUPLICATE,
        ItemStatus.PENDING,
    ]
    assert not is_complete(results)
    assert [r.status for r in assemble_results(judged, None)] == [
        ItemStatus.PENDING,
        ItemStatus.REJECTED,
        ItemStatus.PENDING,
        ItemStatus.PENDING,
    ]


def test_a_result_for_another_operation_is_never_misplaced() -> None:
    tenant = uuid.uuid4()
    a = movement(tenant, uuid.uuid4())
    judged = judge_operations([a], tenant)
    stray = SyncBatchApplied(
        request_id="r", checkpoint="1", results=[ItemResult(operation_id=uuid.uuid4(), status=ItemStatus.APPLIED)]
    )
    assert assemble_results(judged, stray)[0].status is ItemStatus.PENDING


def test_fingerprints_ignore_key_order_but_not_content() -> None:
    assert fingerprint({"a": 1, "b": [1, {"c": 2, "d": 3}]}) == fingerprint({"b": [1, {"d": 3, "c": 2}], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
    assert fingerprint({"a": [1, 2]}) != fingerprint({"a": [2, 1]})


def test_a_fingerprint_takes_any_json_a_client_can_send_even_a_lone_surrogate() -> None:
    assert fingerprint([{"name": "\ud800"}]) != fingerprint([{"name": "\udfff"}])


def test_key_rules() -> None:
    op_id = str(uuid.uuid4())
    assert check_request_key(op_id, [op_id]) is None
    assert check_request_key(op_id.upper(), [op_id]) is None  # the same UUID, however it is spelled
    assert check_request_key("batch-7", [op_id, str(uuid.uuid4())]) is None
    mismatch = check_request_key(str(uuid.uuid4()), [op_id])
    assert mismatch is not None
    assert (mismatch.status_code, mismatch.code) == (400, Code.IDEMPOTENCY_KEY_MISMATCH)
    for malformed in ("", "x" * 256, "has space", "tab\tkey"):
        refusal = check_request_key(malformed, [op_id, op_id])
        assert refusal is not None, malformed
        assert refusal.code is Code.VALIDATION_ERROR


def test_who_holds_a_key_decides_the_answer() -> None:
    in_flight, reused = refusal_for(RequestKeyState.IN_FLIGHT), refusal_for(RequestKeyState.MISMATCH)
    assert in_flight is not None
    assert (in_flight.status_code, in_flight.code) == (409, Code.IDEMPOTENCY_KEY_IN_FLIGHT)
    assert reused is not None
    assert (reused.status_code, reused.code) == (422, Code.IDEMPOTENCY_KEY_REUSED)
    assert refusal_for(RequestKeyState.CLAIMED) is None
    assert [is_replayable(s, []) for s in (200, 202, 503, 500)] == [True, False, False, False]


def test_an_answer_with_an_item_to_retry_later_is_not_kept_for_replays() -> None:
    op = uuid.uuid4()
    final = [ItemResult.rejected(op, Code.NOT_FOUND, "the product was deleted")]
    later = [ItemResult.retry_later(op, Code.NOT_FOUND, "no such product yet")]
    assert is_replayable(200, final)
    assert not is_replayable(200, later)


def test_a_refused_request_answers_429_with_when_to_come_back() -> None:
    limit = RateLimit("sync", per_minute=120, burst=20)
    assert judge(limit, RateDecision(allowed=True, retry_after_seconds=0)) is None
    refusal = judge(limit, RateDecision(allowed=False, retry_after_seconds=3))
    assert refusal is not None
    assert (refusal.status_code, refusal.code) == (429, Code.RATE_LIMITED)
    assert refusal.headers == {"Retry-After": "3"}
    assert "120 per minute" in refusal.message
    assert "bursts of 20" in refusal.message


def test_a_limiter_that_cannot_answer_lets_the_request_through() -> None:
    assert judge(RateLimit("read", 60, 5), None) is None
