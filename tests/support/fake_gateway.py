"""An in-memory StockZen server for the client's unit tests and simulation: a fake, not a mock.

It follows the sync contract by running the worker's own service layer (``apply_sync_batch``) over
the in-memory ledger, answers the change feed from the same data, and lets a test take a device's
connection away, make the server fail or rate-limit, and hold batches back as ``pending``. Its live
stream says ``ready`` when opened and announces what the test tells it to; the test can drop it.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import httpx

from stockzen_contracts import (
    CHANGES_PATH,
    HEALTH_PATH,
    STREAM_PATH,
    SYNC_PATH,
    ApplySyncBatch,
    Change,
    ChangeFeedPage,
    Code,
    InvalidOperation,
    ItemResult,
    Operation,
    StreamEvent,
    SyncResponse,
    parse_operation,
)
from stockzen_contracts.payloads import StockMovementState
from stockzen_sync_worker.services import apply_sync_batch
from tests.support.memory_inventory import (
    MemoryInventoryDatabase,
    MemoryResultCache,
    MemoryTenantTransaction,
    TenantData,
)

SERVER_URL = "http://stockzen.test"


@dataclass
class FakeGateway:
    """One tenant's server. ``reachable[device]`` cuts a device off; ``failures`` scripts whole-request
    answers (e.g. 503); ``pending_rate`` holds that share of batches back (202, applied later);
    ``accepted_token``, when set, is the only bearer token it takes (any other gets 401, as an expired one);
    ``max_operations``, when set, refuses a bigger batch with ``413 TOO_MANY_OPERATIONS`` (as the gateway's
    ``SYNC_MAX_OPERATIONS`` does)."""

    tenant_id: UUID
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    pending_rate: float = 0.0
    feed_page_size: int = 1000
    reachable: dict[str, bool] = field(default_factory=dict)
    failures: list[httpx.Response] = field(default_factory=list)
    reset_next_pull: bool = False
    held_back: list[ApplySyncBatch] = field(default_factory=list)
    held_back_total: int = 0
    pushes: list[list[dict[str, Any]]] = field(default_factory=list)  # the batches it took
    refused_pushes: list[int] = field(default_factory=list)  # the size of each batch refused as too big
    requests: list[tuple[str, str]] = field(default_factory=list)  # (device, path), reachable or not
    streams: list[FakeStream] = field(default_factory=list)
    stream_failures: list[httpx.Response] = field(default_factory=list)
    database: MemoryInventoryDatabase = field(default_factory=MemoryInventoryDatabase)
    cache: MemoryResultCache = field(default_factory=MemoryResultCache)
    accepted_token: str | None = None
    max_operations: int | None = None
    tokens_seen: list[str] = field(default_factory=list)  # the bearer token of each request after /healthz

    def transport(self, device: str = "device") -> httpx.MockTransport:
        """The transport a device's client talks through."""
        self.reachable.setdefault(device, True)

        async def handle(request: httpx.Request) -> httpx.Response:
            self.requests.append((device, request.url.path))
            if not self.reachable[device]:
                raise httpx.ConnectError("connection refused", request=request)
            return await self.handle(request)

        return httpx.MockTransport(handle)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == HEALTH_PATH:
            return httpx.Response(200, json={"status": "ok"})
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        self.tokens_seen.append(token)
        if self.accepted_token is not None and token != self.accepted_token:
            return _error(401, Code.UNAUTHORIZED, "the bearer token is invalid or expired")
        if request.url.path == STREAM_PATH:  # before ``failures``, which script pushes and pulls
            return self._stream()
        if self.failures:
            return self.failures.pop(0)
        if request.url.path == SYNC_PATH and request.method == "POST":
            body = json.loads(request.content)
            if self.max_operations is not None and len(body["operations"]) > self.max_operations:
                self.refused_pushes.append(len(body["operations"]))
                return _error(413, Code.TOO_MANY_OPERATIONS, f"at most {self.max_operations} operations")
            return await self._push(body)
        if request.url.path == CHANGES_PATH:
            return self._pull(request.url.params.get("checkpoint"), int(request.url.params.get("limit", "100")))
        return _error(404, Code.NOT_FOUND, "no such route")

    def requested(self, device: str, path: str) -> int:
        """How many requests for ``path`` the device made."""
        return self.requests.count((device, path))

    @property
    def open_streams(self) -> list[FakeStream]:
        """The live streams a client still reads."""
        return [stream for stream in self.streams if stream.open]

    def announce(self) -> None:
        """Tell every open stream that the tenant's changes committed (the current checkpoint)."""
        for stream in self.open_streams:
            stream.send(StreamEvent.CHECKPOINT, {"checkpoint": str(self.data.checkpoint)})

    def drop_streams(self) -> None:
        """Break every open stream, as a lost connection does."""
        for stream in self.open_streams:
            stream.drop()

    def _stream(self) -> httpx.Response:
        if self.stream_failures:
            return self.stream_failures.pop(0)
        stream = FakeStream()
        self.streams.append(stream)
        stream.send(StreamEvent.READY, {})
        return httpx.Response(200, headers={"Content-Type": "text/event-stream"}, stream=stream)

    async def deliver_held_back(self) -> None:
        """The queue catches up: every held-back batch is applied (at most once, as always)."""
        batches, self.held_back = self.held_back, []
        for batch in batches:
            await apply_sync_batch(batch, uuid.uuid4().hex, self.database, self.cache)

    async def _push(self, body: dict[str, Any]) -> httpx.Response:
        raw_operations = body["operations"]
        self.pushes.append(raw_operations)
        results: list[ItemResult | None] = []
        valid: list[Operation] = []
        for raw in raw_operations:
            try:
                operation = parse_operation(raw)
            except InvalidOperation as exc:
                results.append(ItemResult.rejected(exc.operation_id, Code.VALIDATION_ERROR, exc.message))
                continue
            if operation.tenant_id != self.tenant_id:
                results.append(ItemResult.rejected(operation.operation_id, Code.TENANT_MISMATCH, "wrong tenant"))
                continue
            results.append(None)
            valid.append(operation)
        status_code = 200
        if valid:
            batch = ApplySyncBatch(
                request_id=uuid.uuid4().hex,
                tenant_id=self.tenant_id,
                user_id="user",
                received_at=datetime.now(UTC),
                reply_to="reply",
                operations=valid,
            )
            if self.rng.random() < self.pending_rate:
                self.held_back.append(batch)
                self.held_back_total += 1
                applied = [ItemResult.pending(op.operation_id) for op in valid]
                status_code = 202
            else:
                applied = (await apply_sync_batch(batch, uuid.uuid4().hex, self.database, self.cache)).applied.results
            answers = iter(applied)
            results = [r if r is not None else next(answers) for r in results]
        response = SyncResponse(
            checkpoint=str(self.data.checkpoint), server_time=datetime.now(UTC), results=[r for r in results if r]
        )
        return httpx.Response(status_code, json=response.to_wire())

    def _pull(self, since: str | None, limit: int) -> httpx.Response:
        if self.reset_next_pull:
            self.reset_next_pull = False
            return _error(409, Code.RESET_REQUIRED, "the checkpoint is too old")
        after = int(since) if since else 0
        changes = sorted(self.changes_after(after), key=lambda c: int(c.checkpoint))
        page = changes[: min(limit, self.feed_page_size)]
        checkpoint = page[-1].checkpoint if page else str(max(after, self.data.checkpoint))
        answer = ChangeFeedPage(checkpoint=checkpoint, has_more=len(changes) > len(page), changes=page)
        return httpx.Response(200, json=answer.to_wire())

    @property
    def data(self) -> TenantData:
        return self.database.tenants.get(self.tenant_id, TenantData())

    def changes_after(self, after: int) -> list[Change]:
        """Every product (current state) and movement with a checkpoint after ``after``."""
        tenant = MemoryTenantTransaction(self.data, [])
        products = [
            Change.of_product(tenant._state(row))
            for row in self.data.products.values()
            if row.get("checkpoint", 0) > after
        ]
        movements = [
            Change.of_movement(m["state"])
            for m in self.data.movements.values()
            if isinstance(m.get("state"), StockMovementState) and int(m["state"].checkpoint) > after
        ]
        return products + movements

    def products(self) -> dict[UUID, dict[str, Any]]:
        """Live products: their fields and stock level, as the server holds them."""
        data = self.data
        tenant = MemoryTenantTransaction(data, [])
        live = {}
        for product_id, row in data.products.items():
            state = tenant._state(row)
            if not state.deleted:
                fields = state.model_dump(by_alias=False, exclude={"modified_at", "checkpoint", "deleted", "id"})
                live[product_id] = {**fields, "stock_level": data.levels.get(product_id, 0)}
        return live


