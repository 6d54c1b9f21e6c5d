"""``GET /api/sync/stream``: server-sent events announcing the caller's tenant's new checkpoints.

Authenticated like every other route, with the ``Authorization`` header: browsers read it with
``fetch`` (``EventSource`` cannot send headers), so no token ever goes into a URL. The stream is a
hint to pull ``/api/sync/changes``; a client that misses an event catches up on its periodic pull.

A stream ends when its token expires (or after ``STREAM_MAX_SECONDS``, if sooner): the client then
reconnects with its current token, so a stream never outlives the right to read. How many may be open
at once, per user, per tenant and per process, is :mod:`stockzen_gateway.domain.live_streams`'s rule.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from uuid import UUID

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from stockzen_contracts import STREAM_PATH, Code, StreamEvent
from stockzen_gateway.domain.live_streams import StreamRefused, StreamSlot, stream_lifetime
from stockzen_gateway.metrics import METRICS
from stockzen_gateway.ports import CheckpointAnnouncements
from stockzen_platform.http import ApiError
from stockzen_platform.identity import Identity
from stockzen_platform.read_params import error_responses

from .dependencies import CurrentIdentity, Runtime, rate_limit

router = APIRouter(tags=["sync"])

RECONNECT_MILLISECONDS = 3000
"""The ``retry`` hint sent to clients: how long to wait before reconnecting a dropped stream."""


def _event(kind: StreamEvent, data: dict[str, str]) -> str:
    return f"event: {kind.value}\ndata: {json.dumps(data)}\n\n"


async def announcement_events(
    announcements: CheckpointAnnouncements, tenant_id: UUID, *, heartbeat_seconds: float, max_seconds: float
) -> AsyncIterator[str]:
    """The stream's text: ``ready``, then checkpoints and heartbeats until the gateway stops or
    ``max_seconds`` pass (the token's remaining life at most: the client then reconnects, so its token
    is checked again)."""
    ends_at = time.monotonic() + max_seconds
    async with announcements.subscribe(tenant_id) as subscription:
        # "ready" tells the client it is listening: anything committed before it is in the feed.
        yield f"retry: {RECONNECT_MILLISECONDS}\n" + _event(StreamEvent.READY, {})
        while not subscription.closed and time.monotonic() < ends_at:
            wait = min(heartbeat_seconds, max(0.0, ends_at - time.monotonic()))
            checkpoint = await subscription.next_checkpoint(wait)
            if checkpoint is not None:
                yield _event(StreamEvent.CHECKPOINT, {"checkpoint": checkpoint})
            elif not subscription.closed and time.monotonic() < ends_at:
                # A comment line: keeps proxies from cutting an idle connection, ignored by clients.
                yield ": heartbeat\n\n"


class _StreamWithSlot(StreamingResponse):
    """A stream that gives its place back however it ends: finished, cut by the client, or never sent."""

    def __init__(self, slot: StreamSlot, content: AsyncIterator[str], headers: dict[str, str]) -> None:
        super().__init__(content, media_type="text/event-stream", headers=headers)
        self._slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._slot.release()


def _lifetime(identity: Identity, max_seconds: float) -> float:
    # The token passed with the verifier's leeway; the stream gets none: it ends at the token's expiry.
    lifetime = stream_lifetime(identity.expires_at, now=time.time(), max_seconds=max_seconds)
    if lifetime <= 0:
        raise ApiError(401, Code.UNAUTHORIZED, "the bearer token is invalid or expired", {"WWW-Authenticate": "Bearer"})
    return lifetime


def _take_slot(runtime: Runtime, identity: Identity) -> StreamSlot:
    try:
        return runtime.streams.take(identity.tenant_id, identity.user_id)
    except StreamRefused as refused:
        refusal = refused.refusal
        METRICS.live_streams_refused.labels(refusal.scope).inc()
        raise ApiError(refusal.status_code, refusal.code, refusal.message, refusal.headers) from None


@router.get(
    STREAM_PATH,
    summary="Live announcements of the tenant's new checkpoints (server-sent events)",
    dependencies=[Depends(rate_limit(lambda limits: limits.read))],
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": '`event: ready` once, then `event: checkpoint` with `{"checkpoint": "..."}` '
            "each time the tenant's changes commit; comment heartbeats in between",
        },
        **error_responses(401, 429, 503),
    },
)
async def checkpoint_stream(identity: CurrentIdentity, runtime: Runtime) -> StreamingResponse:
    """Pull ``/api/sync/changes`` from your checkpoint on ``ready`` and on every ``checkpoint`` event.

    The stream ends when the token expires: reconnect with your current token. ``429`` when this user
    or tenant has as many streams open as allowed, ``503`` when this gateway holds all it can."""
    settings = runtime.settings
    lifetime = _lifetime(identity, settings.stream_max_seconds)
    slot = _take_slot(runtime, identity)
    events = announcement_events(
        runtime.announcements,
        identity.tenant_id,
        heartbeat_seconds=settings.stream_heartbeat_seconds,
        max_seconds=lifetime,
    )
    return _StreamWithSlot(slot, events, {"Cache-Control": "no-store, no-transform", "X-Accel-Buffering": "no"})
