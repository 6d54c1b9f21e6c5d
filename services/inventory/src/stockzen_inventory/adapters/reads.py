"""The inventory's reads in Postgres (asyncpg), each in a transaction scoped to one tenant.

Row-level security already hides other tenants' rows; every statement also names the tenant in
its ``WHERE`` so it uses the tenant-leading indexes (and routes to one shard under Citus).

Each read has a time limit, set as the transaction's ``statement_timeout`` and as the longest wait
for a pooled connection, so a costly read ends in Postgres instead of holding one of the few
connections every tenant shares.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

import asyncpg

from stockzen_contracts import Change, ProductState, ProductView, StockMovementState
from stockzen_inventory.domain.feed import FeedPosition
from stockzen_inventory.domain.pagination import MovementCursor, ProductCursor
from stockzen_inventory.domain.products import ProductFilter, contains_pattern
from stockzen_inventory.domain.time_limits import read_budget_ms
from stockzen_inventory.ports import ListedProduct, ReadTimedOut
from stockzen_platform.postgres import Isolation, PooledConnection, tenant_transaction

_PRODUCT_COLUMNS = (
    "p.id, p.name, p.sku, p.barcode, p.unit, p.price_cents, p.low_stock_threshold, p.archived, "
    "p.deleted_at IS NOT NULL AS deleted, p.modified_at, p.checkpoint"
)
_WITH_STOCK = f"""
    SELECT {_PRODUCT_COLUMNS}, lower(p.name) AS sort_name, COALESCE(l.quantity, 0) AS stock_level
    FROM products p
    LEFT JOIN stock_levels l ON l.tenant_id = p.tenant_id AND l.product_id = p.id
"""
_GET_PRODUCT = f"{_WITH_STOCK} WHERE p.tenant_id = $1 AND p.id = $2 AND p.deleted_at IS NULL"

_MOVEMENT_COLUMNS = "id, product_id, kind, quantity, reason, occurred_at, checkpoint"


def _history_sql(after: bool) -> str:
    # One statement, so one snapshot: the product's liveness and its movements agree. No row means
    # no live product; a row of NULLs means a live product without movements (on this page).
    position = "AND (occurred_at, checkpoint) < ($4::timestamptz, $5::bigint)" if after else ""
    return f"""
        SELECT m.* FROM products p
        LEFT JOIN LATERAL (
            SELECT {_MOVEMENT_COLUMNS} FROM stock_movements
            WHERE tenant_id = p.tenant_id AND product_id = p.id {position}
            ORDER BY occurred_at DESC, checkpoint DESC LIMIT $3) m ON true
        WHERE p.tenant_id = $1 AND p.id = $2 AND p.deleted_at IS NULL
    """


_HISTORY_FIRST_PAGE = _history_sql(after=False)
_HISTORY_AFTER = _history_sql(after=True)

_FEED_POSITION = "SELECT last_checkpoint, feed_horizon FROM tenants WHERE tenant_id = $1"
# Products and movements merged by Postgres in checkpoint order: each branch reads only its first
# rows from its (tenant_id, checkpoint) index, and the page's limit applies to the union.
_FEED_CHANGES = f"""
    (SELECT 'product' AS entity, {_PRODUCT_COLUMNS}, NULL::uuid AS product_id, NULL::text AS kind,
            NULL::bigint AS quantity, NULL::text AS reason, NULL::timestamptz AS occurred_at
     FROM products p WHERE p.tenant_id = $1 AND p.checkpoint > $2 ORDER BY p.checkpoint LIMIT $3)
    UNION ALL
    (SELECT 'stockMovement', m.id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, m.checkpoint,
            m.product_id, m.kind, m.quantity, m.reason, m.occurred_at
     FROM stock_movements m WHERE m.tenant_id = $1 AND m.checkpoint > $2 ORDER BY m.checkpoint LIMIT $3)
    ORDER BY checkpoint LIMIT $3