class FakeStream(httpx.AsyncByteStream):
    """One client's ``GET /api/sync/stream`` body: the text the test sends, until it ends or drops it."""

    def __init__(self) -> None:
        self._chunks: asyncio.Queue[bytes | Exception | None] = asyncio.Queue()
        self.ended = False  # the server ended it (``end``) or broke it (``drop``)
        self.closed = False  # the client closed it

    @property
    def open(self) -> bool:
        return not (self.ended or self.closed)

    @property
    def drained(self) -> bool:
        """Whether the client has read everything sent so far."""
        return self._chunks.empty()

    def send(self, kind: str, data: dict[str, str]) -> None:
        """An event, written as the gateway writes it."""
        self.write(f"event: {kind}\ndata: {json.dumps(data)}\n\n")

    def write(self, text: str) -> None:
        """Raw stream text (a heartbeat comment, a half event)."""
        self._chunks.put_nowait(text.encode())

    def end(self) -> None:
        """The server ends the stream cleanly (as the gateway does after its maximum time)."""
        self.ended = True
        self._chunks.put_nowait(None)

    def drop(self) -> None:
        """The connection breaks mid-stream."""
        self.ended = True
        self._chunks.put_nowait(httpx.ReadError("connection reset by peer"))

    def __aiter__(self) -> FakeStream:
        return self

    async def __anext__(self) -> bytes:
        chunk = await self._chunks.get()
        if chunk is None:
            raise StopAsyncIteration
        if isinstance(chunk, Exception):
            raise chunk
        return chunk

    async def aclose(self) -> None:
        self.closed = True


def _error(status: int, code: Code, message: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json={"code": code.value, "message": message}, headers=headers)


def failure(status: int, code: Code, message: str = "failing", retry_after: int | None = None) -> httpx.Response:
    """A whole-request failure for :attr:`FakeGateway.failures`."""
    return _error(status, code, message, {"Retry-After": str(retry_after)} if retry_after is not None else None)
