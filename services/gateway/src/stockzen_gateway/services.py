"""The gateway's service layer: one sync request in, one result per operation out."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import JsonValue

from stockzen_contracts import ApplySyncBatch, ItemResult, SyncRequest, SyncResponse
from stockzen_platform.identity import Identity

from .domain.envelope import judge_operations
from .domain.request_keys import (
    Refusal,
    RequestKeyState,
    StoredResponse,
    check_request_key,
    fingerprint,
    is_replayable,
    refusal_for,
)
from .domain.results import assemble_results, is_complete
from .ports import BatchPublisher, SyncState

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SyncAnswer:
    """The HTTP answer to a sync request: 200 when every item is final, 202 when some are pending."""

    status_code: int
    body: bytes
    results: tuple[ItemResult, ...] = ()  # empty for a replay
    replayed: bool = False


class RequestRefused(Exception):
    """The request as a whole cannot go on (a request-key rule); answered with the error shape."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


@dataclass(frozen=True, slots=True)
class SyncPolicy:
    """The knobs of a sync request's life (from the gateway's settings)."""

    result_timeout_seconds: float
    request_key_ttl_seconds: int

    @property
    def in_flight_seconds(self) -> int:
        # A claim outlives the request's own deadline, then expires if its holder died.
        return int(self.result_timeout_seconds) + 30


async def sync(
    request: SyncRequest,
    identity: Identity,
    request_id: str,
    *,
    publisher: BatchPublisher,
    state: SyncState,
    policy: SyncPolicy,
    received_at: datetime | None = None,
) -> SyncAnswer:
    """Refuse bad items, publish the rest as one batch, and wait (up to the deadline) for their results.

    Raises :class:`~stockzen_gateway.ports.PublishFailed` when the broker does not take the batch.
    """
    received = received_at or datetime.now(UTC)
    judged = judge_operations(request.operations, identity.tenant_id)
    applied = None
    if judged.accepted:
        reply_to = state.new_reply_key()
        await publisher.publish(
            ApplySyncBatch(
                request_id=request_id,
                tenant_id=identity.tenant_id,
                user_id=identity.user_id,
                received_at=received,
                reply_to=reply_to,
                operations=judged.accepted,
            )
        )
        applied = await state.wait_for_reply(reply_to, policy.result_timeout_seconds)
    results = assemble_results(judged, applied)
    response = SyncResponse(
        checkpoint=applied.checkpoint if applied else request.checkpoint,
        server_time=datetime.now(UTC),
        results=results,
    )
    status = 200 if is_complete(results) else 202
    return SyncAnswer(status, response.model_dump_json().encode(), tuple(results))


async def sync_idempotently(
    request: SyncRequest,
    request_key: str | None,
    identity: Identity,
    request_id: str,
    *,
    publisher: BatchPublisher,
    state: SyncState,
    policy: SyncPolicy,
) -> SyncAnswer:
    """:func:`sync`, honouring an ``Idempotency-Key``: replay, run and keep, or raise :class:`RequestRefused`."""
    if request_key is None:
        return await sync(request, identity, request_id, publisher=publisher, state=state, policy=policy)
    refusal = check_request_key(request_key, [_raw_operation_id(op) for op in request.operations])
    if refusal:
        raise RequestRefused(refusal)
    digest = fingerprint(request.operations)
    claim = await state.claim_request_key(
        identity.tenant_id, request_key, digest, in_flight_seconds=policy.in_flight_seconds
    )
    if claim.state is RequestKeyState.COMPLETED and claim.stored is not None:
        return SyncAnswer(claim.stored.status_code, claim.stored.body, replayed=True)
    refusal = refusal_for(claim.state)
    if refusal:
        raise RequestRefused(refusal)
    assert claim.token is not None  # a CLAIMED key always comes with its token
    try:
        answer = await sync(request, identity, request_id, publisher=publisher, state=state, policy=policy)
    except BaseException:
        await state.release_request_key(identity.tenant_id, request_key, claim.token)
        raise
    if is_replayable(answer.status_code, answer.results):
        stored = StoredResponse(answer.status_code, answer.body)
        kept = await state.complete_request_key(
            identity.tenant_id, request_key, claim.token, stored, ttl_seconds=policy.request_key_ttl_seconds
        )
        if not kept:
            log.warning("lost the request-key claim before completing; the answer is not kept")
    else:
        await state.release_request_key(identity.tenant_id, request_key, claim.token)
    return answer


def _raw_operation_id(raw: JsonValue) -> object:
    return raw.get("operationId") if isinstance(raw, dict) else None
