"""The SQL that enforces last-writer-wins (``domain/lww.py``) agrees with the Python rule, as a property.

Product writes with versions drawn to tie often (equal times, equal request sequences, any
operation ids), some fields present and some absent, creates, edits and deletes of two products,
cut into one to three batches: Postgres (as the application role) settles them with the worker's
own adapter, and a fold of :func:`winning_fields` over :class:`Version` says what it should have
done, write by write and in the rows it leaves.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stockzen_contracts.payloads import PRODUCT_FIELDS
from stockzen_sync_worker.adapters.inventory_database import PostgresInventoryDatabase
from stockzen_sync_worker.domain.lww import Version, winning_fields
from stockzen_sync_worker.domain.outcomes import (
    Effect,
    ProductDeleted,
    ProductMerged,
    ProductWasDeleted,
    UnknownProduct,
)
from stockzen_sync_worker.ports import ProductWrite, ProductWriteKind
from tests.support.harness import T0

VALUES: dict[str, st.SearchStrategy[Any]] = {
    "name": st.sampled_from(["Mug", "Cup"]),
    "sku": st.one_of(st.none(), st.sampled_from(["A-1", "B-2"])),
    "price_cents": st.one_of(st.none(), st.integers(0, 3)),
    "archived": st.booleans(),
}
KINDS: list[ProductWriteKind] = ["create", "update", "update", "delete"]


@st.composite
def versions(draw: st.DrawFn) -> Version:
    """Versions that tie often: three times, three request sequences, any operation id."""
    return Version(
        T0 + timedelta(microseconds=draw(st.integers(0, 2))),
        draw(st.uuids(version=4)),
        draw(st.integers(0, 2)),
    )


@st.composite
def product_writes(draw: st.DrawFn, products: list[uuid.UUID]) -> ProductWrite:
    kind = draw(st.sampled_from(KINDS))
    changes: dict[str, Any] = {}
    if kind == "create":  # a create carries every field, as the contract's does
        changes = dict.fromkeys(PRODUCT_FIELDS) | {"archived": False, "name": draw(VALUES["name"])}
    if kind != "delete":
        names = draw(st.sets(st.sampled_from(sorted(VALUES))))
        changes |= {name: draw(VALUES[name]) for name in sorted(names)}
    return ProductWrite(kind, draw(st.sampled_from(products)), changes, draw(versions()))


@dataclass
class Modelled:
    """A product as the Python rule has it."""

    present: bool = False
    deleted: bool = False
    fields: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)


def expected_effect(product: Modelled, write: ProductWrite) -> tuple[str, frozenset[str]]:
    """Apply ``write`` to ``product`` by the Python rule; say what it did and which fields it won."""
    if write.kind == "delete":
        if not product.present:
            product.fields = dict.fromkeys(PRODUCT_FIELDS) | {"archived": False}
        product.present = product.deleted = True
        return "deleted", frozenset()
    if product.deleted:
        return "was_deleted", frozenset()
    if not product.present and write.kind == "update":
        return "unknown", frozenset()
    if not product.present:
        product.present, product.fields = True, dict.fromkeys(PRODUCT_FIELDS)
    won = winning_fields(write.version, list(write.changes), product.versions)
    for name in won:
        product.fields[name] = write.changes[name]
        product.versions[name] = write.version.encode()
    return "merged", frozenset(won)


def observed_effect(effect: Effect) -> tuple[str, frozenset[str]]:
    match effect:
        case ProductMerged(won=won):
            return "merged", frozenset(won)
        case ProductWasDeleted():
            return "was_deleted", frozenset()
        case ProductDeleted():
            return "deleted", frozenset()
        case UnknownProduct():
            return "unknown", frozenset()
    raise AssertionError(f"not a product effect: {effect}")


def state_of(effect: Effect) -> dict[str, Any] | None:
    if isinstance(effect, ProductMerged | ProductWasDeleted | ProductDeleted):
        return {"deleted": effect.state.deleted} | {name: getattr(effect.state, name) for name in PRODUCT_FIELDS}
    return None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
async def test_the_sql_and_the_python_rule_pick_the_same_winners(
    data: st.DataObject, app_pool: asyncpg.Pool, admin_connection: asyncpg.Connection
) -> None:
    tenant, products = uuid.uuid4(), [uuid.uuid4(), uuid.uuid4()]
    writes = data.draw(st.lists(product_writes(products), min_size=1, max_size=8), label="writes")
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(writes) - 1)), max_size=2), label="cuts"))
    database = PostgresInventoryDatabase(app_pool, tombstone_retention=timedelta(days=30))
    model = {product: Modelled() for product in products}

    for start, end in zip([0, *cuts], [*cuts, len(writes)], strict=True):
        batch = writes[start:end]
        async with database.for_tenant(tenant) as transaction:
            effects = await transaction.write_products(batch)
        for write, effect in zip(batch, effects, strict=True):
            wanted = model[write.product_id]
            assert observed_effect(effect) == expected_effect(wanted, write), write
            state = state_of(effect)
            if state is not None:
                assert state == {"deleted": wanted.deleted} | wanted.fields

    rows = {
        row["id"]: row
        for row in await admin_connection.fetch(
            "SELECT *, deleted_at IS NOT NULL AS deleted FROM products WHERE tenant_id = $1", tenant
        )
    }
    for product, wanted in model.items():
        row = rows.get(product)
        assert (row is not None) == wanted.present
        if row is not None:
            assert json.loads(row["field_versions"]) == wanted.versions
            assert {"deleted": row["deleted"]} | {name: row[name] for name in PRODUCT_FIELDS} == {
                "deleted": wanted.deleted
            } | wanted.fields
