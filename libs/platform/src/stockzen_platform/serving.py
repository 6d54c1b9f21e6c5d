"""How the web services serve HTTP: uvicorn (uvloop, httptools) with read deadlines, a connection cap
and a keep-alive timeout taken from the settings. Needs the ``http`` extra.

Uvicorn has a keep-alive timeout but no deadline for reading a request: a client that sends a request
line and one header, then nothing (slowloris), or a body a byte now and then, holds its connection
for ever. :class:`ReadDeadlineProtocol` adds the two deadlines. It is written here because neither
uvicorn nor httptools offers them (uvicorn 0.54: ``timeout_keep_alive`` only starts after a response);
a proxy in front (nginx's ``client_header_timeout`` / ``client_body_timeout``) is still the first line.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, ClassVar

import uvicorn
from pydantic import Field
from pydantic_settings import BaseSettings
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

STARTUP_FAILURE = 3
"""The exit status when the server could not start (uvicorn's own, e.g. the port is taken)."""


class HttpServerSettings(BaseSettings):
    """The settings every web service's server reads (each service's settings class inherits them)."""

    http_header_timeout_seconds: float = Field(default=10.0, gt=0, le=300, alias="HTTP_HEADER_TIMEOUT_SECONDS")
    http_body_timeout_seconds: float = Field(default=30.0, gt=0, le=600, alias="HTTP_BODY_TIMEOUT_SECONDS")
    http_keepalive_seconds: int = Field(default=5, ge=1, le=600, alias="HTTP_KEEPALIVE_SECONDS")
    http_max_connections: int = Field(default=2048, ge=16, alias="HTTP_MAX_CONNECTIONS")

    @property
    def read_deadlines(self) -> ReadDeadlines:
        """The request read deadlines these settings describe."""
        return ReadDeadlines(self.http_header_timeout_seconds, self.http_body_timeout_seconds)


@dataclass(frozen=True, slots=True)
class ReadDeadlines:
    """``headers``: from a connection's opening (or a request's first byte) to the end of its headers,
    in all. ``body``: the longest silence between two pieces of a body, so a slow but steady upload
    is never cut (its size is bounded by the route, the number of such connections by the cap)."""

    headers: float
    body: float


class ReadDeadlineProtocol(HttpToolsProtocol):
    """Uvicorn's httptools protocol that closes a connection whose client stops sending a request
    half-way. Subclass with the deadlines set (:func:`protocol_with`); one timer per connection."""

    deadlines: ClassVar[ReadDeadlines] = ReadDeadlines(10.0, 30.0)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.deadlines.headers)  # a connection that never sends a byte counts too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._read_timer is None:  # the next request on a kept-alive connection
            self._arm(self.deadlines.headers)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm(self.deadlines.body)

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._arm(self.deadlines.body)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._read_timer = self.loop.call_later(seconds, self._read_timed_out, seconds)

    def _disarm(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _read_timed_out(self, seconds: float) -> None:
        self._read_timer = None
        if self.transport.is_closing():
            return
        if self._server_holds_back():
            self._arm(seconds)  # the client is waiting for us, not the other way round
            return
        self.transport.close()  # the app, if any, sees http.disconnect

    def _server_holds_back(self) -> bool:
        # Reading paused (the app has not taken the body yet, or a pipelined request waits its
        # turn), or a client that sent "Expect: 100-continue" waiting for our go-ahead.
        waiting_for_continue = self.cycle is not None and self.cycle.waiting_for_100_continue
        return bool(self.flow is not None and self.flow.read_paused) or waiting_for_continue


def protocol_with(deadlines: ReadDeadlines) -> type[ReadDeadlineProtocol]:
    """A :class:`ReadDeadlineProtocol` class with ``deadlines`` (uvicorn builds one per connection)."""
    return type("ReadDeadlineProtocol", (ReadDeadlineProtocol,), {"deadlines": deadlines})


def server_config(app: Any, *, host: str, port: int, settings: HttpServerSettings, **options: Any) -> uvicorn.Config:
    """Uvicorn's configuration for ``app``: uvloop and httptools (named, not "auto", so a missing one
    fails loudly), the read deadlines, the keep-alive timeout and the connection cap of ``settings``.

    Over ``HTTP_MAX_CONNECTIONS`` open connections (idle kept-alive ones and live streams included),
    uvicorn answers new requests ``503`` at once rather than queueing them.
    """
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        loop="uvloop",
        http=protocol_with(settings.read_deadlines),
        timeout_keep_alive=settings.http_keepalive_seconds,
        limit_concurrency=settings.http_max_connections,
        **options,
    )
