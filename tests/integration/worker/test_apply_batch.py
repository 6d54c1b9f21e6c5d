"""Scenarios of the worker's service layer, each run in memory and against Postgres and Redis.

The one ``harness`` fixture is parametrised over both kinds, so a scenario written here cannot be
left out of either. The ``memory`` runs need no service (``-k memory`` runs them alone); they sit
beside the ``postgres`` runs rather than in the unit tier because splitting them would take two
lists of the same scenarios again.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from stockzen_contracts import Code, ItemStatus, parse_operation
from stockzen_sync_worker.services import apply_sync_batch
from tests.support.harness import T0, TOMBSTONE_RETENTION, Harness, apply, command, statuses
from tests.support.ops import create_product, delete_product, movement, op, update_product


async def test_edits_merge_field_by_field(harness: Harness) -> None:
    tenant, product = uuid.uuid4(), uuid.uuid4()
    await apply(harness, tenant, [create_product(tenant, product, "Mug", T0, priceCents=100)])
    price_later = update_product(tenant, product, T0 + timedelta(minutes=2), priceCents=250)
    name_earlier = update_product(tenant, product, T0 + timedelta(minutes=1), name="Big mug")
    price_earlier = update_product(tenant, product, T0 + timedelta(minutes=1), priceCents=175)
    both = update_product(tenant, product, T0 + timedelta(seconds=90), name="Huge mug", priceCents=300)
    outcome = await apply(harness, tenant, [price_later, name_earlier, price_earlier, both])

    assert statuses(outcome) == ["applied", "applied", "conflict", "conflict"]
    lost, partial = outcome.applied.results[2], outcome.applied.results[3]
    assert lost.code is Code.CONFLICT_RESOLVED
    assert lost.server_state is not None
    assert lost.server_state.price_cents == 250
    assert partial.message is not None
    assert "priceCents" in partial.message
    assert "other changes were applied" in partial.message
    assert partial.server_state is not None
    assert (partial.server_state.name, partial.server_state.price_cents) == (
        "Huge mug",
        250,
    )
    row = await harness.product(tenant, product)
    assert row is not None
    assert (row["name"], row["price_cents"]) == ("Huge mug", 250)


async def test_equal_times_are_settled_by_operation_id_whatever_the_arrival_order(harness: Harness) -> None:
    tenant, product = uuid.uuid4(), uuid.uuid4()
    await apply(harness, tenant, [create_product(tenant, product, "Mug", T0)])
    low, high = sorted([uuid.uuid4(), uuid.uuid4()])
    when = T0 + timedelta(minutes=5)
    from_high = op(
        tenant, "product", "update", {"name": "high"}, entity_id=product, modified_at=when, operation_id=high
    )
    from_low = op(tenant, "product", "update", {"name": "low"}, entity_id=product, modified_at=when, operation_id=low)
    assert statuses(await apply(harness, tenant, [from_high])) == ["applied"]
    assert statuses(await apply(harness, tenant, [from_low])) == ["conflict"]
    row = await harness.product(tenant, product)
    assert row is not None
    assert row["name"] == "high"


async def test_a_future_clock_is_clamped_to_when_the_server_received_the_change(harness: Harness) -> None:
    tenant, product = uuid.uuid4(), uuid.uuid4()
    await apply(harness, tenant, [create_product(tenant, product, "Mug", T0)])
    received = T0 + timedelta(hours=1)
    future = update_product(tenant, product, datetime(2099, 1, 1, tzinfo=UTC), name="from the future")
    await apply(harness, tenant, [future], received_at=received)
    real = update_product(tenant, product, received + timedelta(seconds=1), name="real")
    assert statuses(await apply(harness, tenant, [real], received_at=received + timedelta(seconds=2))) == ["applied"]
    row = await harness.product(tenant, product)
    assert row is not None
    assert row["name"] == "real"


async def test_deletes_leave_tombstones_that_win(harness: Harness) -> None:
    tenant, product, early = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    outcome = await apply(
        harness,
        tenant,
        [
            create_product(tenant, product, "Mug", T0),
            delete_product(tenant, product, T0 + timedelta(minutes=1)),
            update_product(tenant, product, T0 + timedelta(minutes=5), name="edited later"),
            delete_product(tenant, product, T0 + timedelta(minutes=6)),
            # A delete that overtook its create: the tombstone comes first and still wins.
            delete_product(tenant, early, T0 + timedelta(minutes=2)),
            create_product(tenant, early, "Too late", T0 + timedelta(minutes=1)),
        ],
    )
    assert statuses(outcome) == ["applied", "applied", "conflict", "applied", "applied", "conflict"]
    assert outcome.applied.results[2].server_state is not None
    assert outcome.applied.results[2].server_state.deleted
    for gone in (product, early):
        row = await harness.product(tenant, gone)
        assert row is not None
        assert row["deleted"]


async def test_what_does_not_exist_is_not_found(harness: Harness) -> None:
    tenant, product, deleted = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await apply(harness, tenant, [create_product(tenant, deleted, "Old", T0), delete_product(tenant, deleted, T0)])
    outcome = await apply(
        harness,
        tenant,
        [update_product(tenant, product, T0, name="x"), movement(tenant, product), movement(tenant, deleted)],
    )
    assert [(r.status, r.code) for r in outcome.applied.results] == [(ItemStatus.REJECTED, Code.NOT_FOUND)] * 3
    # Never seen: its create may be late, so retry. Deleted: final.
    assert [r.retryable for r in outcome.applied.results] == [True, True, False]


async def test_a_change_for_a_product_whose_tombstone_was_purged_gets_a_final_answer(harness: Harness) -> None:
    """Not the retryable NOT_FOUND of a product never seen: its client would retry it forever."""
    tenant, gone, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await apply(
        harness,
        tenant,
        [
            create_product(tenant, gone, "Old mug", T0),
            movement(tenant, gone, "entry", 3),
            delete_product(tenant, gone, T0 + timedelta(minutes=1)),
        ],
    )
    await harness.age_tombstone(tenant, gone, TOMBSTONE_RETENTION + timedelta(hours=1))
    # The tenant's next delete purges the expired tombstone.
    purging = await apply(
        harness, tenant, [create_product(tenant, other, "Cup", T0), delete_product(tenant, other, T0)]
    )
    assert await harness.product(tenant, gone) is None

    later = T0 + timedelta(days=40)
    edit = update_product(tenant, gone, later, priceCents=250)
    sale = movement(tenant, gone, "exit", 1)
    late_create = create_product(tenant, gone, "Old mug again", later)
    delete_again = delete_product(tenant, gone, later)
    outcome = await apply(harness, tenant, [edit, sale, late_create, delete_again])

    results = outcome.applied.results
    assert [(r.status, r.code, r.retryable) for r in results] == [
        (ItemStatus.REJECTED, Code.NOT_FOUND, False),  # final: the product was deleted
        (ItemStatus.REJECTED, Code.NOT_FOUND, False),
        (ItemStatus.CONFLICT, Code.CONFLICT_RESOLVED, False),  # as a create on a tombstone: deletes win
        (ItemStatus.APPLIED, None, None),  # as deleting a tombstone: nothing changes
    ]
    tombstone = results[2].server_state
    assert tombstone is not None
    assert (tombstone.id, tombstone.deleted) == (gone, True)
    assert outcome.applied.checkpoint == purging.applied.checkpoint  # nothing was written
    assert await harness.product(tenant, gone) is None  # nothing came back
    assert await harness.level(tenant, gone) == 3

    # Stored: a retry gets the same answers, from Redis and from Postgres alone.
    for flushed in (False, True):
        if flushed:
            await harness.flush_cache()
        again = await apply(harness, tenant, [edit, sale, late_create, delete_again])
        assert statuses(again) == ["rejected", "rejected", "duplicate", "duplicate"]
        assert [r.retryable for r in again.applied.results[:2]] == [False, False]

    # A late create with a sale after it in one batch: the sale meets the tombstone too.
    create_then_sell = await apply(
        harness, tenant, [create_product(tenant, gone, "Again", later), movement(tenant, gone, "exit", 2)]
    )
    assert [(r.status, r.code, r.retryable) for r in create_then_sell.applied.results] == [
        (ItemStatus.CONFLICT, Code.CONFLICT_RESOLVED, False),
        (ItemStatus.REJECTED, Code.NOT_FOUND, False),
    ]
    assert await harness.product(tenant, gone) is None
    assert await harness.level(tenant, gone) == 3

    # Item by item too (a movement the ledger refuses sends its batch down the slow path).
    live = uuid.uuid4()
    refused = parse_operation(movement(tenant, live, "entry", 1, reason="fine"))
    refused.payload.__dict__["reason"] = "x" * 600
    slow = command(
        tenant,
        [
            create_product(tenant, live, "Live", later),
            update_product(tenant, gone, later, name="x"),
            movement(tenant, gone, "entry", 1),
            create_product(tenant, gone, "Again", later),
        ],
    )
    slow = slow.model_copy(update={"operations": [slow.operations[0], refused, *slow.operations[1:]]})
    one_by_one = await apply_sync_batch(slow, "m-slow", harness.database, harness.cache)
    assert [(r.status, r.code, r.retryable) for r in one_by_one.applied.results] == [
        (ItemStatus.APPLIED, None, None),
        (ItemStatus.REJECTED, Code.VALIDATION_ERROR, False),
        (ItemStatus.REJECTED, Code.NOT_FOUND, False),
        (ItemStatus.REJECTED, Code.NOT_FOUND, False),
        (ItemStatus.CONFLICT, Code.CONFLICT_RESOLVED, False),
    ]
    assert await harness.product(tenant, gone) is None


async def test_a_duplicate_of_a_conflict_carries_the_product_as_it_stands_now(harness: Harness) -> None:
    """Not as it stood when the conflict was settled: a device retrying after a lost answer may have
    pulled newer states since (a tombstone even), and puts the answer's state over what it holds."""
    tenant, product = uuid.uuid4(), uuid.uuid4()
    await apply(harness, tenant, [create_product(tenant, product, "Mug", T0)])
    await apply(harness, tenant, [update_product(tenant, product, T0 + timedelta(minutes=2), name="Winner")])
    loser = update_product(tenant, product, T0 + timedelta(minutes=1), name="Loser")
    first = await apply(harness, tenant, [loser], message_id="m-first")
    (conflict,) = first.applied.results
    assert conflict.status is ItemStatus.CONFLICT
    assert conflict.server_state is not None
    assert (conflict.server_state.name, conflict.server_state.deleted) == ("Winner", False)

    await apply(harness, tenant, [update_product(tenant, product, T0 + timedelta(minutes=3), priceCents=5)])
    renamed = await apply(harness, tenant, [loser])  # answered from Redis
    (again,) = renamed.applied.results
    assert (again.status, again.code) == (ItemStatus.DUPLICATE, Code.CONFLICT_RESOLVED)
    assert again.server_state is not None
    assert (again.server_state.name, again.server_state.price_cents) == ("Winner", 5)
    assert again.server_state.checkpoint == renamed.applied.checkpoint

    await apply(harness, tenant, [delete_product(tenant, product, T0 + timedelta(minutes=4))])
    for flushed in (False, True):  # from Redis, then from Postgres alone
        if flushed:
            await harness.flush_cache()
        deleted = await apply(harness, tenant, [loser])
        (late,) = deleted.applied.results
        assert late.server_state is not None
        assert (late.status, late.server_state.deleted) == (ItemStatus.DUPLICATE, True)
    # The same message delivered again still gets its original result, for the request that waits on it.
    redelivered = await apply(harness, tenant, [loser], message_id="m-first")
    assert redelivered.applied.results == first.applied.results


