"""Work whose caller has gone away is stopped, not finished for nobody.

An ASGI server does not cancel a request's handler when its client disconnects: a read whose caller
gave up (the gateway's timeout, a closed browser tab) would run on and hold one of the few database
connections every tenant shares. Cancelling the handler's task stops it where it waits; asyncpg then
cancels the running query in Postgres. :class:`CancelOnDisconnect` does this for a whole app;
:func:`unless_disconnected` for one awaited call in an endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any, TypeVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CLIENT_CLOSED_REQUEST = 499
"""The status logged for a request whose client left before its answer (nginx's convention). The
server sends nothing on a closed connection: only the request log and metrics ever see it."""

T = TypeVar("T")


class ClientDisconnected(Exception):
    """The client went away before its answer was ready."""


async def _until_disconnect(receive: Receive, inbox: asyncio.Queue[Message] | None = None) -> None:
    """Return when the client disconnects; pass any other message (request body) on to ``inbox``."""
    while True:
        message = await receive()
        if inbox is not None:
            inbox.put_nowait(message)
        if message["type"] == "http.disconnect":
            return


async def _stop(task: asyncio.Future[Any]) -> None:
    task.cancel()
    # Whatever it raises on its way out, its caller is gone: nobody is left to tell.
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


async def unless_disconnected(receive: Receive, work: Awaitable[T]) -> T:
    """``work``'s result, unless the client disconnects first: then ``work`` is cancelled and
    :class:`ClientDisconnected` raised. Only for a request whose body is read already or not needed:
    this reads the rest of it to see the disconnect."""
    job = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_until_disconnect(receive))
    try:
        await asyncio.wait((job, watch), return_when=asyncio.FIRST_COMPLETED)
        if job.done():
            return job.result()
        await _stop(job)
        raise ClientDisconnected
    finally:
        await _stop(watch)
        if not job.done():  # this call itself was cancelled
            await _stop(job)


class CancelOnDisconnect:
    """ASGI middleware: cancel an HTTP request's handler when its client disconnects before the
    answer is complete, and report the request as :data:`CLIENT_CLOSED_REQUEST` to the middleware
    outside this one."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        inbox: asyncio.Queue[Message] = asyncio.Queue()
        answered = False

        async def send_and_note(message: Message) -> None:
            nonlocal answered
            # Noted before sending: the server wakes the watcher as soon as the last part is sent.
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                answered = True
            await send(message)

        handler = asyncio.ensure_future(self._app(scope, inbox.get, send_and_note))
        watcher = asyncio.ensure_future(_until_disconnect(receive, inbox))
        try:
            await asyncio.wait((handler, watcher), return_when=asyncio.FIRST_COMPLETED)
            if handler.done() or answered:
                await handler  # its own outcome, exceptions included
                return
            await _stop(handler)
            await send({"type": "http.response.start", "status": CLIENT_CLOSED_REQUEST, "headers": []})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await _stop(watcher)
            if not handler.done():  # this middleware itself was cancelled (the server shutting down)
                await _stop(handler)
