"""FastAPI dependencies: the runtime, the caller's identity, rate limits, and the JSON body."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from redis.exceptions import RedisError

from stockzen_contracts import Code
from stockzen_gateway.domain.rate_limits import RateLimit
from stockzen_gateway.metrics import METRICS
from stockzen_gateway.runtime import GatewayRuntime
from stockzen_platform.http import ApiError
from stockzen_platform.identity import Identity, InvalidToken

log = logging.getLogger(__name__)
_BEARER = {"WWW-Authenticate": "Bearer"}


def _runtime(request: Request) -> GatewayRuntime:
    runtime: GatewayRuntime = request.app.state.runtime
    return runtime


Runtime = Annotated[GatewayRuntime, Depends(_runtime)]


async def _current_identity(request: Request, runtime: Runtime) -> Identity:
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


def rate_limit(pick: Callable[[GatewayRuntime], RateLimit]) -> Callable[..., Awaitable[None]]:
    """A dependency spending one token of the caller's bucket for the limit ``pick`` chooses."""

    async def spend(identity: CurrentIdentity, runtime: Runtime) -> None:
        limit = pick(runtime)
        try:
            decision = await runtime.rate_limiter.take_token(limit, identity.tenant_id, identity.user_id)
        except RedisError as exc:
            # Fail open: the limit protects capacity, it is not a correctness rule, and the
            # sync path itself answers 503 while Redis is away.
            METRICS.redis_errors.labels("rate_limit").inc()
            log.warning("rate limiter unavailable; letting the request through", extra={"error": str(exc)})
            return
        if not decision.allowed:
            METRICS.rate_limited.labels(limit.scope).inc()
            raise ApiError(
                429,
                Code.RATE_LIMITED,
                f"too many requests: at most {limit.per_minute} per minute (bursts of {limit.burst})",
                {"Retry-After": str(decision.retry_after_seconds)},
            )

    return spend


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
