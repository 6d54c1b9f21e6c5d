"""Live updates: the engine listens to the gateway's stream while it runs, and syncs when it speaks.

Every engine here has a long ``tick`` and a longer ``sync_every``: nothing but the stream (or ``stop``)
can move its loop within a test's time.
"""

from __future__ import annotations

import asyncio
from typing import Literal

import pytest

from stockzen_client import Backoff, StockzenClient, SyncState, SyncStatus
from stockzen_contracts import Code
from tests.support.fake_gateway import FakeGateway, failure
from tests.unit.client.conftest import ClientFactory, eventually, running

STREAM = "/api/sync/stream"
FEED = "/api/sync/changes"
QUICK = Backoff(base=0.02, cap=0.1)  # reconnects within a tenth of a second


def listening_client(make_client: ClientFactory, device: str = "phone", **settings: object) -> StockzenClient:
    return make_client(device, backoff=QUICK, **{"tick": 60.0, "sync_every": 300.0, **settings})


async def settled_with_stream(client: StockzenClient, server: FakeGateway, device: str = "phone") -> None:
    """Until the device's stream is open and the sync its ``ready`` asked for (the second) has finished."""
    await eventually(
        lambda: (
            len(server.open_streams) == 1
            and server.requested(device, FEED) == 2
            and client.status.state is SyncState.UP_TO_DATE
        )
    )


async def test_an_announcement_makes_a_sync_long_before_the_periodic_one(
    make_client: ClientFactory, server: FakeGateway
) -> None:
    phone, tablet = listening_client(make_client), make_client("tablet")
    async with running(phone):
        await settled_with_stream(phone, server)
        product = tablet.add_product("Mug")
        await tablet.sync()
        assert phone.product(product) is None

        server.announce()

        await eventually(lambda: phone.product(product) is not None)
        assert server.requested("phone", STREAM) == 1


@pytest.mark.parametrize("how", ["drop", "end"])
async def test_a_stream_that_breaks_or_ends_reconnects_and_its_ready_catches_up(
    make_client: ClientFactory, server: FakeGateway, how: Literal["drop", "end"]
) -> None:
    phone, tablet = listening_client(make_client), make_client("tablet")
    async with running(phone):
        await settled_with_stream(phone, server)
        [first] = server.open_streams
        first.drop() if how == "drop" else first.end()
        product = tablet.add_product("Made while the stream was down")
        await tablet.sync()

        await eventually(lambda: phone.product(product) is not None)
        assert server.requested("phone", STREAM) == 2
        assert first.closed
        assert len(server.open_streams) == 1


async def test_heartbeats_and_other_events_do_not_make_a_sync(make_client: ClientFactory, server: FakeGateway) -> None:
    phone = listening_client(make_client)
    async with running(phone):
        await settled_with_stream(phone, server)
        [stream] = server.open_streams
        stream.write(": heartbeat\n\n")
        stream.send("message", {"note": "not an announcement"})
        await eventually(lambda: stream.drained)
        await asyncio.sleep(0.2)  # a sync they asked for would have begun long before
        assert server.requested("phone", FEED) == 2

        stream.send("checkpoint", {"checkpoint": "0"})
        await eventually(lambda: server.requested("phone", FEED) == 3)


async def test_a_refused_token_stops_the_stream_until_the_engine_runs_again(
    make_client: ClientFactory, server: FakeGateway
) -> None:
    phone = listening_client(make_client)
    seen: list[SyncStatus] = []
    phone.engine.hub.subscribe(seen.append)
    async with running(phone):
        await settled_with_stream(phone, server)
        refused = failure(401, Code.UNAUTHORIZED, "the bearer token is invalid or expired")
        server.stream_failures.extend([refused] * 3)
        server.failures.append(refused)  # the expired token fails the sync the refusal asks for, too
        server.open_streams[0].end()  # the gateway ends streams after a while, to check the token again

        await eventually(lambda: any("log in again" in (s.last_error or "") for s in seen))
        await asyncio.sleep(0.5)  # five times the longest reconnect delay: a retry would have come
        assert server.requested("phone", STREAM) == 2
        assert server.open_streams == []

    server.stream_failures.clear()
    async with running(phone):
        await eventually(lambda: len(server.open_streams) == 1)
    assert server.requested("phone", STREAM) == 3


async def test_offline_the_stream_waits_for_the_probe(make_client: ClientFactory, server: FakeGateway) -> None:
    phone = listening_client(make_client, probe_every=0.05, tick=0.02)
    server.reachable["phone"] = False
    async with running(phone):
        await eventually(lambda: server.requested("phone", "/healthz") >= 3)
        assert phone.status.state is SyncState.OFFLINE
        assert server.requested("phone", STREAM) == 0

        server.reachable["phone"] = True
        await eventually(lambda: len(server.open_streams) == 1)
        await eventually(lambda: phone.status.state is SyncState.UP_TO_DATE)


async def test_stopping_the_engine_closes_the_stream_and_leaves_no_task(
    make_client: ClientFactory, server: FakeGateway
) -> None:
    phone = listening_client(make_client)
    before = asyncio.all_tasks()  # the test loop is shared: other tests' tasks are not this test's business
    async with running(phone):
        await settled_with_stream(phone, server)
        [stream] = server.open_streams

    assert stream.closed
    assert server.open_streams == []
    assert asyncio.all_tasks() - before == set()


async def test_with_live_off_no_stream_is_opened(make_client: ClientFactory, server: FakeGateway) -> None:
    phone = listening_client(make_client, live=False, tick=0.02)
    async with running(phone):
        await eventually(lambda: phone.status.state is SyncState.UP_TO_DATE)
        await asyncio.sleep(0.2)  # ten turns of the loop: a stream would have been opened by now
    assert server.requested("phone", FEED) == 1
    assert server.requested("phone", STREAM) == 0
    assert server.streams == []
