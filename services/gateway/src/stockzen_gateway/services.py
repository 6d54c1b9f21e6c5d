"""The gateway's service layer: one sync request in, one result per operation out."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

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
    operation_ids,
    pack_answer,
    refusal_for,
    unpack_answer,
)
from .domain.results import Outcome, WorkerReply, assemble_results, is_complete, passed_through
from .ports import BatchPublisher, SyncState

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SyncAnswer:
    """The HTTP answer to a sync request: 200 when every item is final, 202 when some are pending."""

    status_code: int
    body: bytes
    # Empty for a replay; for results passed on as the worker wrote them, what the gateway reads of each.
    results: tuple[ItemResult | Outcome, ...] = ()
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


class SyncService:
    """Pushes sync requests: judges the items, publishes the good ones, waits for their results, and
    keeps or replays answers under the request's key. Its transports come in through the constructor."""

    def __init__(self, publisher: BatchPublisher, state: SyncState, policy: SyncPolicy) -> None:
        self._publisher = publisher
        self._state = state
        self._policy = policy

    async def push(
        self, request: SyncRequest, caller: Identity, *, request_id: str, request_key: str | None = None
    ) -> SyncAnswer:
        """Answer ``request`` for ``caller``, honouring its ``request_key`` (the ``Idempotency-Key``
        header) when it has one: replay, run and keep, or raise :class:`RequestRefused`.

        Raises :class:`~stockzen_gateway.ports.PublishFailed` when the broker does not take the batch.
        """
        if request_key is None:
            return await self._run(request, caller, request_id)
        refusal = check_request_key(request_key, [_raw_operation_id(op) for op in request.operations])
        if refusal:
            raise RequestRefused(refusal)
        tenant_id = caller.tenant_id
        claim = await self._state.claim_request_key(
            tenant_id, request_key, fingerprint(request.operations), in_flight_seconds=self._policy.in_flight_seconds
        )
        if claim.state is RequestKeyState.COMPLETED and claim.stored is not None:
            body = unpack_answer(claim.stored.body, operation_ids(request.operations))
            return SyncAnswer(claim.stored.status_code, body, replayed=True)
        refusal = refusal_for(claim.state)
        if refusal:
            raise RequestRefused(refusal)
        assert claim.token is not None  # a CLAIMED key always comes with its token
        try:
            answer = await self._run(request, caller, request_id)
        except BaseException:
            await self._state.release_request_key(tenant_id, request_key, claim.token)
            raise
        await self._keep_or_release(tenant_id, request_key, claim.token, answer, request)
        return answer

    async def _run(self, request: SyncRequest, caller: Identity, request_id: str) -> SyncAnswer:
        """Refuse bad items, publish the rest as one batch, and wait (up to the deadline) for their results."""
        received = datetime.now(UTC)
        judged = judge_operations(request.operations, caller.tenant_id)
        applied = None
        if judged.accepted:
            reply_to = self._state.new_reply_key()
            await self._publisher.publish(
                ApplySyncBatch(
                    request_id=request_id,
                    tenant_id=caller.tenant_id,
                    user_id=caller.user_id,
                    received_at=received,
                    reply_to=reply_to,
                    operations=judged.accepted,
                )
            )
            reply = await self._state.wait_for_reply(reply_to, self._policy.result_timeout_seconds)
            if isinstance(reply, WorkerReply):
                # The usual answer: the worker's results go out as it wrote them, not read into models
                # and written again (byte for byte the same body; see passed_through).
                fast = passed_through(judged, request.operations, reply, datetime.now(UTC))
                if fast is not None:
                    return SyncAnswer(200 if fast.complete else 202, fast.body, fast.outcomes)
                applied = reply.read()
            else:
                applied = reply
        results = assemble_results(judged, applied)
        response = SyncResponse(
            checkpoint=applied.checkpoint if applied else request.checkpoint,
            server_time=datetime.now(UTC),
            results=results,
        )
        status = 200 if is_complete(results) else 202
        return SyncAnswer(status, response.model_dump_json().encode(), tuple(results))

    async def _keep_or_release(
        self, tenant_id: UUID, request_key: str, token: str, answer: SyncAnswer, request: SyncRequest
    ) -> None:
        """Keep a final answer for replays, packed (a replay brings its operations' ids back); release
        the key when the retry must run again."""
        if not is_replayable(answer.status_code, answer.results):
            await self._state.release_request_key(tenant_id, request_key, token)
            return
        stored = StoredResponse(answer.status_code, pack_answer(answer.body, operation_ids(request.operations)))
        kept = await self._state.complete_request_key(
            tenant_id, request_key, token, stored, ttl_seconds=self._policy.request_key_ttl_seconds
        )
        if not kept:
            log.warning("the answer is not kept: the claim was lost, or the tenant's budget is spent")


def _raw_operation_id(raw: JsonValue) -> object:
    return raw.get("operationId") if isinstance(raw, dict) else None
