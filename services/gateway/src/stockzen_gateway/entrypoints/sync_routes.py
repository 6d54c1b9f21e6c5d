"""``POST /api/sync``: parse, call the service layer, answer."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, Response
from pydantic import Field, ValidationError, create_model

from stockzen_contracts import (
    MAX_OPERATIONS_CEILING,
    SYNC_PATH,
    Code,
    EntityType,
    ErrorBody,
    OperationType,
    SyncRequest,
    SyncResponse,
    describe_errors,
)
from stockzen_gateway.metrics import METRICS
from stockzen_gateway.ports import PublishFailed
from stockzen_gateway.services import RequestRefused, SyncAnswer
from stockzen_platform.http import ApiError, request_id_of

from .dependencies import CurrentIdentity, Runtime, rate_limit, read_json_body
from .openapi import SYNC_REQUEST_BODY

router = APIRouter(tags=["sync"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (400, 401, 409, 413, 415, 422, 429, 503)
}


@router.post(
    SYNC_PATH,
    response_model=SyncResponse,
    responses={202: {"model": SyncResponse, "description": "some items are still pending"}, **_ERRORS},
    dependencies=[Depends(rate_limit(lambda limits: limits.sync))],
    summary="Push offline changes; one result per operation",
    openapi_extra=SYNC_REQUEST_BODY,
)
async def post_sync(
    request: Request,
    identity: CurrentIdentity,
    runtime: Runtime,
    request_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Response:
    """Apply a batch of operations: ``200`` with every result, or ``202`` with the late ones ``pending``."""
    body = await read_json_body(request, runtime.settings.max_body_bytes)
    envelope = _envelope(body, runtime.settings.max_operations)
    try:
        answer = await runtime.sync.push(envelope, identity, request_id=request_id_of(request), request_key=request_key)
    except RequestRefused as exc:
        METRICS.request_keys.labels(exc.refusal.code.lower()).inc()
        raise ApiError(exc.refusal.status_code, exc.refusal.code, exc.refusal.message) from None
    except PublishFailed as exc:
        raise ApiError(
            503,
            Code.UNAVAILABLE,
            f"the queue did not confirm the batch ({exc}): it may or may not be applied; "
            "retry later with the same ids (a retry never applies an operation twice)",
            {"Retry-After": "5"},
        ) from None
    return _answer(answer, envelope)


def _envelope(body: Any, max_operations: int) -> SyncRequest:
    operations = body.get("operations") if isinstance(body, dict) else None
    if isinstance(operations, list) and len(operations) > max_operations:
        raise ApiError(
            413,
            Code.TOO_MANY_OPERATIONS,
            f"at most {max_operations} operations per request; split the batch",
        )
    try:
        return _RawEnvelope.model_validate(body)
    except ValidationError as exc:
        raise ApiError(422, Code.VALIDATION_ERROR, describe_errors(exc)) from None


# A :class:`SyncRequest` as the gateway reads it from a body the JSON decoder made: the same rules, but
# its operations are not walked as ``JsonValue`` again (they are JSON values already, and each is
# validated on its own next). Named like it, for errors name the model ("... instance of SyncRequest").
# A test holds the two in step.
_RawEnvelope: type[SyncRequest] = create_model(
    "SyncRequest",
    __base__=SyncRequest,
    operations=(Annotated[list[Any], Field(min_length=1, max_length=MAX_OPERATIONS_CEILING)], ...),
)


def _answer(answer: SyncAnswer, envelope: SyncRequest) -> Response:
    headers = {}
    if answer.replayed:
        headers["Idempotent-Replayed"] = "true"
        METRICS.request_keys.labels("replayed").inc()
    else:
        _count_results(answer, envelope)
    if answer.status_code == 202:
        METRICS.pending_answers.inc()
    return Response(answer.body, status_code=answer.status_code, media_type="application/json", headers=headers)


def _count_results(answer: SyncAnswer, envelope: SyncRequest) -> None:
    for raw, result in zip(envelope.operations, answer.results, strict=True):
        entity, kind = (
            _label(raw, "entityType", _ENTITY_TYPES),
            _label(raw, "operationType", _OPERATION_TYPES),
        )
        code = result.code.value if result.code else ""
        METRICS.sync_operations.labels(entity, kind, result.status.value, code).inc()


_ENTITY_TYPES = frozenset(e.value for e in EntityType)
_OPERATION_TYPES = frozenset(o.value for o in OperationType)


def _label(raw: object, field: str, allowed: frozenset[str]) -> str:
    # Labels come from a closed set: a client's garbage must not create new series.
    value = raw.get(field) if isinstance(raw, dict) else None
    return value if isinstance(value, str) and value in allowed else "invalid"
