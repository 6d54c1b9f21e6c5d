"""Fingerprints computed once, by the gateway, and carried in the queue message to the worker.

The gateway and the worker must agree on every operation's fingerprint, and both must agree with the
fingerprints already kept in Redis and ``applied_operations`` (made by the worker before they were
carried), or an honest retry would be refused as a reused ``operationId``.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from stockzen_contracts import ApplySyncBatch, Code, ItemStatus, Operation, RawSyncBatch, parse_operation
from stockzen_sync_worker.services import BatchOutcome, apply_sync_batch, read_batch
from tests.support.memory_inventory import MemoryInventoryDatabase, MemoryResultCache
from tests.support.operation_strategies import operations
from tests.support.ops import create_product, movement

TENANT = uuid.UUID("0b6f2f4e-8f7a-4e0c-9d55-0c1f3c9b2a10")


def _as_kept_before(operation: Operation) -> str:
    # The worker's own definition before fingerprints were carried: every stored one was made so.
    canonical = json.dumps(operation.to_wire(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def _published(tenant: uuid.UUID, raws: list[dict[str, Any]]) -> dict[str, Any]:
    """What the gateway puts on the queue for ``raws``, once through JSON as the broker carries it."""
    batch = ApplySyncBatch(
        request_id=uuid.uuid4().hex,
        tenant_id=tenant,
        user_id="u1",
        received_at=datetime.now(UTC),
        reply_to="reply:test",
        operations=[parse_operation(raw) for raw in raws],
    )
    decoded: dict[str, Any] = json.loads(json.dumps(batch.to_message()))
    return decoded


def _without_fingerprints(message: dict[str, Any]) -> dict[str, Any]:
    """The same message as a gateway wrote it before fingerprints were carried."""
    return {key: value for key, value in message.items() if key != "fingerprints"}


async def _deliver(
    message: dict[str, Any], database: MemoryInventoryDatabase, cache: MemoryResultCache
) -> BatchOutcome:
    read = read_batch(RawSyncBatch.model_validate(message))
    return await apply_sync_batch(read.command, uuid.uuid4().hex, database, cache, unreadable=read.unreadable)


@settings(max_examples=150, deadline=None)
@given(raws=st.lists(operations(TENANT), min_size=1, max_size=6))
def test_the_gateway_and_the_worker_fingerprint_every_operation_alike(raws: list[dict[str, Any]]) -> None:
    message = _published(TENANT, raws)
    carried = read_batch(RawSyncBatch.model_validate(message)).command.operation_fingerprints()
    computed = read_batch(RawSyncBatch.model_validate(_without_fingerprints(message))).command.operation_fingerprints()
    kept_before = [_as_kept_before(parse_operation(raw)) for raw in raws]
    assert carried == message["fingerprints"]
    assert carried == computed == kept_before


def test_the_canonical_form_is_pinned_so_kept_fingerprints_stay_comparable() -> None:
    # A change to the canonical form makes every fingerprint kept so far differ from new ones: an
    # honest retry of an operation applied before the change would be refused as a reused id.
    raw = {
        "operationId": "6f1b6c3e-2f0c-4c1e-9a37-3d2b8e0f4a11",
        "idempotencyKey": "6f1b6c3e-2f0c-4c1e-9a37-3d2b8e0f4a11",
        "entityType": "stockMovement",
        "entityId": "1d0c7a52-5a4b-4f7e-8f61-2a9b7c3d4e5f",
        "operationType": "create",
        "tenantId": str(TENANT),
        "modifiedAt": "2026-11-01T13:30:00+01:00",
        "payload": {"productId": "7a3e9b10-0c4d-4e8f-9b2a-5c6d7e8f9a0b", "kind": "entry", "quantity": 3},
    }
    fingerprint = "580d86fe03823449ac78d5698fcc1ca94760c558697ac27a4453ec518623f0d4"
    assert _published(TENANT, [raw])["fingerprints"] == [fingerprint]
    assert _as_kept_before(parse_operation(raw)) == fingerprint


async def test_a_message_without_fingerprints_applies_and_agrees_with_one_that_carries_them() -> None:
    tenant, product = uuid.uuid4(), uuid.uuid4()
    database, cache = MemoryInventoryDatabase(), MemoryResultCache()
    create, entry = create_product(tenant, product), movement(tenant, product, "entry", 4)
    old = await _deliver(_without_fingerprints(_published(tenant, [create, entry])), database, cache)
    assert [r.status for r in old.applied.results] == [ItemStatus.APPLIED, ItemStatus.APPLIED]

    changed = {**entry, "payload": {**entry["payload"], "quantity": 5}}
    for fresh_cache in (cache, MemoryResultCache()):  # what Redis remembers, then what Postgres does
        new = await _deliver(_published(tenant, [entry, changed]), database, fresh_cache)
        assert [r.status for r in new.applied.results] == [ItemStatus.DUPLICATE, ItemStatus.REJECTED]
        assert new.applied.results[1].code is Code.OPERATION_ID_REUSED
    assert database.tenants[tenant].levels[product] == 4


async def test_fingerprints_stay_with_their_operations_when_one_cannot_be_read() -> None:
    tenant, product = uuid.uuid4(), uuid.uuid4()
    database, cache = MemoryInventoryDatabase(), MemoryResultCache()
    first, second = movement(tenant, product, "entry", 1), movement(tenant, product, "entry", 2)
    message = _published(tenant, [create_product(tenant, product), first, second])
    message["operations"][1]["payload"]["quantity"] = "one"  # unreadable here, whatever the gateway meant
    outcome = await _deliver(message, database, cache)
    assert [r.status for r in outcome.applied.results] == [ItemStatus.APPLIED, ItemStatus.REJECTED, ItemStatus.APPLIED]

    again = await _deliver(_published(tenant, [second]), database, MemoryResultCache())
    assert [r.status for r in again.applied.results] == [ItemStatus.DUPLICATE]  # its own fingerprint was kept
    assert database.tenants[tenant].levels[product] == 2


async def test_the_worker_takes_the_carried_fingerprint_as_given() -> None:
    # The queue is internal and the gateway its only publisher, so the worker does not hash again
    # what the gateway hashed: a fingerprint that does not match its operation is believed. This
    # pins that trust, so that nobody counts on the worker to catch such a message.
    tenant, product = uuid.uuid4(), uuid.uuid4()
    database, cache = MemoryInventoryDatabase(), MemoryResultCache()
    entry = movement(tenant, product, "entry", 4)
    first = _published(tenant, [create_product(tenant, product), entry])
    await _deliver(first, database, cache)

    changed = {**entry, "payload": {**entry["payload"], "quantity": 5}}
    forged = _published(tenant, [changed])
    forged["fingerprints"] = [first["fingerprints"][1]]
    believed = await _deliver(forged, database, MemoryResultCache())
    assert [r.status for r in believed.applied.results] == [ItemStatus.DUPLICATE]
    refused = await _deliver(_without_fingerprints(forged), database, MemoryResultCache())
    assert [r.code for r in refused.applied.results] == [Code.OPERATION_ID_REUSED]