async def test_an_edit_or_movement_that_overtook_its_create_applies_once_the_create_lands(harness: Harness) -> None:
    tenant, product = uuid.uuid4(), uuid.uuid4()
    edit = update_product(tenant, product, T0 + timedelta(minutes=1), priceCents=250)
    sale = movement(tenant, product, "exit", 2)
    early = await apply(harness, tenant, [edit, sale], message_id="m-early")
    assert statuses(early) == ["rejected", "rejected"]
    assert all(r.retryable and r.code is Code.NOT_FOUND for r in early.applied.results)
    assert early.applied.checkpoint == "0"  # nothing was stored
    assert await harness.product(tenant, product) is None

    # The same message delivered again, and a client's retry, still find no product: still retryable.
    again = await apply(harness, tenant, [edit, sale], message_id="m-early")
    assert [r.retryable for r in again.applied.results] == [True, True]

    await apply(harness, tenant, [create_product(tenant, product, "Mug", T0, priceCents=100)])
    retried = await apply(harness, tenant, [edit, sale])
    assert statuses(retried) == ["applied", "applied"]
    assert statuses(await apply(harness, tenant, [edit, sale])) == ["duplicate", "duplicate"]
    row = await harness.product(tenant, product)
    assert row is not None
    assert row["price_cents"] == 250
    assert await harness.level(tenant, product) == -2


