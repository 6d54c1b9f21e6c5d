"""Batches with many product writes against real Postgres and Redis (the same scenarios run in
memory), and the number of statements a batch costs whatever it holds."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from asyncpg.connection import LoggedQuery

from stockzen_platform.postgres import create_pool
from stockzen_sync_worker.adapters.inventory_database import PostgresInventoryDatabase
from stockzen_sync_worker.services import apply_sync_batch
from tests.support.harness import T0, command
from tests.support.memory_inventory import MemoryResultCache
from tests.support.ops import create_product, delete_product, movement, update_product
from tests.support.services import ServiceUrls


class StatementLog:
    """Every statement a connection sends, in order, but the pool's own."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def __call__(self, record: LoggedQuery) -> None:
        if not record.query.startswith("SELECT pg_advisory_unlock_all()"):  # the pool's reset on release
            self.statements.append(record.query)


@pytest.fixture
async def one_connection_pool(database: ServiceUrls) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database.app_url, min_size=1, max_size=1)
    yield pool
    await pool.close()


def _mixed_batch(tenant: uuid.UUID, products: int) -> list[dict[str, Any]]:
    """Creates, edits, movements and deletes of ``products`` products, several writes each."""
    ids = [uuid.uuid4() for _ in range(products)]
    ops = [create_product(tenant, p, "Mug", T0) for p in ids]
    ops += [movement(tenant, p, "entry", 3) for p in ids]
    ops += [update_product(tenant, p, T0 + timedelta(minutes=1), priceCents=5) for p in ids]
    ops += [update_product(tenant, uuid.uuid4(), T0, name="unknown")]
    ops += [movement(tenant, p, "exit", 1) for p in ids]
    ops += [delete_product(tenant, p, T0 + timedelta(minutes=2)) for p in ids[::3]]
    ops += [update_product(tenant, p, T0 + timedelta(minutes=3), name="edited") for p in ids]
    return ops


async def _statements_for_ops(pool: asyncpg.Pool, tenant: uuid.UUID, ops: list[dict[str, Any]]) -> list[str]:
    """The statements a message carrying ``ops`` costs, applied alone (one per round trip)."""
    log = StatementLog()
    async with pool.acquire() as connection:
        connection.add_query_logger(log)
    await apply_sync_batch(
        command(tenant, ops),
        uuid.uuid4().hex,
        PostgresInventoryDatabase(pool, tombstone_retention=timedelta(days=30)),
        MemoryResultCache(),
    )
    await asyncio.sleep(0)  # loggers are called soon after each statement
    async with pool.acquire() as connection:
        connection.remove_query_logger(log)
    return log.statements


async def _statements_for(pool: asyncpg.Pool, products: int) -> list[str]:
    tenant = uuid.uuid4()
    return await _statements_for_ops(pool, tenant, _mixed_batch(tenant, products))


async def test_a_batch_costs_the_same_statements_whatever_its_product_writes(one_connection_pool: asyncpg.Pool) -> None:
    await _statements_for(one_connection_pool, 1)  # the connection learns the types first
    small = await _statements_for(one_connection_pool, 2)
    large = await _statements_for(one_connection_pool, 40)
    assert len(large) == len(small), large
    # BEGIN with the tenant and its row, stored results, movements, product writes, results,
    # tombstone purge, checkpoint, COMMIT (no savepoint: the batch is alone in its transaction)
    assert len(small) == 8, small


async def test_a_message_of_one_operation_costs_six_round_trips(one_connection_pool: asyncpg.Pool) -> None:
    tenant, product = uuid.uuid4(), uuid.uuid4()
    await _statements_for(one_connection_pool, 1)  # the connection learns the types first
    messages = [
        [create_product(tenant, product, "Mug", T0)],
        [update_product(tenant, product, T0 + timedelta(minutes=1), name="Cup")],
        [movement(tenant, product, "entry", 2)],
    ]
    for ops in messages:
        statements = await _statements_for_ops(one_connection_pool, tenant, ops)
        # BEGIN with the tenant and its row, stored results, the write, its result, checkpoint, COMMIT
        assert len(statements) == 6, statements
        assert statements[0].startswith("BEGIN")
        assert statements[-1].startswith("COMMIT")
    deleted = await _statements_for_ops(one_connection_pool, tenant, [delete_product(tenant, product, T0)])
    assert len(deleted) == 7, deleted  # and the tombstone purge a delete brings
