"""The sync actor run by a real dramatiq ``Worker`` on a ``StubBroker``, with in-memory adapters.

The broker carries the worker's own middleware (``add_worker_middleware``) and the actor is declared
by ``declare_actors``, as in production; only RabbitMQ, Postgres and Redis are replaced. Each test
reads its own metrics registry, so the counts are exact.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from dramatiq import Message, Worker
from dramatiq.brokers.stub import StubBroker
from prometheus_client import CollectorRegistry

from stockzen_contracts import APPLY_SYNC_BATCH_ACTOR, SyncBatchApplied
from stockzen_sync_worker.bootstrap import add_worker_middleware
from stockzen_sync_worker.config import WorkerSettings
from stockzen_sync_worker.entrypoints.actors import SyncBatchActor, declare_actors
from stockzen_sync_worker.metrics import WorkerMetrics
from stockzen_sync_worker.ports import InventoryDatabase, ResultCache
from tests.support.harness import T0, command
from tests.support.memory_inventory import MemoryInventoryDatabase, MemoryResultCache
from tests.support.ops import create_product, movement, update_product

ACTOR = {"actor_name": APPLY_SYNC_BATCH_ACTOR}


@dataclass
class FlakyAdapters:
    """The runtime's ``adapters()``: raises ``failures`` one per call, in order, then opens the fakes."""

    failures: Sequence[Exception] = ()
    database: MemoryInventoryDatabase = field(default_factory=MemoryInventoryDatabase)
    cache: MemoryResultCache = field(default_factory=MemoryResultCache)
    calls: int = 0

    async def __call__(self) -> tuple[InventoryDatabase, ResultCache]:
        self.calls += 1
        if self.calls <= len(self.failures):
            raise self.failures[self.calls - 1]
        return self.database, self.cache


@dataclass
class StubWorker:
    """A broker, its worker and the actor on it; ``send`` waits until the queue is done."""

    broker: StubBroker
    worker: Worker
    actor: SyncBatchActor
    registry: CollectorRegistry

    def send(self, body: Any) -> Message[None]:
        message = self.actor.send(body)
        self.broker.join(self.actor.queue_name, fail_fast=False, timeout=20_000)
        self.worker.join()
        return message

    def count(self, name: str, **labels: str) -> float:
        """The value of one series in this worker's registry (0 when it was never created)."""
        return self.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
def stub_worker() -> Iterator[Callable[[FlakyAdapters], StubWorker]]:
    started: list[StubWorker] = []

    def start(adapters: FlakyAdapters) -> StubWorker:
        settings = WorkerSettings(
            SYNC_QUEUE=f"sync-{uuid.uuid4().hex[:8]}",
            SYNC_MAX_RETRIES=2,
            SYNC_MIN_BACKOFF_MS=10,
            SYNC_MAX_BACKOFF_MS=20,
        )
        registry = CollectorRegistry()
        metrics = WorkerMetrics(registry)
        broker = StubBroker()
        add_worker_middleware(broker, metrics)
        actor = declare_actors(broker, settings, adapters, metrics)
        broker.emit_after("process_boot")
        worker = Worker(broker, worker_threads=1, worker_timeout=50)
        worker.start()
        started.append(StubWorker(broker, worker, actor, registry))
        return started[-1]

    yield start
    for running in started:
        running.worker.stop()
        running.broker.close()


def test_a_batch_is_applied_answered_and_counted(stub_worker: Callable[[FlakyAdapters], StubWorker]) -> None:
    adapters = FlakyAdapters()
    worker = stub_worker(adapters)
    tenant, product = uuid.uuid4(), uuid.uuid4()
    batch = command(
        tenant,
        [
            create_product(tenant, product, "Mug", T0),
            movement(tenant, product, "entry", 4),
            update_product(tenant, product, T0 - timedelta(minutes=1), name="older"),
        ],
    )
    worker.send(batch.to_wire())

    [applied] = adapters.cache.replies[batch.reply_to]
    assert isinstance(applied, SyncBatchApplied)
    assert applied.request_id == batch.request_id
    assert [r.status.value for r in applied.results] == ["applied", "applied", "conflict"]
    assert adapters.database.tenants[tenant].levels[product] == 4
    assert worker.count("stockzen_worker_operations_total", **_op("product", "create", "applied")) == 1
    assert worker.count("stockzen_worker_operations_total", **_op("stockMovement", "create", "applied")) == 1
    lost = _op("product", "update", "conflict", "CONFLICT_RESOLVED")
    assert worker.count("stockzen_worker_operations_total", **lost) == 1
    assert worker.count("stockzen_worker_lww_conflicts_total") == 1
    assert worker.count("stockzen_worker_batch_apply_seconds_count") == 1
    assert worker.count("stockzen_worker_dead_lettered_total", **ACTOR) == 0
    assert worker.broker.dead_letters == []

    # The same operations in another message are answered from the result cache, as duplicates.
    again = batch.model_copy(update={"request_id": "again"})
    worker.send(again.to_wire())
    assert [r.status.value for r in adapters.cache.replies[batch.reply_to][1].results] == ["duplicate"] * 3
    assert worker.count("stockzen_worker_dedupe_hits_total", source="redis") == 3
    assert worker.count("stockzen_worker_batch_apply_seconds_count") == 2