async def test_an_operation_id_reused_for_another_change_is_refused_and_the_same_change_stays_a_duplicate(
    harness: Harness,
) -> None:
    tenant, product, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    original = create_product(tenant, product, "Mug", T0)
    same_id = {"operationId": original["operationId"], "idempotencyKey": original["operationId"]}
    other_entity = {**create_product(tenant, other, "Mug", T0), **same_id}
    other_payload = {**original, "payload": {"name": "Cup"}}
    other_kind = {**update_product(tenant, product, T0, name="Mug"), **same_id}
    assert statuses(await apply(harness, tenant, [original])) == ["applied"]

    for flushed in (False, True):  # answered from Redis, then from Postgres alone
        if flushed:
            await harness.flush_cache()
        outcome = await apply(harness, tenant, [original, other_entity, other_payload, other_kind])
        assert statuses(outcome) == ["duplicate", "rejected", "rejected", "rejected"]
        for refused in outcome.applied.results[1:]:
            assert (refused.code, refused.retryable) == (Code.OPERATION_ID_REUSED, False)
    # Within one batch too, whichever comes first.
    fresh = create_product(tenant, uuid.uuid4(), "Plate", T0)
    reused = {**fresh, "payload": {"name": "Bowl"}}
    assert statuses(await apply(harness, tenant, [fresh, fresh, reused])) == ["applied", "duplicate", "rejected"]
    assert await harness.product(tenant, other) is None
    row = await harness.product(tenant, product)
    assert row is not None
    assert row["name"] == "Mug"


