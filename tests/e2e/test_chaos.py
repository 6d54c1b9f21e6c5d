"""The short chaos run: 20 simulated devices of 4 tenants push through every fault once, while three
Python clients and two browser tabs of a fifth tenant work through a faulty link, and nothing is lost,
doubled or diverges (the long run is ``make chaos``). And the faulty link itself, against a small
upstream of its own."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from tests.support.chaos import Chaos, ChaosConfig
from tests.support.chaos_clients import ClientChaosConfig, Made, chromium_installed, match_intents, seen_operations
from tests.support.faulty_link import Exchange, FaultyLink, LinkRates
from tests.support.services import ServiceUrls
from tests.support.stack import Stack, user_token

# Few changes and mild rates: short, and far from any bound, so it never flakes.
SHORT_CLIENTS = ClientChaosConfig(
    python_devices=3,
    browser_tabs=(1, 1),
    products_per_device=2,
    min_actions=4,
    max_actions=10,
    pause_seconds=0.5,
    rates=LinkRates(answer_dropped=0.05, reset=0.03, unavailable=0.03, rate_limited=0.03),
    link_outage_seconds=1.5,
    settle_seconds=60,
)


@pytest.mark.slow
async def test_under_every_fault_nothing_is_lost_doubled_or_diverges(database: ServiceUrls, log_dir: Path) -> None:
    stack = Stack(database, log_dir, name="chaos")
    with_browsers = chromium_installed()
    clients = SHORT_CLIENTS if with_browsers else dataclasses.replace(SHORT_CLIENTS, browser_tabs=())
    config = ChaosConfig(
        tenants=4, devices=20, min_rounds=2, batch_size=4, outage_seconds=1.5, seconds=60, clients=clients
    )
    report = await Chaos(database, stack, config).run()
    print("\n".join(report.lines()))

    assert report.faults == dict.fromkeys(config.faults, 1), report.lines()
    assert report.operations >= 20 * 2
    assert report.raced_batches > 0
    assert report.outage_reads == [503], "a read while Postgres is away must say: retry"
    assert any(line.startswith("clients ") for line in report.client_lines), report.lines()
    assert report.held, report.lines()


# -- the faulty link -----------------------------------------------------------------------------


class Upstream:
    """A tiny HTTP server: answers a sync with one result per operation, streams ``/api/sync/stream``
    in two parts (the second once ``release`` is set), anything else with ``ok``."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.release = asyncio.Event()
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        method, path, _ = lines[0].split(" ")
        length = next((int(v) for k, _, v in (h.partition(":") for h in lines[1:]) if k.lower() == "content-length"), 0)
        body = await reader.readexactly(length)
        self.requests.append(f"{method} {path}")
        if path == "/api/sync/stream":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            writer.write(b"e\r\nevent: ready\n\n\r\n")
            await writer.drain()
            await self.release.wait()
            writer.write(b"0\r\n\r\n")
        else:
            ops = json.loads(body)["operations"] if body else []
            answer = json.dumps({"results": [{"operationId": o["operationId"], "status": "applied"} for o in ops]})
            writer.write(
                f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(answer)}\r\n"
                f"connection: keep-alive\r\n\r\n{answer}".encode()
            )
        await writer.drain()
        writer.close()


@asynccontextmanager
async def linked(rates: LinkRates) -> AsyncIterator[tuple[FaultyLink, Upstream, httpx.AsyncClient]]:
    upstream = Upstream()
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", 0)
    upstream.port = server.sockets[0].getsockname()[1]
    link = FaultyLink("127.0.0.1", upstream.port, rates, seed=1)
    await link.start()
    token = user_token(uuid.uuid4(), "device-7")
    headers = {"Authorization": f"Bearer {token}"}
    try:
        async with httpx.AsyncClient(base_url=link.url, headers=headers, timeout=5) as client:
            yield link, upstream, client
    finally:
        upstream.release.set()
        await link.close()
        server.close()
        await server.wait_closed()


def _sync_body(*ids: str) -> dict[str, object]:
    return {"operations": [{"operationId": i, "entityType": "product"} for i in ids]}


