"""Work whose client has gone away is cancelled; work whose answer went out is left alone."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from starlette.types import Message, Receive, Scope, Send

from stockzen_platform.disconnects import (
    CLIENT_CLOSED_REQUEST,
    CancelOnDisconnect,
    ClientDisconnected,
    unless_disconnected,
)


class _Client:
    """An ASGI ``receive`` whose client sends an empty body, then leaves when told to."""

    def __init__(self) -> None:
        self.gone = asyncio.Event()
        self._sent_body = False

    async def receive(self) -> Message:
        if not self._sent_body:
            self._sent_body = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.gone.wait()
        return {"type": "http.disconnect"}


async def test_a_handler_is_cancelled_when_its_client_leaves() -> None:
    cancelled = asyncio.Event()

    async def slow_app(_scope: Scope, receive: Receive, _send: Send) -> None:
        assert (await receive())["type"] == "http.request"  # the body still reaches the app
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    client, sent = _Client(), list[Message]()

    async def send(message: Message) -> None:
        sent.append(message)

    serving = asyncio.create_task(CancelOnDisconnect(slow_app)({"type": "http"}, client.receive, send))
    await asyncio.sleep(0.05)
    client.gone.set()
    await asyncio.wait_for(serving, 2)
    assert cancelled.is_set()
    assert sent[0] == {"type": "http.response.start", "status": CLIENT_CLOSED_REQUEST, "headers": []}


async def test_an_answered_request_keeps_its_answer_and_its_errors() -> None:
    async def app(_scope: Scope, _receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    transport = httpx.ASGITransport(app=CancelOnDisconnect(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        response = await client.get("/")
    assert (response.status_code, response.text) == (200, "ok")

    async def failing(_scope: Scope, _receive: Receive, _send: Send) -> None:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        await CancelOnDisconnect(failing)({"type": "http"}, _Client().receive, lambda _: asyncio.sleep(0))


async def test_awaited_work_is_cancelled_when_the_client_leaves() -> None:
    client = _Client()
    work = asyncio.create_task(asyncio.sleep(60))
    waiting = asyncio.create_task(unless_disconnected(client.receive, work))
    await asyncio.sleep(0.05)
    client.gone.set()
    with pytest.raises(ClientDisconnected):
        await asyncio.wait_for(waiting, 2)
    assert work.cancelled()
    assert await unless_disconnected(_Client().receive, asyncio.sleep(0, result="done")) == "done"