async def test_a_device_ahead_of_the_server_keeps_its_own_order_within_a_request(harness: Harness) -> None:
    tenant, product = uuid.uuid4(), uuid.uuid4()
    await apply(harness, tenant, [create_product(tenant, product, "Mug", T0)])
    received = T0 + timedelta(hours=1)
    low, high = sorted([uuid.uuid4(), uuid.uuid4()])
    ahead = received + timedelta(minutes=10)
    # Both edits are clamped to the same receipt time; the later one in the request has the lower id.
    first = op(tenant, "product", "update", {"name": "first"}, entity_id=product, modified_at=ahead, operation_id=high)
    second = op(
        tenant,
        "product",
        "update",
        {"name": "second"},
        entity_id=product,
        modified_at=ahead + timedelta(minutes=1),
        operation_id=low,
    )
    outcome = await apply(harness, tenant, [first, second], received_at=received)
    assert statuses(outcome) == ["applied", "applied"]
    row = await harness.product(tenant, product)
    assert row is not None
    assert row["name"] == "second"
    # Replayed in another batch, in another order, nothing changes.
    assert statuses(await apply(harness, tenant, [second, first])) == ["duplicate", "duplicate"]
    row = await harness.product(tenant, product)
    assert row is not None
    assert row["name"] == "second"


