"""What only the in-memory fakes can show: how many transactions a batch took, when purges ran.

The scenarios every ledger must pass run in memory too, in ``tests/integration/worker/test_apply_batch.py``.
"""

from __future__ import annotations

import uuid

import pytest

from stockzen_sync_worker.services import apply_sync_batch
from tests.support.harness import T0, MemoryHarness, command
from tests.support.ops import create_product, delete_product, movement


@pytest.fixture
def harness() -> MemoryHarness:
    """A fresh in-memory ledger and result cache."""
    return MemoryHarness()


async def test_results_redis_knows_never_reach_postgres(harness: MemoryHarness) -> None:
    tenant, product = uuid.uuid4(), uuid.uuid4()
    batch = command(tenant, [create_product(tenant, product, "Mug", T0), movement(tenant, product)])
    first = await apply_sync_batch(batch, "m-1", harness.database, harness.cache)
    before = harness.database.transactions
    outcome = await apply_sync_batch(batch, "m-2", harness.database, harness.cache)
    assert harness.database.transactions == before  # answered from the cache, checkpoint included
    assert (outcome.cache_hits, outcome.database_hits) == (2, 0)
    assert outcome.applied.checkpoint == "2"
    assert harness.cache.replies["reply:test"] == [first.applied, outcome.applied]  # both answered the gateway


async def test_tombstones_are_purged_only_after_a_delete(harness: MemoryHarness) -> None:
    tenant, product = uuid.uuid4(), uuid.uuid4()
    await apply_sync_batch(
        command(tenant, [create_product(tenant, product, "Mug", T0)]), "m", harness.database, harness.cache
    )
    assert harness.database.purges == []
    await apply_sync_batch(
        command(tenant, [delete_product(tenant, product, T0)]), "m2", harness.database, harness.cache
    )
    assert harness.database.purges == [2]
