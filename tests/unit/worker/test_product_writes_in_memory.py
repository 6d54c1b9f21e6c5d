"""Batches with many product writes against the in-memory ledger (the same scenarios run against Postgres)."""

from __future__ import annotations

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
from tests.unit.worker.test_apply_batch_in_memory import harness  # noqa: F401 (the fixture the scenarios take)
