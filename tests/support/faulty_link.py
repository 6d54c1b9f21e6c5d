"""An HTTP-aware faulty link: a reverse proxy on 127.0.0.1 in front of the gateway that misbehaves like
a bad mobile network, for real clients under chaos.

Every request is read whole (head and body, within bounds) and sent on to the gateway on a fresh
connection; the answer comes back on the client's connection, which then closes (each connection
carries one request, so a fault never leaves a half-read stream behind). For requests under ``/api/``
it draws, at the configured rates, one of:

- ``answer_dropped``: the request goes through, the server applies it and answers, and the answer is
  thrown away: the client's connection is reset instead (the worst case for exactly-once);
- ``reset``: the connection is reset before anything reaches the server;
- ``unavailable``: the link answers ``503 UNAVAILABLE`` with ``Retry-After`` itself;
- ``rate_limited``: the link answers ``429 RATE_LIMITED`` with ``Retry-After`` itself.

:meth:`FaultyLink.go_away` takes the whole link away for a while (every connection dropped, new ones
refused), and :meth:`FaultyLink.heal` ends every fault. Streams (``/api/sync/stream``) are passed
through as they come and are never answer-dropped; the app itself (``/app/``) and ``/healthz`` are
never faulted, only taken away with the link.

Each ``POST /api/sync`` that passes is recorded (:class:`Exchange`: who sent it, what it carried, what
the server answered, which fault hit it) so the chaos run can account for every operation a device
sent and every answer the server gave, including the answers the link threw away.

Bounded: heads of at most 64 KiB, bodies of at most 4 MiB, at most 256 connections at once, and
time limits on every read but a stream's. Only 127.0.0.1 is ever bound.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stockzen_contracts import STREAM_PATH, SYNC_PATH

LINK_FAULTS = ("answer_dropped", "reset", "unavailable", "rate_limited", "link_away")
"""Every fault the link makes, in the order reports list them."""

MAX_HEAD = 64 * 1024
MAX_BODY = 4 * 1024 * 1024
MAX_CONNECTIONS = 256
READ_TIMEOUT = 60.0  # a request's head and body, and a non-stream answer (the gateway answers in ~20 s at most)
CONNECT_TIMEOUT = 5.0
_HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-connection", b"te", b"upgrade", b"trailer"}


@dataclass(frozen=True)
class LinkRates:
    """The share of ``/api/`` requests each fault hits (together at most 1)."""

    answer_dropped: float = 0.0
    reset: float = 0.0
    unavailable: float = 0.0
    rate_limited: float = 0.0

    def __post_init__(self) -> None:
        shares = (self.answer_dropped, self.reset, self.unavailable, self.rate_limited)
        if any(s < 0 for s in shares) or sum(shares) > 1:
            raise ValueError(f"fault rates must be shares of requests: {self}")


@dataclass
class Exchange:
    """One ``POST /api/sync`` through the link: who sent it (the token's ``sub``), its operations, and
    the server's answer when it gave one (``status`` None: the server never saw the request)."""

    user: str | None
    operations: list[dict[str, Any]]
    fault: str | None = None
    status: int | None = None
    results: list[dict[str, Any]] = field(default_factory=list)


class _Refused(Exception):
    """The request cannot be read within the link's bounds."""


@dataclass
class _Request:
    method: str
    target: str
    headers: list[tuple[bytes, bytes]]
    body: bytes

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    def header(self, name: bytes) -> bytes | None:
        return next((v for k, v in self.headers if k.lower() == name), None)


class FaultyLink:
    """Listens on ``127.0.0.1:port`` and forwards to ``upstream`` (a host and port on this machine)."""

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        rates: LinkRates,
        *,
        port: int = 0,
        seed: int | None = None,
        retry_after_seconds: int = 1,
        on_exchange: Callable[[Exchange], None] | None = None,
    ) -> None:
        self._upstream = (upstream_host, upstream_port)
        self.rates = rates
        self.port = port
        self._random = random.Random(seed)
        self._retry_after = retry_after_seconds
        self._on_exchange = on_exchange
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._closed = False
        self.faults: Counter[str] = Counter()
        self.requests = 0
        self.exchanges: list[Exchange] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen (on ``port``, or a free one the first time)."""
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port or 0, limit=MAX_HEAD, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop for good: stop listening and drop every connection."""
        self._closed = True
        await self._drop_everything()

    def heal(self) -> None:
        """No more faults from now on (a link taken away comes back at the end of its outage)."""
        self.rates = LinkRates()

    async def go_away(self, seconds: float) -> None:
        """Take the link away for ``seconds``: every connection dropped, new ones refused; then back."""
        self.faults["link_away"] += 1
        await self._drop_everything()
        await asyncio.sleep(seconds)  # the outage itself, not a synchronisation
        if not self._closed:
            await self._listen_again()

    async def _drop_everything(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()  # each handler then ends on its own, its connections gone
        if self._handlers:
            _, stuck = await asyncio.wait(set(self._handlers), timeout=2.0)
            for task in stuck:
                task.cancel()
            await asyncio.gather(*stuck, return_exceptions=True)

    async def _listen_again(self) -> None:
        for _ in range(50):  # the port may be held for a moment by a connection that was just aborted
            try:
                await self.start()
                return
            except OSError:
                await asyncio.sleep(0.1)
        raise RuntimeError(f"the faulty link could not listen on 127.0.0.1:{self.port} again")

    # -- one connection, one request -------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._handlers) >= MAX_CONNECTIONS:
            writer.transport.abort()
            return
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        try:
            await self._serve(reader, writer)
        except (_Refused, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, OSError):
            writer.transport.abort()
        except TimeoutError:
            writer.transport.abort()
        except asyncio.CancelledError:  # the link was dropped; nothing awaits a connection's handler
            writer.transport.abort()
        finally:
            self._writers.discard(writer)
            self._handlers.discard(task)
            if not writer.transport.is_closing():
                writer.transport.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await asyncio.wait_for(_read_request(reader), READ_TIMEOUT)
        self.requests += 1
        is_sync = request.method == "POST" and request.path == SYNC_PATH
        is_stream = request.path == STREAM_PATH
        exchange = Exchange(_user(request), _operations(request)) if is_sync else None
        fault = self._draw(request.path, stream=is_stream)
        if exchange is not None:
            exchange.fault = fault
            self._record(exchange)
        if fault is not None:
            self.faults[fault] += 1
        if fault == "reset":
            writer.transport.abort()
            return
        if fault in ("unavailable", "rate_limited"):
            writer.write(self._refusal(fault))
            await writer.drain()
            return
        upstream_reader, upstream_writer = await asyncio.wait_for(
            asyncio.open_connection(*self._upstream, limit=MAX_HEAD), CONNECT_TIMEOUT
        )
        self._writers.add(upstream_writer)
        try:
            upstream_writer.write(_request_bytes(request))
            await upstream_writer.drain()
            head = await asyncio.wait_for(upstream_reader.readuntil(b"\r\n\r\n"), None if is_stream else READ_TIMEOUT)
            if is_stream:
                writer.write(_response_head(head))
                await writer.drain()
                while data := await upstream_reader.read(65536):
                    writer.write(data)
                    await writer.drain()
                return
            body = await asyncio.wait_for(_read_to_end(upstream_reader), READ_TIMEOUT)
            if exchange is not None:
                exchange.status, exchange.results = _answer(head, body)
            if fault == "answer_dropped":
                writer.transport.abort()  # applied and answered, but the answer never arrives
                return
            writer.write(_response_head(head) + body)
            await writer.drain()
        finally:
            self._writers.discard(upstream_writer)
            upstream_writer.transport.abort()

    def _draw(self, path: str, *, stream: bool) -> str | None:
        if not path.startswith("/api/"):
            return None
        rates = self.rates
        roll = self._random.random()
        for name, share in (
            ("answer_dropped", 0.0 if stream else rates.answer_dropped),
            ("reset", rates.reset),
            ("unavailable", rates.unavailable),
            ("rate_limited", rates.rate_limited),
        ):
            if roll < share:
                return name
            roll -= share
        return None

    def _refusal(self, fault: str) -> bytes:
        status, reason, code = (
            (503, "Service Unavailable", "UNAVAILABLE")
            if fault == "unavailable"
            else (429, "Too Many Requests", "RATE_LIMITED")
        )
        body = json.dumps({"code": code, "message": f"the faulty link says {code}: retry later"}).encode()
        return (
            f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            f"retry-after: {self._retry_after}\r\nconnection: close\r\n\r\n"
        ).encode() + body

    def _record(self, exchange: Exchange) -> None:
        self.exchanges.append(exchange)
        if self._on_exchange is not None:
            self._on_exchange(exchange)


async def _read_request(reader: asyncio.StreamReader) -> _Request:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    try:
        method, target, version = lines[0].decode("latin-1").split(" ")
    except ValueError:
        raise _Refused("not an HTTP request line") from None
    if not version.startswith("HTTP/1."):
        raise _Refused(f"not HTTP/1.x: {version}")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise _Refused("a header line without a colon")
        headers.append((name.strip(), value.strip()))
    request = _Request(method, target, headers, b"")
    if request.header(b"transfer-encoding") is not None:
        raise _Refused("chunked request bodies are not supported by the link")
    length = int(request.header(b"content-length") or b"0")
    if not 0 <= length <= MAX_BODY:
        raise _Refused(f"a body of {length} bytes is beyond the link's bound")
    request.body = await reader.readexactly(length)
    return request


def _request_bytes(request: _Request) -> bytes:
    """The request as the gateway gets it: the same, on a connection that closes after the answer."""
    lines = [f"{request.method} {request.target} HTTP/1.1".encode("latin-1")]
    lines += [name + b": " + value for name, value in request.headers if name.lower() not in _HOP_BY_HOP]
    lines.append(b"connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + request.body


def _response_head(head: bytes) -> bytes:
    """The gateway's answer head, saying the client's connection closes after it."""
    lines = head[:-4].split(b"\r\n")
    kept = [lines[0]] + [line for line in lines[1:] if line.partition(b":")[0].strip().lower() not in _HOP_BY_HOP]
    return b"\r\n".join([*kept, b"connection: close"]) + b"\r\n\r\n"


async def _read_to_end(reader: asyncio.StreamReader) -> bytes:
    """The rest of an answer on a connection that closes after it (bounded)."""
    body = bytearray()
    while data := await reader.read(65536):
        body.extend(data)
        if len(body) > MAX_BODY:
            raise _Refused("an answer beyond the link's bound")
    return bytes(body)


def _answer(head: bytes, body: bytes) -> tuple[int, list[dict[str, Any]]]:
    """The status of an answer and, for a 200 or 202, its results."""
    lines = head[:-4].split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines[1:])}
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = _dechunk(body)
    if status not in (200, 202):
        return status, []
    with contextlib.suppress(ValueError):
        answer = json.loads(body)
        if isinstance(answer, dict) and isinstance(answer.get("results"), list):
            return status, [r for r in answer["results"] if isinstance(r, dict)]
    return status, []


def _dechunk(body: bytes) -> bytes:
    out, rest = bytearray(), body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out.extend(rest[:size])
        rest = rest[size + 2 :]
    return bytes(out)


def _operations(request: _Request) -> list[dict[str, Any]]:
    with contextlib.suppress(ValueError):
        body = json.loads(request.body)
        if isinstance(body, dict) and isinstance(body.get("operations"), list):
            return [op for op in body["operations"] if isinstance(op, dict)]
    return []


def _user(request: _Request) -> str | None:
    """The ``sub`` of the request's bearer token (read, not verified: the gateway verifies it)."""
    authorization = (request.header(b"authorization") or b"").decode("latin-1")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or token.count(".") != 2:
        return None
    payload = token.split(".")[1]
    with contextlib.suppress(ValueError):
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        subject = claims.get("sub") if isinstance(claims, dict) else None
        if isinstance(subject, str):
            return subject
    return None
