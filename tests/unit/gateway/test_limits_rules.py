"""The pure rules behind the gateway's limits: how a kept answer is packed, and tenant ceilings."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from stockzen_contracts import Code, ItemResult, ItemStatus, SyncResponse
from stockzen_gateway.domain.rate_limits import (
    TENANT_CEILING_FACTOR,
    LimiterFailure,
    RateDecision,
    RateLimit,
    TenantCeiling,
    judge,
    with_tenant_ceiling,
)
from stockzen_gateway.domain.request_keys import operation_ids, pack_answer, unpack_answer
from tests.support.ops import movement


def _answer(results: list[ItemResult]) -> bytes:
    return SyncResponse(checkpoint="7", server_time=datetime.now(UTC), results=results).model_dump_json().encode()


def _refused(raw: dict[str, object]) -> ItemResult:
    return ItemResult.rejected(uuid.UUID(str(raw["operationId"])), Code.TENANT_MISMATCH, "another tenant's")


def test_an_answer_of_refusals_packs_to_a_few_hundred_bytes_and_comes_back_byte_for_byte() -> None:
    ops = [movement(uuid.uuid4(), uuid.uuid4()) for _ in range(500)]
    body = _answer([_refused(op) for op in ops])
    packed = pack_answer(body, operation_ids(ops))
    assert len(body) > 70_000
    assert len(packed) < 1_000
    assert unpack_answer(packed, operation_ids(ops)) == body


def test_ids_out_of_order_repeated_foreign_or_missing_still_come_back_exactly() -> None:
    ops = [movement(uuid.uuid4(), uuid.uuid4()) for _ in range(5)]
    ops.append(ops[1])  # the same operation twice
    ops.append({"operationId": "not-a-uuid"})
    results = [_refused(op) for op in reversed(ops[:6])]
    results += [ItemResult(operation_id=uuid.uuid4(), status=ItemStatus.APPLIED)]  # an id of no operation
    results += [ItemResult.rejected(None, Code.VALIDATION_ERROR, "operationId: not a UUID")]
    body = _answer(results)
    ids = operation_ids(ops)
    assert ids[-1] == b""
    assert unpack_answer(pack_answer(body, ids), ids) == body


def test_an_answer_kept_whole_by_an_earlier_version_is_replayed_as_it_is() -> None:
    body = _answer([])
    assert unpack_answer(body, []) == body


def test_an_unset_tenant_ceiling_is_many_users_worth_and_a_set_one_is_taken_as_given() -> None:
    user = RateLimit("sync", per_minute=120, burst=20)
    assert with_tenant_ceiling(user, None, None).tenant == TenantCeiling(
        120 * TENANT_CEILING_FACTOR, 20 * TENANT_CEILING_FACTOR
    )
    assert with_tenant_ceiling(user, 600, 50).tenant == TenantCeiling(600, 50)


def test_the_tenant_ceiling_names_itself_when_it_refuses() -> None:
    limit = with_tenant_ceiling(RateLimit("sync", 120, 20), 600, 50)
    refusal = judge(limit, RateDecision(allowed=False, retry_after_seconds=2, by_tenant=True))
    assert refusal is not None
    assert (refusal.status_code, refusal.code) == (429, Code.RATE_LIMITED)
    assert "600 per minute" in refusal.message
    assert "all its users" in refusal.message


def test_a_limiter_too_busy_to_answer_refuses_and_never_lets_the_request_through() -> None:
    refusal = judge(RateLimit("sync", 120, 20), LimiterFailure.OVERLOADED)
    assert refusal is not None
    assert (refusal.status_code, refusal.code) == (503, Code.UNAVAILABLE)
    assert int(refusal.headers["Retry-After"]) >= 1
    assert judge(RateLimit("sync", 120, 20), LimiterFailure.UNREACHABLE) is None  # Redis away: FAIL_OPEN