def test_operations_the_worker_cannot_read_are_rejected_and_counted_as_invalid(
    stub_worker: Callable[[FlakyAdapters], StubWorker],
) -> None:
    adapters = FlakyAdapters()
    worker = stub_worker(adapters)
    tenant, product = uuid.uuid4(), uuid.uuid4()
    body = command(tenant, [create_product(tenant, product, "Mug", T0)]).to_wire()
    body["operations"].append({"operationId": "not an operation"})
    worker.send(body)

    [applied] = adapters.cache.replies[body["replyTo"]]
    assert [(r.status.value, r.code) for r in applied.results][1] == ("rejected", "VALIDATION_ERROR")
    invalid = {"entity_type": "invalid", "operation_type": "invalid", "status": "rejected", "code": "VALIDATION_ERROR"}
    assert worker.count("stockzen_worker_operations_total", **invalid) == 1
    assert worker.count("stockzen_worker_dead_lettered_total", **ACTOR) == 0


def test_a_poison_message_is_dead_lettered_at_once_logged_and_counted(
    stub_worker: Callable[[FlakyAdapters], StubWorker], caplog: pytest.LogCaptureFixture
) -> None:
    adapters = FlakyAdapters()
    worker = stub_worker(adapters)
    with caplog.at_level(logging.ERROR, logger="stockzen_sync_worker.entrypoints.actors"):
        poison = worker.send({"not": "a batch"})

    [dead] = worker.broker.dead_letters
    assert (dead.message_id, dead.args) == (poison.message_id, ({"not": "a batch"},))
    assert dead.options.get("retries", 0) == 0  # refused on the first attempt, never retried
    assert adapters.calls == 0  # nothing was opened for it
    assert worker.count("stockzen_worker_dead_lettered_total", **ACTOR) == 1
    assert worker.count("stockzen_worker_batch_failures_total", kind="PoisonMessage") == 0
    assert worker.count("stockzen_worker_batch_apply_seconds_count") == 0
    assert "refusing a message that is not a valid sync batch" in caplog.messages


def test_a_transient_failure_is_retried_past_the_retry_limit_until_it_passes(
    stub_worker: Callable[[FlakyAdapters], StubWorker],
) -> None:
    away = [ConnectionRefusedError(111, "refused"), asyncpg.exceptions.CannotConnectNowError("starting up")] * 2
    adapters = FlakyAdapters(failures=away)  # four failures, twice the retry limit of 2
    worker = stub_worker(adapters)
    tenant, product = uuid.uuid4(), uuid.uuid4()
    batch = command(tenant, [create_product(tenant, product, "Mug", T0)])
    worker.send(batch.to_wire())

    assert adapters.calls == 5
    assert [r.status.value for r in adapters.cache.replies[batch.reply_to][0].results] == ["applied"]
    assert len(adapters.cache.replies[batch.reply_to]) == 1
    assert worker.broker.dead_letters == []
    for kind in ("ConnectionRefusedError", "CannotConnectNowError"):
        assert worker.count("stockzen_worker_batch_failures_total", kind=kind) == 2
        assert worker.count("stockzen_worker_database_errors_total", kind=kind) == 2
    assert worker.count("stockzen_worker_batch_apply_seconds_count") == 1
    assert worker.count("stockzen_worker_dead_lettered_total", **ACTOR) == 0


def test_a_failure_that_is_not_transient_is_retried_a_few_times_then_dead_lettered(
    stub_worker: Callable[[FlakyAdapters], StubWorker],
) -> None:
    adapters = FlakyAdapters(failures=[TypeError("a bug")] * 10)
    worker = stub_worker(adapters)
    tenant = uuid.uuid4()
    batch = command(tenant, [create_product(tenant, uuid.uuid4(), "Mug", T0)])
    sent = worker.send(batch.to_wire())

    assert adapters.calls == 3  # the first attempt and SYNC_MAX_RETRIES=2 retries
    [dead] = worker.broker.dead_letters
    assert dead.message_id == sent.message_id
    assert batch.reply_to not in adapters.cache.replies
    assert worker.count("stockzen_worker_batch_failures_total", kind="TypeError") == 3
    assert worker.count("stockzen_worker_database_errors_total", kind="TypeError") == 0
    assert worker.count("stockzen_worker_dead_lettered_total", **ACTOR) == 1


def _op(entity_type: str, operation_type: str, status: str, code: str = "") -> dict[str, str]:
    return {"entity_type": entity_type, "operation_type": operation_type, "status": status, "code": code}
