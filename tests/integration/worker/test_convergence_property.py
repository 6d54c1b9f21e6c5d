"""Convergence, as a property: product creates, edits and deletes from several devices, delivered in
any order, any number of times, split into any batches, end in the state the LWW reference model
gives — run against the worker's real service layer, Postgres ledger (as the application role) and
Redis result cache, in process.

Times are drawn distinct and before the moment the batch is received, so clamping never moves them
and no two writes tie: the property is then well defined whatever the tie rule (request order, then
``operationId``) decides for equal times, which the scenario tests cover on their own.

A delivery that answers ``retryable`` (an edit whose create has not landed yet) is delivered again
later, as a device does, until every operation has a final result.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stockzen_contracts import ItemResult
from stockzen_contracts.payloads import PRODUCT_FIELDS
from stockzen_sync_worker.adapters.inventory_database import PostgresInventoryDatabase
from stockzen_sync_worker.adapters.result_cache import RedisResultCache
from stockzen_sync_worker.domain.lww import Version
from stockzen_sync_worker.services import apply_sync_batch
from tests.support.harness import T0, command
from tests.support.ops import create_product, delete_product, update_product
from tests.support.services import ServiceUrls
from tests.support.stack import delete_redis_keys

# The fields an edit may touch here, wire name -> column; values stay small so edits collide often.
EDITABLE = {"name": "name", "sku": "sku", "priceCents": "price_cents", "archived": "archived"}
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "name": st.sampled_from(["Mug", "Cup", "Bowl", "Plate"]),
    "sku": st.one_of(st.none(), st.sampled_from(["A-1", "B-2"])),
    "priceCents": st.one_of(st.none(), st.integers(0, 500)),
    "archived": st.booleans(),
}
MAX_RETRY_ROUNDS = 12


@dataclass(frozen=True)
class Change:
    """One device's change to one product, before it is put on the wire."""

    kind: str  # create | update | delete
    product: int
    fields: dict[str, Any]
    offset_seconds: int
    operation_id: uuid.UUID


@st.composite
def changes(draw: st.DrawFn) -> list[Change]:
    """Creates, edits and deletes of up to three products, each at a distinct time."""
    count = draw(st.integers(1, 9))
    offsets = draw(st.lists(st.integers(0, 10_000), min_size=count, max_size=count, unique=True))
    drawn = []
    for offset in offsets:
        kind = draw(st.sampled_from(["create", "create", "update", "update", "update", "delete"]))
        fields = {}
        if kind != "delete":
            names = draw(st.sets(st.sampled_from(sorted(EDITABLE)), min_size=1 if kind == "update" else 0))
            fields = {name: draw(VALUES[name]) for name in sorted(names)}
            if kind == "create":
                fields["name"] = draw(VALUES["name"])
        drawn.append(Change(kind, draw(st.integers(0, 2)), fields, offset, draw(st.uuids(version=4))))
    return drawn


def wire(tenant: uuid.UUID, products: list[uuid.UUID], change: Change) -> dict[str, Any]:
    """The operation a device sends for ``change`` (the same operation id every time)."""
    product, when = products[change.product], T0 + timedelta(seconds=change.offset_seconds)
    if change.kind == "create":
        body = create_product(tenant, product, modified_at=when, **change.fields)
    elif change.kind == "update":
        body = update_product(tenant, product, modified_at=when, **change.fields)
    else:
        body = delete_product(tenant, product, modified_at=when)
    return {**body, "operationId": str(change.operation_id), "idempotencyKey": str(change.operation_id)}


def reference_state(drawn: list[Change]) -> dict[int, dict[str, Any] | None]:
    """The LWW model: a delete leaves a tombstone for good; otherwise, once created, each field holds
    the value of the latest write (by time, then operation id) that set it. None: no row at all."""
    state: dict[int, dict[str, Any] | None] = {}
    for product in {c.product for c in drawn}:
        mine = [c for c in drawn if c.product == product]
        if any(c.kind == "delete" for c in mine):
            state[product] = {"deleted": True}
            continue
        if not any(c.kind == "create" for c in mine):
            state[product] = None
            continue
        writes: dict[str, tuple[Version, Any]] = {}
        for c in mine:
            version = Version(T0 + timedelta(seconds=c.offset_seconds), c.operation_id)
            # A create writes every field; an absent one takes its default.
            written = dict.fromkeys(PRODUCT_FIELDS) | {"archived": False} if c.kind == "create" else {}
            written |= {EDITABLE[name]: value for name, value in c.fields.items()}
            for column, value in written.items():
                if column not in writes or version > writes[column][0]:
                    writes[column] = (version, value)
        state[product] = {"deleted": False} | {column: value for column, (_, value) in writes.items()}
    return state


