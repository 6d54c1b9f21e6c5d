"""``GET /api/sync/stream`` on the real stack: authenticated, per tenant, fed by the worker, heartbeats,
and closed cleanly when the gateway stops."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from tests.support.retry import sync_until_final
from tests.support.stack import Stack, gateway_client


def _create(tenant_id: uuid.UUID, name: str) -> dict[str, object]:
    op = str(uuid.uuid4())
    return {
        "operationId": op,
        "idempotencyKey": op,
        "entityType": "product",
        "entityId": str(uuid.uuid4()),
        "operationType": "create",
        "tenantId": str(tenant_id),
        "modifiedAt": datetime.now(UTC).isoformat(),
        "payload": {"name": name},
    }


async def _events(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    """(event, data) pairs, and ("comment", text) for comment lines, as they arrive."""
    kind, data = "message", ""
    async for line in response.aiter_lines():
        if line.startswith(":"):
            yield "comment", line[1:].strip()
        elif line.startswith("event:"):
            kind = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            data = line.split(":", 1)[1].strip()
        elif line == "" and kind != "message":
            yield kind, data
            kind, data = "message", ""


async def _next(events: AsyncIterator[tuple[str, str]], wanted: str, seconds: float = 10) -> str:
    async with asyncio.timeout(seconds):
        async for kind, data in events:
            if kind == wanted:
                return data
    raise AssertionError(f"the stream ended before a {wanted!r} event")


async def test_the_stream_needs_a_token(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.gateway_url) as anonymous:
        response = await anonymous.get("/api/sync/stream")
        assert response.status_code == 401
        assert response.json()["code"] == "UNAUTHORIZED"
        # The token goes in the header: a query parameter is not a way in.
        assert (await anonymous.get("/api/sync/stream", params={"access_token": "x"})).status_code == 401


async def test_a_tenant_hears_its_own_checkpoints_only_and_heartbeats_in_between(
    stack: Stack, gateway: httpx.AsyncClient, tenant_id: uuid.UUID
) -> None:
    other_tenant = uuid.uuid4()
    async with (
        gateway_client(stack, tenant_id, "listener") as mine,
        gateway_client(stack, other_tenant, "neighbour") as theirs,
        mine.stream("GET", "/api/sync/stream") as my_stream,
        theirs.stream("GET", "/api/sync/stream") as their_stream,
    ):
        assert my_stream.status_code == 200
        assert my_stream.headers["content-type"].startswith("text/event-stream")
        assert my_stream.headers["cache-control"].startswith("no-store")
        my_events, their_events = _events(my_stream), _events(their_stream)
        await _next(my_events, "ready")
        await _next(their_events, "ready")

        answer = await sync_until_final(gateway, [_create(tenant_id, "announced")])
        checkpoint = answer.json()["checkpoint"]
        announced = json.loads(await _next(my_events, "checkpoint"))
        assert announced == {"checkpoint": checkpoint}

        # The other tenant hears nothing of it: its next two events are heartbeats (every 2 s in tests),
        # the second surely sent after the announcement.
        async with asyncio.timeout(15):
            heard = [await anext(their_events), await anext(their_events)]
        assert heard == [("comment", "heartbeat")] * 2, "another tenant's checkpoint leaked"


@pytest.mark.slow
async def test_stopping_the_gateway_ends_open_streams_and_the_process_exits(
    own_stack: Stack, tenant_id: uuid.UUID
) -> None:
    own_stack.start_all()
    gateway = own_stack.processes["gateway"]
    async with gateway_client(own_stack, tenant_id) as client, client.stream("GET", "/api/sync/stream") as stream:
        events = _events(stream)
        await _next(events, "ready")
        gateway.popen.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            async for _ in events:
                pass  # drains until the gateway closes the stream
    # It exits by itself (no SIGKILL needed); uvicorn re-raises the signal it caught once shut down.
    exit_code = await asyncio.to_thread(gateway.popen.wait, 10)
    assert exit_code in (0, -signal.SIGTERM), gateway.log_tail()
    assert "Application shutdown complete" in gateway.log_tail()