async def test_the_faulty_link_drops_answers_after_the_server_answered_and_records_them() -> None:
    async with linked(LinkRates(answer_dropped=1.0)) as (link, upstream, client):
        with pytest.raises(httpx.TransportError):
            await client.post("/api/sync", json=_sync_body("op-1", "op-2"))
        assert upstream.requests == ["POST /api/sync"]  # the server saw it and answered
        (exchange,) = link.exchanges
        assert (exchange.user, exchange.fault, exchange.status) == ("device-7", "answer_dropped", 200)
        assert [r["operationId"] for r in exchange.results] == ["op-1", "op-2"]
        assert [o["operationId"] for o in exchange.operations] == ["op-1", "op-2"]
        assert (await client.get("/app/")).text.startswith('{"results"')  # the app is never faulted
        link.heal()
        answered = await client.post("/api/sync", json=_sync_body("op-3"))
        assert (answered.status_code, answered.json()["results"][0]["operationId"]) == (200, "op-3")
        assert answered.headers["connection"] == "close"
        assert link.faults == {"answer_dropped": 1}


@pytest.mark.parametrize(
    ("rates", "status", "code"),
    [
        (LinkRates(unavailable=1.0), 503, "UNAVAILABLE"),
        (LinkRates(rate_limited=1.0), 429, "RATE_LIMITED"),
    ],
)
async def test_the_faulty_link_answers_503_and_429_itself(rates: LinkRates, status: int, code: str) -> None:
    async with linked(rates) as (link, upstream, client):
        answer = await client.post("/api/sync", json=_sync_body("op-1"))
        assert (answer.status_code, answer.json()["code"], answer.headers["retry-after"]) == (status, code, "1")
        assert upstream.requests == []
        assert link.exchanges[0].status is None  # the server never saw it


async def test_the_faulty_link_resets_connections_and_goes_away_for_a_while() -> None:
    async with linked(LinkRates(reset=1.0)) as (link, upstream, client):
        with pytest.raises(httpx.TransportError):
            await client.get("/api/products")
        assert upstream.requests == []
        link.heal()
        away = asyncio.create_task(link.go_away(0.5))
        await asyncio.sleep(0.1)
        with pytest.raises(httpx.ConnectError):
            await client.get("/healthz")
        await away
        assert (await client.get("/healthz")).status_code == 200
        assert link.faults == {"reset": 1, "link_away": 1}


async def test_the_faulty_link_passes_a_stream_through_as_it_comes() -> None:
    async with linked(LinkRates()) as (_, upstream, client), client.stream("GET", "/api/sync/stream") as stream:
        chunks = stream.aiter_text()
        assert await anext(chunks) == "event: ready\n\n"  # before the upstream has finished
        upstream.release.set()
        assert [rest async for rest in chunks] == []


def test_the_client_books_count_a_change_never_sent_as_lost_and_one_sent_twice_as_doubled() -> None:
    def sent(op_id: str, user: str, entity_type: str, operation: str, entity: str, **payload: str) -> Exchange:
        body = {"operationId": op_id, "entityType": entity_type, "operationType": operation, "entityId": entity}
        return Exchange(
            user, [{**body, "payload": payload}], status=200, results=[{"operationId": op_id, "status": "applied"}]
        )

    made = [
        Made("py1", "create", "p1"),
        Made("py1", "movement", "p1", "m1", "entry"),
        Made("py1", "movement", "p1", "m2", "exit"),  # never sent: lost
        Made("web1", "movement", "p1", None, "entry"),
        Made("web1", "update", "p1", attempts=2),
    ]
    exchanges = [
        sent("o1", "py1", "product", "create", "p1"),
        sent("o2", "py1", "stockMovement", "create", "m1", productId="p1", kind="entry"),
        sent("o2", "py1", "stockMovement", "create", "m1", productId="p1", kind="entry"),  # a retry: fine
        sent("o3", "web1", "stockMovement", "create", "m3", productId="p1", kind="entry"),
        sent("o4", "web1", "stockMovement", "create", "m4", productId="p1", kind="entry"),  # one click, two: doubled
        sent("o5", "web1", "product", "update", "p1"),
        sent("o6", "web1", "product", "update", "p1"),  # a second Save pressed: allowed
    ]
    seen = seen_operations(exchanges)
    assert seen["o2"].sends == 2
    assert match_intents(made, seen, {"py1": "python", "web1": "browser"}) == (1, 1)