"""


# The level as of C: today's level less the movements above C, which the (tenant_id, checkpoint)
# index finds without touching the history below C. One statement, so one snapshot.
_PRODUCTS_AS_OF = f"""
    WITH since AS (
        SELECT product_id, sum(CASE kind WHEN 'entry' THEN quantity ELSE -quantity END) AS quantity
        FROM stock_movements WHERE tenant_id = $1 AND checkpoint > $2 GROUP BY product_id)
    SELECT {_PRODUCT_COLUMNS}, COALESCE(l.quantity, 0) - COALESCE(s.quantity, 0) AS stock_level
    FROM products p
    LEFT JOIN stock_levels l ON l.tenant_id = p.tenant_id AND l.product_id = p.id
    LEFT JOIN since s ON s.product_id = p.id
    WHERE p.tenant_id = $1 AND p.deleted_at IS NULL AND p.id > $3
    ORDER BY p.id LIMIT $4
"""
_LIVE_PRODUCT_COUNT = "SELECT count(*) FROM products WHERE tenant_id = $1 AND deleted_at IS NULL"
_NO_PRODUCT = UUID(int=0)


def _product_view(row: asyncpg.Record) -> ProductView:
    return ProductView.model_validate(_with_text_checkpoint(row))  # extra columns are ignored


def _movement(row: asyncpg.Record) -> StockMovementState:
    return StockMovementState.model_validate(_with_text_checkpoint(row))


def _change(row: asyncpg.Record) -> Change:
    if row["entity"] == "product":
        return Change.of_product(ProductState.model_validate(_with_text_checkpoint(row)))
    return Change.of_movement(_movement(row))


def _with_text_checkpoint(row: asyncpg.Record) -> dict[str, Any]:
    data = dict(row)
    data["checkpoint"] = str(data["checkpoint"])  # the wire's opaque token
    return data


# The search's best plan depends on the text: a rare one is found through the trigram index
# (migration 0005), a common one by walking the name order until the page is full. A prepared
# statement's generic plan, which Postgres may switch to after five runs, cannot tell them apart.
_PLANNED_FOR_ITS_TEXT = {"plan_cache_mode": "force_custom_plan"}


def product_list_query(
    tenant_id: UUID, product_filter: ProductFilter, after: ProductCursor | None, limit: int
) -> tuple[str, list[object]]:
    """The list statement with only the conditions in use (so each variant gets a plan of its own),
    and its parameters."""
    params: list[object] = [tenant_id]

    def bind(value: object) -> str:
        params.append(value)
        return f"${len(params)}"

    where = ["p.tenant_id = $1", "p.deleted_at IS NULL"]
    if product_filter.text is not None:
        pattern = bind(contains_pattern(product_filter.text))
        where.append(f"(p.name ILIKE {pattern} OR p.sku ILIKE {pattern} OR p.barcode ILIKE {pattern})")
    if product_filter.archived is not None:
        where.append(f"p.archived = {bind(product_filter.archived)}")
    if after is not None:
        where.append(f"(lower(p.name), p.id) > ({bind(after.sort_name)}::text, {bind(after.product_id)}::uuid)")
    sql = f"{_WITH_STOCK} WHERE {' AND '.join(where)} ORDER BY lower(p.name), p.id LIMIT {bind(limit)}"
    return sql, params


class PostgresFeedSnapshot:
    """See :class:`~stockzen_inventory.ports.FeedSnapshot`."""

    def __init__(self, connection: PooledConnection, tenant_id: UUID) -> None:
        self._db = connection
        self._tenant = tenant_id

    async def position(self) -> FeedPosition:
        row = await self._db.fetchrow(_FEED_POSITION, self._tenant)
        if row is None:  # the tenant has never written: its feed is empty
            return FeedPosition(last_checkpoint=0, horizon=0)
        return FeedPosition(last_checkpoint=row["last_checkpoint"], horizon=row["feed_horizon"])

    async def changes_after(self, checkpoint: int, limit: int) -> list[Change]:
        rows = await self._db.fetch(_FEED_CHANGES, self._tenant, checkpoint, limit)
        return [_change(row) for row in rows]

    async def products_as_of(self, checkpoint: int, after: UUID | None, limit: int) -> list[ProductView]:
        rows = await self._db.fetch(_PRODUCTS_AS_OF, self._tenant, checkpoint, after or _NO_PRODUCT, limit)
        return [_product_view(row) for row in rows]

    async def live_product_count(self) -> int:
        count = await self._db.fetchval(_LIVE_PRODUCT_COUNT, self._tenant)
        return int(count or 0)


class PostgresInventoryReader:
    """See :class:`~stockzen_inventory.ports.InventoryReader`.

    ``time_limit_ms`` bounds each read (``None``: only the database's own ``statement_timeout``).
    """

    def __init__(self, pool: asyncpg.Pool, *, time_limit_ms: int | None = None, deadline: float | None = None) -> None:
        self._pool = pool
        self._time_limit_ms = time_limit_ms
        self._deadline = deadline

    def until(self, deadline: float) -> PostgresInventoryReader:
        return PostgresInventoryReader(self._pool, time_limit_ms=self._time_limit_ms, deadline=deadline)

    @asynccontextmanager
    async def _read(
        self,
        tenant_id: UUID,
        *,
        isolation: Isolation = "read_committed",
        settings: Mapping[str, str] | None = None,
    ) -> AsyncIterator[PooledConnection]:
        """A read-only tenant transaction within this reader's time limit; :class:`ReadTimedOut` past it."""
        budget_ms = read_budget_ms(self._time_limit_ms, self._deadline, time.monotonic())
        if budget_ms is not None and budget_ms <= 0:
            raise ReadTimedOut("the caller gave up before the read began")
        limited = dict(settings or {})
        if budget_ms is not None:
            limited["statement_timeout"] = str(budget_ms)
        try:
            async with tenant_transaction(
                self._pool,
                tenant_id,
                isolation=isolation,
                readonly=True,
                local_settings=limited,
                acquire_timeout=None if budget_ms is None else budget_ms / 1000,
            ) as db:
                yield db
        # statement_timeout cancels the statement (QueryCanceledError); the pool's wait raises TimeoutError.
        except (asyncpg.QueryCanceledError, TimeoutError) as exc:
            limit = "the database's time limit" if budget_ms is None else f"its time limit of {budget_ms} ms"
            raise ReadTimedOut(f"the read was stopped at {limit}") from exc

    async def list_products(
        self, tenant_id: UUID, product_filter: ProductFilter, after: ProductCursor | None, limit: int
    ) -> list[ListedProduct]:
        sql, params = product_list_query(tenant_id, product_filter, after, limit)
        settings = _PLANNED_FOR_ITS_TEXT if product_filter.text is not None else None
        async with self._read(tenant_id, settings=settings) as db:
            rows = await db.fetch(sql, *params)
        return [ListedProduct(_product_view(r), ProductCursor(r["sort_name"], r["id"])) for r in rows]

    async def get_product(self, tenant_id: UUID, product_id: UUID) -> ProductView | None:
        async with self._read(tenant_id) as db:
            row = await db.fetchrow(_GET_PRODUCT, tenant_id, product_id)
        return _product_view(row) if row is not None else None

    async def movement_history(
        self, tenant_id: UUID, product_id: UUID, after: MovementCursor | None, limit: int
    ) -> list[StockMovementState] | None:
        async with self._read(tenant_id) as db:
            if after is None:
                rows = await db.fetch(_HISTORY_FIRST_PAGE, tenant_id, product_id, limit)
            else:
                rows = await db.fetch(_HISTORY_AFTER, tenant_id, product_id, limit, after.occurred_at, after.checkpoint)
        if not rows:
            return None
        return [_movement(row) for row in rows if row["id"] is not None]

    @asynccontextmanager
    async def feed_snapshot(self, tenant_id: UUID) -> AsyncIterator[PostgresFeedSnapshot]:
        async with self._read(tenant_id, isolation="repeatable_read") as db:
            yield PostgresFeedSnapshot(db, tenant_id)
