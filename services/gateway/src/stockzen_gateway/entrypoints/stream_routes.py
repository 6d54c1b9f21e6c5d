"""``GET /api/sync/stream``: server-sent events announcing the caller's tenant's new checkpoints.

Authenticated like every other route, with the ``Authorization`` header: browsers read it with
``fetch`` (``EventSource`` cannot send headers), so no token ever goes into a URL. The stream is a
hint to pull ``/api/sync/changes``; a client that misses an event catches up on its periodic pull.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from uuid import UUID

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse

from stockzen_contracts import STREAM_PATH, StreamEvent
from stockzen_gateway.ports import CheckpointAnnouncements
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
    ``max_seconds`` pass (the client then reconnects, so its token is checked again)."""
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
        **error_responses(401, 429),
    },
)
async def checkpoint_stream(identity: CurrentIdentity, runtime: Runtime) -> StreamingResponse:
    """Pull ``/api/sync/changes`` from your checkpoint on ``ready`` and on every ``checkpoint`` event."""
    settings = runtime.settings
    return StreamingResponse(
        announcement_events(
            runtime.announcements,
            identity.tenant_id,
            heartbeat_seconds=settings.stream_heartbeat_seconds,
            max_seconds=settings.stream_max_seconds,
        ),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"},
    )
