"""Last-writer-wins and the meaning of effects, as pure rules."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta, timezone

from stockzen_contracts import Code, ItemResult, ItemStatus, parse_operation
from stockzen_sync_worker.domain.lww import Version, clamp_modified_at, lww_winner, winning_fields, write_sequence
from stockzen_sync_worker.domain.outcomes import (
    MissingEntity,
    ProductMerged,
    ProductWasDeleted,
    RefusedByRule,
    StoredResult,
    UnknownProduct,
    as_duplicate,
    operation_fingerprint,
    replay,
    result_for,
)
from tests.support.states import product_state

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def test_a_clock_ahead_of_the_server_is_pulled_back_to_when_the_server_received_the_change() -> None:
    assert clamp_modified_at(NOW + timedelta(days=365), NOW) == NOW
    assert clamp_modified_at(NOW - timedelta(seconds=5), NOW) == NOW - timedelta(seconds=5)
    in_paris = datetime(2026, 11, 24, 13, 0, tzinfo=timezone(timedelta(hours=1)))
    assert clamp_modified_at(in_paris, NOW + timedelta(hours=1)).tzinfo == UTC


def test_the_later_write_wins_and_equal_times_fall_to_the_higher_operation_id() -> None:
    low, high = sorted([uuid.uuid4(), uuid.uuid4()])
    assert lww_winner(Version(NOW, high), Version(NOW + timedelta(microseconds=1), low)).operation_id == low
    assert lww_winner(Version(NOW, low), Version(NOW, high)).operation_id == high
    assert lww_winner(Version(NOW, high), Version(NOW, low)).operation_id == high


def test_encoded_versions_sort_exactly_like_versions() -> None:
    # Postgres compares the encoded text bytewise; that order must be the version order.
    rng = random.Random(7)
    versions = [
        Version(
            datetime(2000, 1, 1, tzinfo=UTC) + timedelta(microseconds=rng.randrange(10**17)),
            uuid.UUID(int=rng.getrandbits(128)),
        )
        for _ in range(2000)
    ]
    versions += [Version(NOW, uuid.UUID(int=rng.getrandbits(128))) for _ in range(50)]
    versions += [Version(NOW, uuid.UUID(int=rng.getrandbits(128)), rng.randrange(1001)) for _ in range(200)]
    versions += [Version(datetime(999, 1, 1, tzinfo=UTC), uuid.uuid4(), 3)]
    assert sorted(versions, key=lambda v: v.encode().encode()) == sorted(versions)
    assert all(Version.decode(v.encode()) == v for v in versions)


def test_a_clamped_write_carries_its_place_in_its_request_and_others_do_not() -> None:
    assert write_sequence(NOW + timedelta(days=1), NOW, 0) == 1
    assert write_sequence(NOW, NOW, 7) == 8
    assert write_sequence(NOW - timedelta(microseconds=1), NOW, 7) == 0
    low, high = sorted([uuid.uuid4(), uuid.uuid4()])
    assert Version(NOW, low, 2) > Version(NOW, high, 1)  # later in the request wins over a higher id
    assert Version(NOW, high, 0) > Version(NOW, low, 0)
    assert Version(NOW + timedelta(microseconds=1), low, 0) > Version(NOW, high, 9)


def test_versions_written_before_sequences_still_read_back() -> None:
    writer = uuid.uuid4()
    assert Version.decode(f"2026-11-24T12:00:00.000000Z|{writer}") == Version(NOW, writer, 0)


def test_a_write_wins_only_the_fields_it_is_later_for() -> None:
    old, new = Version(NOW - timedelta(minutes=1), uuid.uuid4()), Version(NOW, uuid.uuid4())
    stored = {"name": new.encode(), "price_cents": old.encode()}
    middle = Version(NOW - timedelta(seconds=30), uuid.uuid4())
    assert winning_fields(middle, ["name", "price_cents", "sku"], stored) == ["price_cents", "sku"]
    assert winning_fields(new, ["name"], stored) == []  # the same write again changes nothing


def test_results_for_effects() -> None:
    op = uuid.uuid4()
    state = product_state()
    assert result_for(op, ProductMerged(state, ("name",), ("name",))).status is ItemStatus.APPLIED
    partial = result_for(op, ProductMerged(state, ("name", "price_cents"), ("name",)))
    assert (partial.status, partial.code) == (ItemStatus.CONFLICT, Code.CONFLICT_RESOLVED)
    assert partial.message is not None
    assert "priceCents" in partial.message
    assert "other changes were applied" in partial.message
    assert partial.server_state == state
    lost = result_for(op, ProductMerged(state, ("name",), ()))
    assert lost.message == "newer edits won for name"
    deleted = result_for(op, ProductWasDeleted(product_state(deleted=True)))
    assert deleted.server_state is not None
    assert deleted.server_state.deleted
    assert result_for(op, MissingEntity("the product was deleted")).code is Code.NOT_FOUND
    assert result_for(op, MissingEntity("the product was deleted")).retryable is False
    late = result_for(op, UnknownProduct(uuid.uuid4()))
    assert (late.status, late.code, late.retryable) == (ItemStatus.REJECTED, Code.NOT_FOUND, True)
    assert result_for(op, RefusedByRule("taken")).code is Code.VALIDATION_ERROR


def test_a_replay_is_a_duplicate_except_for_the_same_message_and_for_refusals() -> None:
    op = uuid.uuid4()
    applied = ItemResult(operation_id=op, status=ItemStatus.APPLIED)
    assert replay(StoredResult("m1", applied), "m1") == applied  # a redelivery of the same message
    assert replay(StoredResult("m1", applied), "m2").status is ItemStatus.DUPLICATE
    refused = ItemResult.rejected(op, Code.NOT_FOUND, "gone")
    assert replay(StoredResult("m1", refused), "m2") == refused
    conflict = result_for(op, ProductMerged(product_state(), ("name",), ()))
    again = as_duplicate(conflict)
    assert (again.status, again.code, again.server_state) == (
        ItemStatus.DUPLICATE,
        Code.CONFLICT_RESOLVED,
        conflict.server_state,
    )


def test_an_operations_fingerprint_follows_its_meaning_not_its_spelling() -> None:
    tenant, product, op_id = uuid.uuid4(), uuid.uuid4(), str(uuid.uuid4())
    base = {
        "operationId": op_id,
        "idempotencyKey": op_id,
        "entityType": "product",
        "entityId": str(product),
        "operationType": "update",
        "tenantId": str(tenant),
        "modifiedAt": "2026-11-24T13:00:00+01:00",
        "payload": {"priceCents": 5, "name": "Mug"},
    }
    respelled = {**base, "modifiedAt": "2026-11-24T12:00:00.000Z", "payload": {"name": " Mug ", "priceCents": 5}}
    assert operation_fingerprint(parse_operation(base)) == operation_fingerprint(parse_operation(respelled))
    for change in ({"payload": {"priceCents": 6, "name": "Mug"}}, {"entityId": str(uuid.uuid4())}):
        assert operation_fingerprint(parse_operation({**base, **change})) != operation_fingerprint(
            parse_operation(base)
        )