async def test_equal_times_of_one_request_that_were_not_clamped_still_fall_to_the_operation_id(
    harness: Harness,
) -> None:
    tenant = uuid.uuid4()
    when = T0 + timedelta(minutes=5)
    for high_first in (True, False):
        product = uuid.uuid4()
        low, high = sorted([uuid.uuid4(), uuid.uuid4()])
        await apply(harness, tenant, [create_product(tenant, product, "Mug", T0)])
        edits = [
            op(tenant, "product", "update", {"name": str(i)}, entity_id=product, modified_at=when, operation_id=i)
            for i in ((high, low) if high_first else (low, high))
        ]
        await apply(harness, tenant, edits)
        row = await harness.product(tenant, product)
        assert row is not None
        assert row["name"] == str(high)


async def test_movements_build_the_stock_level_and_a_reused_movement_id_is_refused(harness: Harness) -> None:
    tenant, product = uuid.uuid4(), uuid.uuid4()
    first = movement(tenant, product, "entry", 10)
    reused = {**movement(tenant, product, "exit", 1), "entityId": first["entityId"]}
    outcome = await apply(
        harness,
        tenant,
        [
            create_product(tenant, product, "Mug", T0),
            first,
            movement(tenant, product, "exit", 4),
            reused,
            movement(tenant, product, "exit", 9),
        ],
    )
    assert statuses(outcome) == ["applied", "applied", "applied", "rejected", "applied"]
    assert outcome.applied.results[3].code is Code.VALIDATION_ERROR
    assert await harness.level(tenant, product) == 10 - 4 - 9  # negative stock is recorded, not refused


async def test_a_redelivered_message_gets_its_original_results_and_another_gets_duplicates(harness: Harness) -> None:
    tenant, product = uuid.uuid4(), uuid.uuid4()
    ops = [create_product(tenant, product, "Mug", T0), movement(tenant, product, "entry", 3)]
    assert statuses(await apply(harness, tenant, ops, message_id="m-1")) == ["applied", "applied"]
    assert statuses(await apply(harness, tenant, ops, message_id="m-1")) == ["applied", "applied"]
    assert statuses(await apply(harness, tenant, ops, message_id="m-2")) == ["duplicate", "duplicate"]
    await harness.flush_cache()
    assert statuses(await apply(harness, tenant, ops, message_id="m-1")) == ["applied", "applied"]
    assert statuses(await apply(harness, tenant, ops, message_id="m-3")) == ["duplicate", "duplicate"]
    assert await harness.level(tenant, product) == 3


async def test_the_same_operation_twice_in_one_batch_is_applied_once(harness: Harness) -> None:
    tenant, product = uuid.uuid4(), uuid.uuid4()
    entry = movement(tenant, product, "entry", 2)
    outcome = await apply(harness, tenant, [create_product(tenant, product, "Mug", T0), entry, entry])
    assert statuses(outcome) == ["applied", "applied", "duplicate"]
    assert await harness.level(tenant, product) == 2


async def test_one_item_refused_by_the_ledger_does_not_undo_the_others(harness: Harness) -> None:
    tenant, product = uuid.uuid4(), uuid.uuid4()
    batch = command(tenant, [create_product(tenant, product, "Mug", T0)])
    # An operation the contract would never let through, to reach the ledger's own constraints.
    too_long = parse_operation(update_product(tenant, product, T0 + timedelta(minutes=1), name="ok"))
    too_long.payload.__dict__["name"] = "x" * 300
    entry = parse_operation(movement(tenant, product, "entry", 5))
    batch = batch.model_copy(update={"operations": [*batch.operations, too_long, entry]})
    outcome = await apply_sync_batch(batch, "m-1", harness.database, harness.cache)

    assert statuses(outcome) == ["applied", "rejected", "applied"]
    assert outcome.applied.results[1].code is Code.VALIDATION_ERROR
    assert await harness.level(tenant, product) == 5
    again = await apply_sync_batch(batch, "m-2", harness.database, harness.cache)
    assert statuses(again) == ["duplicate", "rejected", "duplicate"]