class Delivery:
    """Delivers batches to the real apply code and remembers each operation's latest answer."""

    def __init__(self, database: PostgresInventoryDatabase, cache: RedisResultCache, tenant: uuid.UUID) -> None:
        self._database, self._cache, self._tenant = database, cache, tenant
        self.latest: dict[str, ItemResult] = {}

    async def batch(self, ops: list[dict[str, Any]]) -> None:
        outcome = await apply_sync_batch(command(self._tenant, ops), uuid.uuid4().hex, self._database, self._cache)
        for op, result in zip(ops, outcome.applied.results, strict=True):
            self.latest[op["operationId"]] = result

    def waiting(self) -> list[str]:
        return [op for op, result in self.latest.items() if result.retryable]


async def observed_state(
    admin: asyncpg.Connection, tenant: uuid.UUID, products: list[uuid.UUID]
) -> dict[int, dict[str, Any] | None]:
    rows = {
        row["id"]: row
        for row in await admin.fetch(
            "SELECT *, deleted_at IS NOT NULL AS deleted FROM products WHERE tenant_id = $1", tenant
        )
    }
    state: dict[int, dict[str, Any] | None] = {}
    for index, product in enumerate(products):
        row = rows.get(product)
        if row is None or row["deleted"]:
            state[index] = {"deleted": True} if row else None
        else:
            state[index] = {"deleted": False} | {column: row[column] for column in PRODUCT_FIELDS}
    return state


@pytest.fixture(scope="module")
async def redis_client(database: ServiceUrls) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(database.redis_url)
    yield client
    await client.aclose()
    await delete_redis_keys(database.redis_url, f"{database.redis_prefix}convergence:")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(drawn=changes(), data=st.data())
async def test_any_delivery_of_the_same_changes_converges_on_the_lww_answer(
    drawn: list[Change],
    data: st.DataObject,
    app_pool: asyncpg.Pool,
    admin_connection: asyncpg.Connection,
    redis_client: aioredis.Redis,
    database: ServiceUrls,
) -> None:
    expected = reference_state(drawn)
    # Two tenants receive the same changes, each in an order, batching and repetition of its own.
    observed = []
    for _ in range(2):
        tenant, products = uuid.uuid4(), [uuid.uuid4() for _ in range(3)]
        cache = RedisResultCache(
            redis_client, prefix=f"{database.redis_prefix}convergence:{tenant.hex[:8]}:", result_ttl_seconds=60
        )
        delivery = Delivery(PostgresInventoryDatabase(app_pool, tombstone_retention=timedelta(days=30)), cache, tenant)
        ops = [wire(tenant, products, change) for change in drawn]
        repeats = data.draw(st.lists(st.sampled_from(ops), max_size=len(ops)), label="repeated")
        schedule = data.draw(st.permutations(ops + repeats), label="order")
        for batch in split(schedule, data.draw(st.sets(st.integers(1, max(1, len(schedule) - 1))), label="cuts")):
            await delivery.batch(batch)
        for _ in range(MAX_RETRY_ROUNDS):
            waiting = [op for op in ops if op["operationId"] in delivery.waiting()]
            if not waiting:
                break
            await delivery.batch(data.draw(st.permutations(waiting), label="retry order"))
        # Only an edit of a product nobody creates or deletes may wait for good.
        orphans = {str(c.operation_id) for c in drawn if expected[c.product] is None}
        assert set(delivery.waiting()) == orphans
        observed.append(await observed_state(admin_connection, tenant, products))
    wanted = {index: expected.get(index) for index in range(3)}
    assert observed == [wanted, wanted]


def split(schedule: list[dict[str, Any]], cuts: set[int]) -> list[list[dict[str, Any]]]:
    """``schedule`` cut into batches before each index in ``cuts``."""
    bounds = [0, *sorted(c for c in cuts if 0 < c < len(schedule)), len(schedule)]
    return [schedule[a:b] for a, b in itertools.pairwise(bounds) if a < b]
