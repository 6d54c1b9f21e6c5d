"""Reading a batch operation by operation, and which failures are retried for how long."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
from dramatiq.middleware import TimeLimitExceeded
from redis.exceptions import ConnectionError as RedisConnectionError

from stockzen_contracts import Code, ItemStatus, RawSyncBatch
from stockzen_sync_worker.entrypoints.retry_policy import is_transient, retry_when
from stockzen_sync_worker.services import apply_sync_batch, read_batch
from tests.support.memory_inventory import MemoryInventoryDatabase, MemoryResultCache
from tests.support.ops import create_product, movement


def _raw(tenant: uuid.UUID, operations: list[object]) -> RawSyncBatch:
    return RawSyncBatch.model_validate(
        {
            "requestId": "r-1",
            "tenantId": str(tenant),
            "userId": "u1",
            "receivedAt": datetime.now(UTC).isoformat(),
            "replyTo": "reply:test",
            "operations": operations,
        }
    )


async def test_one_operation_the_worker_cannot_read_is_refused_alone_and_the_answer_keeps_the_order() -> None:
    tenant, product = uuid.uuid4(), uuid.uuid4()
    unpadded = movement(tenant, product, "entry", 2)
    unpadded["modifiedAt"] = "999-01-01T00:00:00.000000Z"  # what an older gateway wrote for year 999
    ops: list[object] = [create_product(tenant, product), unpadded, "not an operation", movement(tenant, product)]
    read = read_batch(_raw(tenant, ops))
    assert sorted(read.unreadable) == [1, 2]
    assert read.unreadable[1].operation_id == uuid.UUID(unpadded["operationId"])
    assert len(read.command.operations) == 2

    database, cache = MemoryInventoryDatabase(), MemoryResultCache()
    outcome = await apply_sync_batch(read.command, "m-1", database, cache, unreadable=read.unreadable)
    results = outcome.applied.results
    assert [r.status for r in results] == [
        ItemStatus.APPLIED,
        ItemStatus.REJECTED,
        ItemStatus.REJECTED,
        ItemStatus.APPLIED,
    ]
    assert [r.code for r in results[1:3]] == [Code.VALIDATION_ERROR, Code.VALIDATION_ERROR]
    assert cache.replies["reply:test"] == [outcome.applied]
    assert database.tenants[tenant].levels[product] == 1


async def test_a_batch_of_nothing_readable_still_answers_the_gateway() -> None:
    tenant = uuid.uuid4()
    read = read_batch(_raw(tenant, [{"operationId": "x"}]))
    database, cache = MemoryInventoryDatabase(), MemoryResultCache()
    outcome = await apply_sync_batch(read.command, "m-1", database, cache, unreadable=read.unreadable)
    assert [r.status for r in outcome.applied.results] == [ItemStatus.REJECTED]
    assert outcome.applied.checkpoint == "0"
    assert cache.replies["reply:test"] == [outcome.applied]


def test_transient_failures_are_retried_without_end_and_others_a_few_times() -> None:
    should_retry = retry_when(max_retries=3)
    transient = [
        asyncpg.exceptions.ConnectionDoesNotExistError("gone"),
        asyncpg.exceptions.CannotConnectNowError("starting up"),
        asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.exceptions.DeadlockDetectedError("deadlock"),
        ConnectionRefusedError(111, "refused"),
        RedisConnectionError("redis away"),
        TimeoutError(),
        TimeLimitExceeded(),
    ]
    for exc in transient:
        assert is_transient(exc), exc
        assert should_retry(10_000, exc), exc
    bug = TypeError("a bug")
    assert not is_transient(bug)
    assert [should_retry(n, bug) for n in range(5)] == [True, True, True, False, False]
    assert not is_transient(asyncpg.exceptions.UndefinedColumnError("schema drift"))
