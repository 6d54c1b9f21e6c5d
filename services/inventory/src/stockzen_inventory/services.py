"""The inventory's service layer: the read API's use cases, each for one tenant.

Raises the domain's :class:`~stockzen_inventory.domain.pagination.InvalidCursor`,
:class:`~stockzen_inventory.domain.feed.InvalidCheckpoint` and
:class:`~stockzen_inventory.domain.feed.ResetRequired`, and :class:`ProductNotFound`.
"""

from __future__ import annotations

from uuid import UUID

from stockzen_contracts import ChangeFeedPage, MovementPage, ProductPage, ProductView, SnapshotPage

from .domain.feed import (
    assemble_feed_page,
    check_resumable,
    format_checkpoint,
    parse_checkpoint,
    snapshot_checkpoint,
)
from .domain.pagination import (
    MovementCursor,
    SnapshotCursor,
    decode_movement_cursor,
    decode_product_cursor,
    decode_snapshot_cursor,
    encode_movement_cursor,
    encode_product_cursor,
    encode_snapshot_cursor,
    split_page,
)
from .domain.products import ProductFilter
from .ports import InventoryReader


class ProductNotFound(LookupError):
    """No live product of this tenant has that id (it never existed, was deleted, or is another tenant's)."""


async def list_products(
    reader: InventoryReader, tenant_id: UUID, product_filter: ProductFilter, *, cursor: str | None, limit: int
) -> ProductPage:
    """One page of the tenant's live products with their stock, by name."""
    after = decode_product_cursor(cursor) if cursor is not None else None
    rows, more = split_page(await reader.list_products(tenant_id, product_filter, after, limit + 1), limit)
    next_cursor = encode_product_cursor(rows[-1].position) if more else None
    return ProductPage(items=[row.view for row in rows], next_cursor=next_cursor)


async def get_product(reader: InventoryReader, tenant_id: UUID, product_id: UUID) -> ProductView:
    """One live product with its stock."""
    product = await reader.get_product(tenant_id, product_id)
    if product is None:
        raise ProductNotFound(product_id)
    return product


async def movement_history(
    reader: InventoryReader, tenant_id: UUID, product_id: UUID, *, cursor: str | None, limit: int
) -> MovementPage:
    """One page of a live product's movements, newest first."""
    after = decode_movement_cursor(cursor) if cursor is not None else None
    fetched = await reader.movement_history(tenant_id, product_id, after, limit + 1)
    if fetched is None:
        raise ProductNotFound(product_id)
    movements, more = split_page(fetched, limit)
    last = movements[-1] if more else None
    next_cursor = encode_movement_cursor(MovementCursor(last.occurred_at, int(last.checkpoint))) if last else None
    return MovementPage(items=movements, next_cursor=next_cursor)


async def change_feed(
    reader: InventoryReader, tenant_id: UUID, *, checkpoint: str | None, limit: int
) -> ChangeFeedPage:
    """Every change of the tenant after ``checkpoint``, in checkpoint order (see :mod:`.domain.feed`)."""
    since = parse_checkpoint(checkpoint)
    async with reader.feed_snapshot(tenant_id) as snapshot:
        position = await snapshot.position()
        check_resumable(since, position)
        start = since or 0
        changes = await snapshot.changes_after(start, limit + 1)
    return assemble_feed_page(changes, limit=limit, position=position)


async def snapshot(reader: InventoryReader, tenant_id: UUID, *, cursor: str | None, limit: int) -> SnapshotPage:
    """One page of a first download: live products by id with their stock as of one checkpoint
    (see :mod:`.domain.feed`); the first page also counts them."""
    after = decode_snapshot_cursor(cursor) if cursor is not None else None
    async with reader.feed_snapshot(tenant_id) as snap:
        position = await snap.position()
        at = snapshot_checkpoint(after.checkpoint if after else None, position)
        fetched = await snap.products_as_of(at, after.product_id if after else None, limit + 1)
        total = await snap.live_product_count() if after is None else None
    items, more = split_page(fetched, limit)
    next_cursor = encode_snapshot_cursor(SnapshotCursor(at, items[-1].id)) if more else None
    return SnapshotPage(checkpoint=format_checkpoint(at), items=items, next_cursor=next_cursor, total_products=total)
