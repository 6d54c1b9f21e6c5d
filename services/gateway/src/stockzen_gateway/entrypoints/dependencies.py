"""FastAPI dependencies: the runtime, the caller's identity, rate limits, and the JSON body."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request

from stockzen_contracts import Code
from stockzen_gateway.domain.rate_limits import FAIL_OPEN, LimiterFailure, RateDecision, RateLimit, RateLimits, judge
from stockzen_gateway.metrics import METRICS
from stockzen_gateway.ports import RateLimiterOverloaded, RateLimiterUnavailable
from stockzen_gateway.runtime import GatewayRuntime
from stockzen_platform.http import ApiError
from stockzen_platform.identity import Identity, InvalidToken

log = logging.getLogger(__name__)
_BEARER = {"WWW-Authenticate": "Bearer"}


async def _runtime(request: Request) -> GatewayRuntime:
    # A coroutine on purpose: FastAPI runs a plain function dependency in a worker thread, a
    # thread hop on every request for an attribute read.
    runtime: GatewayRuntime = request.app.state.runtime
    return runtime


Runtime = Annotated[GatewayRuntime, Depends(_runtime)]


async def _current_identity(request: Request, runtime: Runtime) -> Identity:
    # The only source of the caller's tenant: layer 1 of stockzen_platform.tenancy.
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, Code.UNAUTHORIZED, "a bearer token is required", _BEARER)
    try:
        identity = runtime.verifier.verify(token.strip())
    except InvalidToken:
        raise ApiError(401, Code.UNAUTHORIZED, "the bearer token is invalid or expired", _BEARER) from None
    request.state.identity = identity
    return identity


CurrentIdentity = Annotated[Identity, Depends(_current_identity)]


def rate_limit(pick: Callable[[RateLimits], RateLimit]) -> Callable[..., Awaitable[None]]:
    """A dependency spending one token of the caller's bucket ``pick`` chooses (and of its tenant's
    ceiling); the rule is :func:`stockzen_gateway.domain.rate_limits.judge`."""

    async def spend(identity: CurrentIdentity, runtime: Runtime) -> None:
        limit = pick(runtime.rate_limits)
        decision: RateDecision | LimiterFailure
        try:
            decision = await runtime.rate_limiter.take_token(limit, identity.tenant_id, identity.user_id)
        except RateLimiterUnavailable as exc:
            decision = _failure(exc)
        refusal = judge(limit, decision)
        if refusal is not None:
            METRICS.rate_limited.labels(limit.scope).inc()
            raise ApiError(refusal.status_code, refusal.code, refusal.message, refusal.headers)

    return spend


def _failure(exc: RateLimiterUnavailable) -> LimiterFailure:
    if isinstance(exc, RateLimiterOverloaded):
        log.warning("rate limiter overloaded: refusing", extra={"error": str(exc)})
        return LimiterFailure.OVERLOADED
    METRICS.redis_errors.labels("rate_limit").inc()
    log.warning("rate limiter unavailable", extra={"error": str(exc), "fail_open": FAIL_OPEN})
    return LimiterFailure.UNREACHABLE


async def read_json_body(request: Request, max_bytes: int) -> Any:
    """The request's JSON body, refusing other media types (415), big bodies (413) and bad JSON (422)."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise ApiError(415, Code.UNSUPPORTED_MEDIA_TYPE, "send the body as application/json")
    too_large = ApiError(413, Code.PAYLOAD_TOO_LARGE, f"the body is larger than {max_bytes} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > max_bytes:
            raise too_large
    try:
        parsed = json.loads(body)
    except RecursionError:
        raise _too_deep() from None
    except (UnicodeDecodeError, ValueError):
        raise ApiError(422, Code.VALIDATION_ERROR, "the body is not valid JSON") from None
    if nesting_depth(parsed) > MAX_JSON_DEPTH:
        raise _too_deep()
    return parsed


MAX_JSON_DEPTH = 32
"""A sync body is four levels deep; anything far deeper is refused before it is validated or hashed."""


def _too_deep() -> ApiError:
    return ApiError(422, Code.VALIDATION_ERROR, f"the body is nested more than {MAX_JSON_DEPTH} levels deep")


def nesting_depth(value: Any) -> int:
    """How deeply arrays and objects nest in a decoded JSON value (iterative: no recursion limit)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_JSON_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest
