"""The worker's service layer against in-memory fakes (the same scenarios run against Postgres too)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from stockzen_sync_worker.services import apply_sync_batch
from tests.support.apply_scenarios import (  # noqa: F401 (pytest collects the imported scenarios)
    T0,
    command,
    test_a_device_ahead_of_the_server_keeps_its_own_order_within_a_request,
    test_a_future_clock_is_clamped_to_when_the_server_received_the_change,
    test_a_movement_refused_by_the_ledger_is_rejected_alone,
    test_a_redelivered_message_gets_its_original_results_and_another_gets_duplicates,
    test_an_edit_or_movement_that_overtook_its_create_applies_once_the_create_lands,
    test_an_operation_id_reused_for_another_change_is_refused_and_the_same_change_stays_a_duplicate,
    test_checkpoints_count_the_changes,
    test_deletes_leave_tombstones_that_win,
    test_edits_merge_field_by_field,
    test_equal_times_are_settled_by_operation_id_whatever_the_arrival_order,
    test_equal_times_of_one_request_that_were_not_clamped_still_fall_to_the_operation_id,
    test_movements_build_the_stock_level_and_a_reused_movement_id_is_refused,
    test_movements_see_the_creates_and_deletes_before_them_in_their_request,
    test_one_item_refused_by_the_ledger_does_not_undo_the_others,
    test_the_same_operation_twice_in_one_batch_is_applied_once,
    test_what_does_not_exist_is_not_found,
)
from tests.support.memory_ledger import MemoryLedger, MemoryResultCache
from tests.support.ops import create_product, delete_product, movement


class MemoryHarness:
    def __init__(self) -> None:
        self.ledger = MemoryLedger()
        self.cache = MemoryResultCache()

    async def product(self, tenant_id: uuid.UUID, product_id: uuid.UUID) -> dict[str, Any] | None:
        data = self.ledger.tenants.get(tenant_id)
        return data.products.get(product_id) if data else None

    async def level(self, tenant_id: uuid.UUID, product_id: uuid.UUID) -> int | None:
        data = self.ledger.tenants.get(tenant_id)
        return data.levels.get(product_id) if data else None

    async def flush_cache(self) -> None:
        self.cache.flush()


@pytest.fixture
def harness() -> MemoryHarness:
    return MemoryHarness()


async def test_results_redis_knows_never_reach_postgres(harness: MemoryHarness) -> None:
    tenant, product = uuid.uuid4(), uuid.uuid4()
    batch = command(tenant, [create_product(tenant, product, "Mug", T0), movement(tenant, product)])
    first = await apply_sync_batch(batch, "m-1", harness.ledger, harness.cache)
    before = harness.ledger.transactions
    outcome = await apply_sync_batch(batch, "m-2", harness.ledger, harness.cache)
    assert harness.ledger.transactions == before  # answered from the cache, checkpoint included
    assert (outcome.cache_hits, outcome.ledger_hits) == (2, 0)
    assert outcome.applied.checkpoint == "2"
    assert harness.cache.replies["reply:test"] == [first.applied, outcome.applied]  # both answered the gateway


async def test_tombstones_are_purged_only_after_a_delete(harness: MemoryHarness) -> None:
    tenant, product = uuid.uuid4(), uuid.uuid4()
    await apply_sync_batch(
        command(tenant, [create_product(tenant, product, "Mug", T0)]), "m", harness.ledger, harness.cache
    )
    assert harness.ledger.purges == []
    await apply_sync_batch(command(tenant, [delete_product(tenant, product, T0)]), "m2", harness.ledger, harness.cache)
    assert harness.ledger.purges == [2]
