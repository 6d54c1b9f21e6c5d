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
from stockzen_sync_worker.adapters.ledger import PostgresLedger
from stockzen_sync_worker.services import apply_sync_batch
from tests.integration.worker.test_apply_batch_postgres import (  # noqa: F401 (the fixtures the scenarios take)
    PostgresHarness,
    harness,
    redis_client,
)
from tests.support.apply_scenarios import T0, command
from tests.support.memory_ledger import MemoryResultCache
from tests.support.ops import create_product, delete_product, movement, update_product
from tests.support.product_write_scenarios import (  # noqa: F401 (pytest collects the imported scenarios)
    test_a_batch_of_many_products_each_written_several_times,
    test_a_movement_id_taken_later_in_the_batch_does_not_explain_an_earlier_refusal,
    test_a_refused_product_write_falls_back_to_item_by_item,
    test_an_edit_of_an_unknown_product_waits_while_the_others_apply,
    test_an_operation_repeated_after_its_create_lands_applies_like_one_at_a_time,
    test_creates_edits_deletes_and_movements_interleaved_in_one_batch,
    test_several_writes_of_one_product_in_one_batch_each_see_the_ones_before,
    test_ties_within_one_request_fall_to_request_order_when_clamped_else_to_operation_id,
)
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


async def _statements_for(pool: asyncpg.Pool, products: int) -> list[str]:
    tenant = uuid.uuid4()
    ops = _mixed_batch(tenant, products)
    log = StatementLog()
    async with pool.acquire() as connection:
        connection.add_query_logger(log)
    await apply_sync_batch(
        command(tenant, ops),
        uuid.uuid4().hex,
        PostgresLedger(pool, tombstone_retention=timedelta(days=30)),
        MemoryResultCache(),
    )
    await asyncio.sleep(0)  # loggers are called soon after each statement
    async with pool.acquire() as connection:
        connection.remove_query_logger(log)
    return log.statements


async def test_a_batch_costs_the_same_statements_whatever_its_product_writes(one_connection_pool: asyncpg.Pool) -> None:
    await _statements_for(one_connection_pool, 1)  # the connection learns the types first
    small = await _statements_for(one_connection_pool, 2)
    large = await _statements_for(one_connection_pool, 40)
    assert len(large) == len(small), large
    # BEGIN, tenant, tenant row, stored results, SAVEPOINT, movements, product writes, results,
    # tombstone purge, RELEASE, checkpoint, COMMIT
    assert len(small) == 12, small
