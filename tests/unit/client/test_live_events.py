"""Reading the live stream: the server-sent-events parser, and ``GatewayApi.live_events`` over a transport."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest

from stockzen_client.adapters.api import GatewayApi, ServerFailing, Unauthorized, Unreachable
from stockzen_client.adapters.sse import ServerSentEvent, server_sent_events
from stockzen_contracts import Code
from tests.support.fake_gateway import SERVER_URL, FakeStream, failure


async def _lines(*lines: str) -> AsyncIterator[str]:
    for line in lines:
        yield line


async def parsed(*lines: str) -> list[ServerSentEvent]:
    return [event async for event in server_sent_events(_lines(*lines))]


async def test_events_end_at_blank_lines_and_comments_are_skipped() -> None:
    events = await parsed(
        "retry: 3000",
        "event: ready",
        "data: {}",
        "",
        ": heartbeat",
        "",
        "event: checkpoint",
        'data: {"checkpoint": "42"}',
        "",
    )
    assert events == [ServerSentEvent("ready", "{}"), ServerSentEvent("checkpoint", '{"checkpoint": "42"}')]


async def test_data_lines_join_and_unnamed_events_are_messages() -> None:
    events = await parsed("data:first", "data:  second", "id: 7", "", "data", "")
    assert events == [ServerSentEvent("message", "first\n second"), ServerSentEvent("message", "")]


async def test_an_event_without_data_or_without_its_blank_line_is_not_dispatched() -> None:
    assert await parsed("event: ready", "", "event: checkpoint", "data: {}") == []


def api_answering(transport: httpx.MockTransport) -> GatewayApi:
    return GatewayApi(SERVER_URL, "the-token", transport=transport)


async def read_into(read: list[ServerSentEvent], api: GatewayApi) -> None:
    async with contextlib.aclosing(api.live_events()) as events:
        async for event in events:
            read.append(event)


async def read_all(api: GatewayApi) -> list[ServerSentEvent]:
    read: list[ServerSentEvent] = []
    await read_into(read, api)
    return read


async def test_the_stream_is_asked_for_with_the_header_and_read_until_it_ends() -> None:
    seen: list[httpx.Request] = []
    stream = FakeStream()

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, headers={"Content-Type": "text/event-stream"}, stream=stream)

    api = api_answering(httpx.MockTransport(answer))
    stream.write("retry: 3000\r\nevent: ready\r\ndata: {}\r\n\r\n: heartbeat\r\n\r\nevent: check")
    stream.write('point\ndata: {"checkpoint": "9"}\n\n')
    stream.end()

    assert await read_all(api) == [ServerSentEvent("ready", "{}"), ServerSentEvent("checkpoint", '{"checkpoint": "9"}')]
    [request] = seen
    assert (request.method, request.url.path, request.url.query) == ("GET", "/api/sync/stream", b"")
    assert request.headers["Authorization"] == "Bearer the-token"
    assert stream.closed
    await api.aclose()


async def test_a_broken_stream_is_unreachable_after_the_events_before_the_break() -> None:
    stream = FakeStream()
    api = api_answering(httpx.MockTransport(lambda request: httpx.Response(200, stream=stream)))
    stream.send("ready", {})
    stream.drop()
    read: list[ServerSentEvent] = []

    with pytest.raises(Unreachable, match="lost the live stream"):
        await read_into(read, api)

    assert read == [ServerSentEvent("ready", "{}")]
    assert stream.closed
    await api.aclose()


@pytest.mark.parametrize(
    ("answer", "raised"),
    [
        (failure(401, Code.UNAUTHORIZED, "the bearer token is invalid or expired"), Unauthorized),
        (failure(503, Code.UNAVAILABLE, "the live feed is unavailable", retry_after=4), ServerFailing),
    ],
)
async def test_a_refusal_is_raised_as_the_other_calls_raise_it(answer: httpx.Response, raised: type[Exception]) -> None:
    api = api_answering(httpx.MockTransport(lambda request: answer))
    with pytest.raises(raised):
        await read_all(api)
    await api.aclose()


async def test_no_connection_is_unreachable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    api = api_answering(httpx.MockTransport(refuse))
    with pytest.raises(Unreachable):
        await read_all(api)
    await api.aclose()
