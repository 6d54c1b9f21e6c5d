"""The served HTTP's read deadlines, on a real uvicorn server in this process with deadlines of 0.3 s:
half-sent requests are dropped, requests that keep coming and slow answers are not."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import uvicorn
from starlette.types import Receive, Scope, Send

from stockzen_platform.serving import HttpServerSettings, ReadDeadlines, protocol_with, server_config

DEADLINE = 0.3


async def _echo_length(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers with the body's length, after ``?slow`` a second later."""
    if scope["type"] != "http":
        return
    size, more = 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    if scope["query_string"] == b"slow":
        await asyncio.sleep(1.0)
    body = str(size).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


@contextlib.asynccontextmanager
async def _server() -> AsyncIterator[int]:
    settings = HttpServerSettings.model_validate(
        {"HTTP_HEADER_TIMEOUT_SECONDS": DEADLINE, "HTTP_BODY_TIMEOUT_SECONDS": DEADLINE}
    )
    config = server_config(_echo_length, host="127.0.0.1", port=0, settings=settings, lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn offers a flag, not an event)
        await asyncio.sleep(0.01)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await task


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """Everything the server sends until it closes the connection (fails if it is still open after ``seconds``)."""
    async with asyncio.timeout(seconds):
        return await reader.read()


async def test_a_connection_that_stops_half_way_through_its_headers_is_closed() -> None:
    async with _server() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
        assert await _closed_within(reader, 2) == b""
        writer.close()


async def test_a_connection_that_never_sends_a_byte_is_closed() -> None:
    async with _server() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await _closed_within(reader, 2) == b""
        writer.close()


async def test_a_body_that_stops_coming_is_cut_and_one_that_keeps_coming_is_not() -> None:
    async with _server() as port:
        stalled_reader, stalled = await asyncio.open_connection("127.0.0.1", port)
        stalled.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\n")
        for _ in range(6):  # 1.2 s in all, four deadlines, but never DEADLINE without a byte
            await asyncio.sleep(DEADLINE / 1.5)
            writer.write(b"x")
        assert await _closed_within(stalled_reader, 2) == b""
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n6"), 2)
        assert answer.startswith(b"HTTP/1.1 200")
        stalled.close()
        writer.close()


async def test_a_slow_answer_is_not_cut_and_the_next_request_on_the_connection_gets_the_deadline() -> None:
    async with _server() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /?slow HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n0"), 3)
        assert answer.startswith(b"HTTP/1.1 200")
        writer.write(b"GET / HTTP/1.1\r\n")  # the keep-alive timeout (5 s) is not what closes this one
        assert await _closed_within(reader, 2) == b""
        writer.close()


def test_the_settings_reach_uvicorn() -> None:
    settings = HttpServerSettings.model_validate({"HTTP_MAX_CONNECTIONS": 100, "HTTP_KEEPALIVE_SECONDS": 7})
    config = server_config(_echo_length, host="127.0.0.1", port=0, settings=settings)
    assert (config.limit_concurrency, config.timeout_keep_alive) == (100, 7)
    assert protocol_with(ReadDeadlines(1, 2)).deadlines == ReadDeadlines(1, 2)
