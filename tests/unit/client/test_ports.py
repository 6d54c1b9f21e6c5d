"""The engine runs on its ports: here the gateway is a plain object answering the ``Gateway`` protocol
(no HTTP at all) and the store the real SQLite one."""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stockzen_client import EngineSettings, SyncState
from stockzen_client.adapters.sse import ServerSentEvent
from stockzen_client.adapters.store import LocalStore
from stockzen_client.engine import SyncEngine
from stockzen_client.ports import Gateway, PushAnswer, Refused, SyncStore, Unauthorized, Unreachable
from stockzen_contracts import ChangeFeedPage, ItemResult, ItemStatus, SnapshotPage, SyncResponse, parse_operation

TENANT = uuid.uuid4()


class HandMadeGateway:
    """Takes batches of at most ``limit`` operations (a bigger one is refused, as the gateway's 413),
    applies each; or fails every request with ``failure``. Nothing to download."""

    def __init__(self, limit: int = 1000) -> None:
        self.limit = limit
        self.failure: Exception | None = None
        self.pushes: list[int] = []

    async def push(self, checkpoint: str | None, operations: Sequence[dict[str, Any]]) -> PushAnswer:
        self.pushes.append(len(operations))
        if self.failure is not None:
            raise self.failure
        if len(operations) > self.limit:
            raise Refused("too many operations", 413, "TOO_MANY_OPERATIONS")
        results = [
            ItemResult(operation_id=uuid.UUID(op["operationId"]), status=ItemStatus.APPLIED) for op in operations
        ]
        return PushAnswer(200, SyncResponse(checkpoint="1", server_time=datetime.now(UTC), results=results))

    async def changes(self, checkpoint: str | None) -> ChangeFeedPage:
        return ChangeFeedPage(checkpoint=checkpoint or "1", has_more=False, changes=[])

    async def snapshot(self, cursor: str | None) -> SnapshotPage:
        return SnapshotPage(checkpoint="1", items=[], next_cursor=None, total_products=0)

    async def live_events(self) -> AsyncGenerator[ServerSentEvent, None]:
        return
        yield  # an async generator that ends at once

    async def probe(self) -> bool:
        return self.failure is None


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def engine(tmp_path: Path, gateway: Gateway, clock: Clock | None = None, **settings: Any) -> SyncEngine:
    clock = clock or Clock()
    store: SyncStore = LocalStore(tmp_path / "store.sqlite3", clock=clock)
    return SyncEngine(store, gateway, settings=EngineSettings(live=False, **settings), clock=clock)


def queue(engine: SyncEngine, count: int) -> None:
    assert isinstance(engine.store, LocalStore)
    for _ in range(count):
        op = str(uuid.uuid4())
        engine.store.enqueue(
            parse_operation(
                {
                    "operationId": op, "idempotencyKey": op, "entityType": "product", "entityId": str(uuid.uuid4()),
                    "operationType": "create", "tenantId": str(TENANT), "modifiedAt": "2026-01-01T00:00:00Z",
                    "payload": {"name": "Mug"},
                }
            )
        )  # fmt: skip


async def test_a_batch_the_gateway_refuses_as_too_big_is_split_until_it_takes_it(tmp_path: Path) -> None:
    gateway = HandMadeGateway(limit=2)
    sync = engine(tmp_path, gateway, batch_size=5)
    queue(sync, 6)

    status = await sync.sync()

    assert (status.state, status.queued, status.failed) == (SyncState.UP_TO_DATE, 0, 0)
    assert gateway.pushes == [5, 2, 3, 1, 2, 1]  # the sixth goes in a batch of what the gateway took


async def test_no_answer_is_offline_and_a_refused_token_an_error(tmp_path: Path) -> None:
    gateway, clock = HandMadeGateway(), Clock()
    sync = engine(tmp_path, gateway, clock)
    queue(sync, 1)
    gateway.failure = Unreachable("no route to the server")
    assert (await sync.sync()).state is SyncState.OFFLINE
    clock.now += 600  # past the change's backoff
    gateway.failure = Unauthorized("the server refused the token (401)")
    assert (await sync.sync()).state is SyncState.ERROR
    assert sync.status.queued == 1