async def test_a_movement_refused_by_the_ledger_is_rejected_alone(harness: Harness) -> None:
    tenant, product = uuid.uuid4(), uuid.uuid4()
    # A reason the contract would never let through, to reach the ledger's own CHECK constraint
    # in the middle of movements that the ledger records together.
    refused = parse_operation(movement(tenant, product, "entry", 100, reason="fine"))
    refused.payload.__dict__["reason"] = "x" * 600
    batch = command(
        tenant,
        [create_product(tenant, product, "Mug", T0), movement(tenant, product, "entry", 2)],
    )
    batch = batch.model_copy(
        update={"operations": [*batch.operations, refused, parse_operation(movement(tenant, product, "exit", 1))]}
    )
    outcome = await apply_sync_batch(batch, "m-1", harness.database, harness.cache)

    assert statuses(outcome) == ["applied", "applied", "rejected", "applied"]
    assert outcome.applied.results[2].code is Code.VALIDATION_ERROR
    assert await harness.level(tenant, product) == 2 - 1
    assert outcome.applied.checkpoint == "3"


async def test_movements_see_the_creates_and_deletes_before_them_in_their_request(harness: Harness) -> None:
    tenant, product = uuid.uuid4(), uuid.uuid4()
    outcome = await apply(
        harness,
        tenant,
        [
            movement(tenant, product, "entry", 1),  # before the create: not yet
            create_product(tenant, product, "Mug", T0),
            movement(tenant, product, "entry", 5),
            update_product(tenant, product, T0 + timedelta(minutes=1), priceCents=100),
            movement(tenant, product, "exit", 2),
            delete_product(tenant, product, T0 + timedelta(minutes=2)),
            movement(tenant, product, "entry", 7),  # after the delete: never
        ],
    )
    results = outcome.applied.results
    assert statuses(outcome)[1:6] == ["applied"] * 5
    assert (results[0].code, results[0].retryable) == (Code.NOT_FOUND, True)
    assert (results[6].status, results[6].code, results[6].retryable) == (ItemStatus.REJECTED, Code.NOT_FOUND, False)
    assert await harness.level(tenant, product) == 5 - 2
    assert outcome.applied.checkpoint == "5"


async def test_checkpoints_count_the_changes(harness: Harness) -> None:
    tenant, product = uuid.uuid4(), uuid.uuid4()
    first = await apply(harness, tenant, [create_product(tenant, product, "Mug", T0), movement(tenant, product)])
    lost = await apply(harness, tenant, [update_product(tenant, product, T0 - timedelta(days=1), name="older")])
    second = await apply(harness, tenant, [movement(tenant, product, "exit")])
    assert first.applied.checkpoint == "2"
    assert lost.applied.checkpoint == "2"  # a write that changed nothing moves nothing
    assert second.applied.checkpoint == "3"


async def test_a_message_of_one_refused_operation_gets_its_refusal_and_changes_nothing(harness: Harness) -> None:
    """Alone in its transaction, the refused set-based attempt takes the transaction down with it:
    the batch is applied again item by item in a new one, as a batch with companions would be."""
    tenant, product = uuid.uuid4(), uuid.uuid4()
    await apply(harness, tenant, [create_product(tenant, product, "Mug", T0)])
    refused = parse_operation(movement(tenant, product, "entry", 100, reason="fine"))
    refused.payload.__dict__["reason"] = "x" * 600  # past the ledger's CHECK constraint
    outcome = await apply_sync_batch(
        command(tenant, []).model_copy(update={"operations": [refused]}), "m-1", harness.database, harness.cache
    )

    assert statuses(outcome) == ["rejected"]
    assert outcome.applied.results[0].code is Code.VALIDATION_ERROR
    assert outcome.applied.results[0].retryable is False
    assert outcome.applied.checkpoint == "1"
    assert not await harness.level(tenant, product)  # no movement yet
    after = await apply(harness, tenant, [movement(tenant, product, "entry", 2)])
    assert statuses(after) == ["applied"]
    assert after.applied.checkpoint == "2"
    assert await harness.level(tenant, product) == 2
