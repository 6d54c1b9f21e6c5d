"""The local store's own rules: levels kept per product, the outbox's doubt, a snapshot's first page,
and an older database brought up to the schema."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from stockzen_client.adapters.store import LocalStore, OutboxItem
from stockzen_client.domain import view
from stockzen_contracts import (
    PRODUCT_FIELDS,
    Change,
    ChangeFeedPage,
    Code,
    ItemResult,
    MovementKind,
    Operation,
    ProductState,
    ProductView,
    SnapshotPage,
    StockMovementState,
    parse_operation,
)

TENANT = uuid.uuid4()
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LocalStore]:
    opened = LocalStore(tmp_path / "store.sqlite3", clock=lambda: 1_000.0)
    yield opened
    opened.close()


def operation(entity: str, entity_id: uuid.UUID, kind: str, payload: dict[str, Any]) -> Operation:
    operation_id = str(uuid.uuid4())
    return parse_operation(
        {
            "operationId": operation_id,
            "idempotencyKey": operation_id,
            "entityType": entity,
            "entityId": str(entity_id),
            "operationType": kind,
            "tenantId": str(TENANT),
            "modifiedAt": NOW.isoformat(),
            "payload": payload,
        }
    )


def movement_operation(product: uuid.UUID, quantity: int, kind: str = "entry") -> Operation:
    return operation(
        "stockMovement", uuid.uuid4(), "create", {"productId": str(product), "kind": kind, "quantity": quantity}
    )


def product_state(product: uuid.UUID, name: str, checkpoint: int = 1) -> ProductState:
    return ProductState(
        id=product, name=name, sku=None, barcode=None, unit=None, price_cents=None, low_stock_threshold=None,
        archived=False, deleted=False, modified_at=NOW, checkpoint=str(checkpoint),
    )  # fmt: skip


def movement_state(movement: uuid.UUID, product: uuid.UUID, quantity: int, checkpoint: int) -> StockMovementState:
    return StockMovementState(
        id=movement, product_id=product, kind=MovementKind.ENTRY if quantity > 0 else MovementKind.EXIT,
        quantity=abs(quantity), reason=None, occurred_at=NOW, checkpoint=str(checkpoint),
    )  # fmt: skip


def feed(checkpoint: int, *changes: ProductState | StockMovementState) -> ChangeFeedPage:
    return ChangeFeedPage(
        checkpoint=str(checkpoint),
        has_more=False,
        changes=[Change.of_product(c) if isinstance(c, ProductState) else Change.of_movement(c) for c in changes],
    )


def snapshot(checkpoint: int, levels: dict[uuid.UUID, tuple[str, int]], cursor: str | None = None) -> SnapshotPage:
    items = [
        ProductView.model_validate({**product_state(product, name).model_dump(), "stock_level": level})
        for product, (name, level) in levels.items()
    ]
    return SnapshotPage(checkpoint=str(checkpoint), items=items, next_cursor=cursor, total_products=len(items))


def shown(store: LocalStore, product: uuid.UUID) -> int:
    found = store.product(product)
    assert found is not None
    return found.stock_level


def sent(store: LocalStore) -> list[OutboxItem]:
    items = store.sendable(100)
    store.mark_sending(items)
    return items


def test_the_view_names_the_contracts_product_fields() -> None:
    assert view.PRODUCT_FIELDS == PRODUCT_FIELDS


def test_a_movement_the_feed_brings_twice_counts_once(store: LocalStore) -> None:
    mug, movement = uuid.uuid4(), uuid.uuid4()
    store.apply_page(feed(2, product_state(mug, "Mug"), movement_state(movement, mug, 5, 2)))
    store.apply_page(feed(3, movement_state(movement, mug, 5, 2), movement_state(uuid.uuid4(), mug, -2, 3)))
    assert shown(store, mug) == 3
    assert [m.signed_quantity for m in store.history(mug)] == [5, -2]


def test_a_movement_may_come_before_its_product(store: LocalStore) -> None:
    mug = uuid.uuid4()
    store.apply_page(feed(2, movement_state(uuid.uuid4(), mug, 4, 2)))
    assert store.product(mug) is None
    store.apply_page(feed(3, product_state(mug, "Mug", 3)))
    assert shown(store, mug) == 4


def test_showing_products_reads_no_movement_but_those_of_the_devices_own_queued_changes(store: LocalStore) -> None:
    mug, cup = uuid.uuid4(), uuid.uuid4()
    store.apply_page(feed(2, product_state(mug, "Mug"), product_state(cup, "Cup")))
    store.apply_page(feed(3, *(movement_state(uuid.uuid4(), mug, 1, 3) for _ in range(20))))
    own = movement_operation(cup, 3)
    store.enqueue(own)
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)

    listed = {p.id: p.stock_level for p in store.products()}
    one = store.product(mug)

    assert listed == {mug: 20, cup: 3}
    assert one is not None
    assert one.stock_level == 20
    reads = [s for s in statements if "movements" in s]
    assert reads
    assert all(s.startswith("SELECT id FROM movements WHERE id IN") for s in reads), reads
    assert all(str(own.entity_id) in s for s in reads), reads  # only the queued movement's id is looked up


def test_a_change_is_in_doubt_from_its_sending_until_a_final_answer_or_a_sure_refusal(store: LocalStore) -> None:
    mug = uuid.uuid4()
    ops = [movement_operation(mug, n) for n in (1, 2, 3, 4, 5)]
    for op in ops:
        store.enqueue(op)
    create = operation("product", uuid.uuid4(), "create", {"name": "Not a movement"})
    store.enqueue(create)
    items = sent(store)
    assert store.in_doubt_movements() == 5  # the product's create does not count

    applied, pending, retryable, refused, unanswered = (i.operation_id for i in items[:5])
    store.settle(
        items,
        [
            ItemResult(operation_id=applied, status="applied"),  # type: ignore[arg-type]
            ItemResult.pending(pending),
            ItemResult.retry_later(retryable, Code.NOT_FOUND, "not there yet"),
            ItemResult.rejected(refused, Code.OPERATION_ID_REUSED, "reused"),
        ],
        lambda attempt: 10.0,
    )
    doubtful = {uuid.UUID(row[0]) for row in store._db.execute("SELECT operation_id FROM outbox WHERE in_doubt = 1")}
    assert doubtful == {pending, unanswered, create.operation_id}  # no result for the create either

    retried = [i for i in items if i.operation_id in (pending, unanswered)]
    store.defer(retried, "no answer", lambda attempt: 0.0)  # unreachable, or a failing server: still unknown
    assert store.in_doubt_movements() == 2
    again = [i for i in sent(store) if i.operation_id in (pending, unanswered)]  # sent again: in doubt before
    store.defer(again, "429", lambda attempt: 0.0, stored=False)  # this request was not read; the first may be
    assert store.in_doubt_movements() == 2
    store.release(again)  # a whole-request 4xx before a split: the same
    assert store.in_doubt_movements() == 2
    store.defer(retried, "429", lambda attempt: 0.0, stored=False)  # refused before it was read, on its first send
    assert store.in_doubt_movements() == 0


def test_the_first_snapshot_page_replaces_the_server_copy_and_keeps_what_is_queued(store: LocalStore) -> None:
    kept, edited, gone, local = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    store.apply_page(feed(5, product_state(kept, "Kept"), product_state(edited, "Edited"), product_state(gone, "Gone")))
    store.apply_page(feed(6, movement_state(uuid.uuid4(), kept, 9, 6), movement_state(uuid.uuid4(), gone, 1, 6)))
    store.enqueue(movement_operation(kept, 4))
    [applied_item] = sent(store)
    store.settle([applied_item], [ItemResult(operation_id=applied_item.operation_id, status="applied")], lambda a: 0)  # type: ignore[arg-type]
    assert shown(store, kept) == 9 + 4  # applied, awaiting the pull
    store.enqueue(operation("product", edited, "update", {"name": "Renamed here"}))
    store.enqueue(operation("product", local, "create", {"name": "Only here"}))
    store.enqueue(movement_operation(kept, 2, "exit"))  # not sent yet

    progress = store.store_snapshot_page(snapshot(9, {kept: ("Kept", 13)}, cursor="9/next"), None)

    assert (progress.checkpoint, progress.cursor, progress.done, progress.total) == ("9", "9/next", 1, 1)
    assert store.get_meta("checkpoint") is None  # until the last page
    assert store.snapshot_progress() == progress
    listed = {p.name: p.stock_level for p in store.products()}
    # The applied movement is inside the snapshot's 13; the queued exit stays on top; the feed's
    # movements are gone; the edited product waits for its page; the one made here shows meanwhile.
    assert listed == {"Kept": 13 - 2, "Only here": 0}
    # Its history: no longer the feed's movements, but still the device's own (the applied one confirmed).
    assert sorted((m.signed_quantity, m.queued) for m in store.history(kept)) == [(-2, True), (4, False)]
    assert store.counts()[2] == 0

    last = store.store_snapshot_page(snapshot(9, {edited: ("Edited", 7)}), progress)
    assert (last.cursor, last.done) == (None, 2)
    assert store.checkpoint == "9"
    assert store.snapshot_progress() is None
    assert {p.name: p.stock_level for p in store.products()} == {"Kept": 11, "Renamed here": 7, "Only here": 0}


OLD_SCHEMA = """
CREATE TABLE products (id TEXT PRIMARY KEY, state TEXT NOT NULL);
CREATE TABLE movements (id TEXT PRIMARY KEY, product_id TEXT NOT NULL, state TEXT NOT NULL);
CREATE INDEX movements_by_product ON movements (product_id);
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, operation_id TEXT NOT NULL UNIQUE, entity_type TEXT NOT NULL,
    entity_id TEXT NOT NULL, product_id TEXT NOT NULL, body TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL DEFAULT 0, last_error TEXT, outcome TEXT,
    awaiting_pull INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL
);
CREATE INDEX outbox_by_status ON outbox (status, seq);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE notices (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, kind TEXT NOT NULL, entity_id TEXT NOT NULL,
    message TEXT NOT NULL
);
"""


def test_an_older_database_gets_its_levels_and_its_doubt_once(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    mug = uuid.uuid4()
    sending = movement_operation(mug, 6)
    with sqlite3.connect(path) as old:
        old.executescript(OLD_SCHEMA)
        old.execute(
            "INSERT INTO products VALUES (?, ?)", (str(mug), product_state(mug, "Mug").model_dump_json(by_alias=True))
        )
        for quantity in (10, -3, 4):
            state = movement_state(uuid.uuid4(), mug, quantity, 2)
            old.execute(
                "INSERT INTO movements VALUES (?, ?, ?)",
                (str(state.id), str(mug), state.model_dump_json(by_alias=True)),
            )
        old.execute(
            "INSERT INTO outbox (operation_id, entity_type, entity_id, product_id, body, status, created_at)"
            " VALUES (?, 'stockMovement', ?, ?, ?, 'processing', ?)",
            (str(sending.operation_id), str(sending.entity_id), str(mug), json.dumps(sending.to_wire()), "x"),
        )
        old.execute("INSERT INTO meta VALUES ('checkpoint', '2')")
    old.close()

    for _ in range(2):  # opened again: nothing counted twice
        store = LocalStore(path, clock=lambda: 0.0)
        try:
            assert shown(store, mug) == 11 + 6
            assert store.in_doubt_movements() == 1  # it was on its way when the old client stopped
            assert store.checkpoint == "2"
        finally:
            store.close()


VERSION_1_SCHEMA = (
    OLD_SCHEMA.replace(
        "awaiting_pull INTEGER NOT NULL DEFAULT 0, created_at",
        "awaiting_pull INTEGER NOT NULL DEFAULT 0, in_doubt INTEGER NOT NULL DEFAULT 0, created_at",
    )
    + "CREATE TABLE levels (product_id TEXT PRIMARY KEY, confirmed INTEGER NOT NULL DEFAULT 0);"
)


def test_a_database_of_version_1_keeps_the_codes_of_its_refusals(tmp_path: Path) -> None:
    path = tmp_path / "v1.sqlite3"
    mug = uuid.uuid4()
    refused = movement_operation(mug, 2)
    with sqlite3.connect(path) as old:
        old.executescript(VERSION_1_SCHEMA)
        old.execute(
            "INSERT INTO outbox (operation_id, entity_type, entity_id, product_id, body, status, last_error,"
            " created_at) VALUES (?, 'stockMovement', ?, ?, ?, 'failed', 'VALIDATION_ERROR: too long', 'x')",
            (str(refused.operation_id), str(refused.entity_id), str(mug), json.dumps(refused.to_wire())),
        )
        old.execute("INSERT INTO notices (at, kind, entity_id, message) VALUES (?, 'rejected', ?, 'refused')",
                    (NOW.isoformat(), str(refused.entity_id)))  # fmt: skip
        old.execute("PRAGMA user_version = 1")
    old.close()

    store = LocalStore(path, clock=lambda: 0.0)
    try:
        [failed] = store.failed()
        assert (failed.operation_id, failed.code, failed.reason) == (
            refused.operation_id, "VALIDATION_ERROR", "VALIDATION_ERROR: too long",
        )  # fmt: skip
        [notice] = store.notices()
        assert (notice.kind, notice.product_id) == ("rejected", None)
        assert store._db.execute("PRAGMA user_version").fetchone()[0] == 2
    finally:
        store.close()


def test_stamps_keep_increasing_across_reopening_and_a_clock_that_goes_back(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    times = iter([10.0, 10.0, 4.0])
    stamps = []
    for _ in range(3):
        store = LocalStore(path, clock=lambda: next(times))
        store.enqueue(movement_operation(uuid.uuid4(), 1))
        stamps.append(json.loads(store._db.execute("SELECT body FROM outbox ORDER BY seq DESC").fetchone()[0]))
        store.close()
    assert [s["modifiedAt"] for s in stamps] == [
        "1970-01-01T00:00:10.000000Z", "1970-01-01T00:00:10.001000Z", "1970-01-01T00:00:10.002000Z",
    ]  # fmt: skip


def test_only_refused_changes_can_be_discarded(store: LocalStore) -> None:
    mug = uuid.uuid4()
    for quantity in (1, 2, 3):
        store.enqueue(movement_operation(mug, quantity))
    first, second, third = sent(store)
    store.settle(
        [first, second, third],
        [
            ItemResult.rejected(first.operation_id, Code.VALIDATION_ERROR, "no"),
            ItemResult.rejected(second.operation_id, Code.OPERATION_ID_REUSED, "no"),
            ItemResult.pending(third.operation_id),
        ],
        lambda attempt: 1.0,
    )
    assert [(e.status, e.code) for e in store.outbox()] == [
        ("failed", "VALIDATION_ERROR"), ("failed", "OPERATION_ID_REUSED"), ("queued", None),
    ]  # fmt: skip
    assert store.discard([third.operation_id, second.operation_id]) == [second.operation_id]
    assert store.discard() == [first.operation_id]
    assert [e.operation_id for e in store.outbox()] == [third.operation_id]
