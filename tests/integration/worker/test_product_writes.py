"""Batches with many product writes, run once in memory and once against Postgres and Redis.

The ledger settles a batch's product writes together (in one statement on Postgres); these
scenarios hold that to what applying the same operations one at a time in request order gives.
Each test takes the ``harness`` fixture of ``conftest.py``, parametrised over both.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from stockzen_contracts import Code, ItemStatus, parse_operation
from stockzen_sync_worker.services import apply_sync_batch
from tests.support.harness import T0, Harness, apply, command, statuses
from tests.support.ops import create_product, delete_product, movement, op, update_product


async def test_several_writes_of_one_product_in_one_batch_each_see_the_ones_before(harness: Harness) -> None:
    tenant, product = uuid.uuid4(), uuid.uuid4()
    outcome = await apply(
        harness,
        tenant,
        [
            create_product(tenant, product, "Mug", T0, priceCents=100),
            update_product(tenant, product, T0 + timedelta(minutes=2), priceCents=250),
            update_product(tenant, product, T0 + timedelta(minutes=1), name="Big mug", priceCents=175),
            update_product(tenant, product, T0 + timedelta(minutes=3), name="Huge mug"),
            update_product(tenant, product, T0 - timedelta(minutes=1), sku="OLD"),
        ],
    )

    assert statuses(outcome) == ["applied", "applied", "conflict", "applied", "conflict"]
    partial = outcome.applied.results[2]
    assert partial.server_state is not None
    # The third write's answer shows the product as it left it: its name won, its price lost.
    assert (partial.server_state.name, partial.server_state.price_cents) == ("Big mug", 250)
    last = outcome.applied.results[3]
    assert last.status is ItemStatus.APPLIED
    row = await harness.product(tenant, product)
    assert row is not None
    # The create set every field (sku to none), later than the last write.
    assert (row["name"], row["price_cents"], row["sku"]) == ("Huge mug", 250, None)
    # One checkpoint per write that changed the product: the last one changed nothing.
    assert outcome.applied.checkpoint == "4"
    assert partial.server_state.checkpoint == "3"


async def test_creates_edits_deletes_and_movements_interleaved_in_one_batch(harness: Harness) -> None:
    tenant, doomed, kept = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    too_early = update_product(tenant, kept, T0 + timedelta(seconds=30), name="too early")
    outcome = await apply(
        harness,
        tenant,
        [
            too_early,  # its create comes later in the batch: not yet
            create_product(tenant, doomed, "Doomed", T0),
            movement(tenant, doomed, "entry", 4),
            create_product(tenant, kept, "Kept", T0),
            update_product(tenant, doomed, T0 + timedelta(minutes=1), priceCents=10),
            movement(tenant, kept, "entry", 3),
            delete_product(tenant, doomed, T0 + timedelta(minutes=2)),
            movement(tenant, doomed, "exit", 1),  # after its delete: never
            update_product(tenant, doomed, T0 + timedelta(minutes=9), name="edited after the delete"),
            create_product(tenant, doomed, "Again", T0 + timedelta(minutes=9)),
            movement(tenant, doomed, "entry", 8),  # a create after its delete revives nothing
            update_product(tenant, kept, T0 + timedelta(minutes=1), unit="box"),
            movement(tenant, kept, "exit", 1),
        ],
    )

    results = outcome.applied.results
    assert statuses(outcome) == [
        "rejected",
        "applied",
        "applied",
        "applied",
        "applied",
        "applied",
        "applied",
        "rejected",
        "conflict",
        "conflict",
        "rejected",
        "applied",
        "applied",
    ]
    assert (results[0].code, results[0].retryable) == (Code.NOT_FOUND, True)
    for gone in (results[7], results[10]):
        assert (gone.code, gone.retryable) == (Code.NOT_FOUND, False)
    for lost in (results[8], results[9]):
        assert lost.server_state is not None
        assert lost.server_state.deleted
    assert await harness.level(tenant, doomed) == 4
    assert await harness.level(tenant, kept) == 3 - 1
    kept_row, doomed_row = await harness.product(tenant, kept), await harness.product(tenant, doomed)
    assert kept_row is not None
    assert doomed_row is not None
    assert (kept_row["name"], kept_row["unit"], kept_row["deleted"]) == ("Kept", "box", False)
    assert doomed_row["deleted"]
    # create, movement, create, update, movement, delete, update, movement: eight changes
    assert outcome.applied.checkpoint == "8"

    # The edit that came before its create applies once retried.
    assert statuses(await apply(harness, tenant, [too_early])) == ["applied"]
    kept_row = await harness.product(tenant, kept)
    assert kept_row is not None
    assert (kept_row["name"], kept_row["unit"]) == ("too early", "box")


async def test_ties_within_one_request_fall_to_request_order_when_clamped_else_to_operation_id(
    harness: Harness,
) -> None:
    tenant, clamped, unclamped = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    received = T0 + timedelta(hours=1)
    future = received + timedelta(days=1)
    low, high = sorted([uuid.uuid4(), uuid.uuid4()])
    when = T0 + timedelta(minutes=5)
    outcome = await apply(
        harness,
        tenant,
        [
            create_product(tenant, clamped, "Mug", T0),
            create_product(tenant, unclamped, "Cup", T0),
            # Clamped to when the request was received: the later in the request wins.
            update_product(tenant, clamped, future, name="first"),
            update_product(tenant, clamped, future, name="second"),
            # Equal own times: the higher operation id wins, whatever the order.
            op(tenant, "product", "update", {"name": "high"}, entity_id=unclamped, modified_at=when, operation_id=high),
            op(tenant, "product", "update", {"name": "low"}, entity_id=unclamped, modified_at=when, operation_id=low),
        ],
        received_at=received,
    )

    assert statuses(outcome) == ["applied", "applied", "applied", "applied", "applied", "conflict"]
    first, second = await harness.product(tenant, clamped), await harness.product(tenant, unclamped)
    assert first is not None
    assert second is not None
    assert (first["name"], second["name"]) == ("second", "high")


async def test_an_edit_of_an_unknown_product_waits_while_the_others_apply(harness: Harness) -> None:
    tenant, known, unknown = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await apply(harness, tenant, [create_product(tenant, known, "Mug", T0)])
    edit_unknown = update_product(tenant, unknown, T0 + timedelta(minutes=1), name="later")
    outcome = await apply(
        harness,
        tenant,
        [
            update_product(tenant, known, T0 + timedelta(minutes=1), priceCents=5),
            edit_unknown,
            delete_product(tenant, uuid.uuid4(), T0),  # a delete of a product never seen leaves a tombstone
            update_product(tenant, known, T0 + timedelta(minutes=2), sku="S-1"),
        ],
    )

    assert statuses(outcome) == ["applied", "rejected", "applied", "applied"]
    assert (outcome.applied.results[1].code, outcome.applied.results[1].retryable) == (Code.NOT_FOUND, True)
    assert await harness.product(tenant, unknown) is None
    assert outcome.applied.checkpoint == "4"

    await apply(harness, tenant, [create_product(tenant, unknown, "New", T0)])
    assert statuses(await apply(harness, tenant, [edit_unknown])) == ["applied"]
    row = await harness.product(tenant, unknown)
    assert row is not None
    assert row["name"] == "later"


async def test_a_refused_product_write_falls_back_to_item_by_item(harness: Harness) -> None:
    tenant, product, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    batch = command(
        tenant,
        [
            create_product(tenant, product, "Mug", T0),
            update_product(tenant, product, T0 + timedelta(minutes=1), priceCents=7),
            create_product(tenant, other, "Cup", T0),
        ],
    )
    # A name the contract would never let through, to reach the ledger's own CHECK constraint.
    too_long = parse_operation(update_product(tenant, product, T0 + timedelta(minutes=2), name="ok"))
    too_long.payload.__dict__["name"] = "x" * 300
    after = [
        parse_operation(update_product(tenant, product, T0 + timedelta(minutes=3), sku="S-1")),
        parse_operation(delete_product(tenant, other, T0 + timedelta(minutes=1))),
        parse_operation(movement(tenant, product, "entry", 2)),
    ]
    batch = batch.model_copy(update={"operations": [*batch.operations, too_long, *after]})
    outcome = await apply_sync_batch(batch, "m-1", harness.database, harness.cache)

    assert statuses(outcome) == ["applied", "applied", "applied", "rejected", "applied", "applied", "applied"]
    assert outcome.applied.results[3].code is Code.VALIDATION_ERROR
    row, gone = await harness.product(tenant, product), await harness.product(tenant, other)
    assert row is not None
    assert gone is not None
    assert (row["name"], row["price_cents"], row["sku"]) == ("Mug", 7, "S-1")
    assert gone["deleted"]
    assert await harness.level(tenant, product) == 2
    assert outcome.applied.checkpoint == "6"


async def test_an_operation_repeated_after_its_create_lands_applies_like_one_at_a_time(harness: Harness) -> None:
    tenant, product = uuid.uuid4(), uuid.uuid4()
    edit = update_product(tenant, product, T0 + timedelta(minutes=1), name="edited")
    entry = movement(tenant, product, "entry", 3)
    outcome = await apply(harness, tenant, [edit, entry, create_product(tenant, product, "Mug", T0), edit, entry])

    # The first copies find no product; the second copies, after the create, land.
    assert statuses(outcome) == ["rejected", "rejected", "applied", "applied", "applied"]
    assert all(r.retryable for r in outcome.applied.results[:2])
    row = await harness.product(tenant, product)
    assert row is not None
    assert row["name"] == "edited"
    assert await harness.level(tenant, product) == 3


async def test_a_batch_of_many_products_each_written_several_times(harness: Harness) -> None:
    tenant = uuid.uuid4()
    products = [uuid.uuid4() for _ in range(40)]
    ops = [create_product(tenant, p, f"P{n}", T0) for n, p in enumerate(products)]
    ops += [update_product(tenant, p, T0 + timedelta(minutes=1), priceCents=n) for n, p in enumerate(products)]
    ops += [movement(tenant, p, "entry", 2) for p in products]
    ops += [delete_product(tenant, p, T0 + timedelta(minutes=2)) for p in products[::2]]
    ops += [update_product(tenant, p, T0 + timedelta(minutes=3), name="late") for p in products]
    outcome = await apply(harness, tenant, ops)

    assert statuses(outcome) == ["applied"] * 140 + ["conflict", "applied"] * 20
    assert outcome.applied.checkpoint == str(40 + 40 + 40 + 20 + 20)
    for n, p in enumerate(products):
        row = await harness.product(tenant, p)
        assert row is not None
        assert (row["deleted"], row["price_cents"]) == (n % 2 == 0, n)
        assert row["name"] == (f"P{n}" if n % 2 == 0 else "late")
        assert await harness.level(tenant, p) == 2


async def test_a_movement_id_taken_later_in_the_batch_does_not_explain_an_earlier_refusal(harness: Harness) -> None:
    tenant, unknown, known = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    movement_id = uuid.uuid4()
    early = op(
        tenant,
        "stockMovement",
        "create",
        {"productId": str(unknown), "kind": "entry", "quantity": 1},
        entity_id=movement_id,
    )
    later = op(
        tenant,
        "stockMovement",
        "create",
        {"productId": str(known), "kind": "entry", "quantity": 2},
        entity_id=movement_id,
    )
    again = op(
        tenant,
        "stockMovement",
        "create",
        {"productId": str(known), "kind": "entry", "quantity": 4},
        entity_id=movement_id,
    )
    outcome = await apply(harness, tenant, [early, create_product(tenant, known, "Mug", T0), later, again])

    results = outcome.applied.results
    assert statuses(outcome) == ["rejected", "applied", "applied", "rejected"]
    assert (results[0].code, results[0].retryable) == (Code.NOT_FOUND, True)  # its product may come yet
    assert (results[3].code, results[3].retryable) == (Code.VALIDATION_ERROR, False)  # the id was taken
    assert await harness.level(tenant, known) == 2
    assert outcome.applied.checkpoint == "2"
