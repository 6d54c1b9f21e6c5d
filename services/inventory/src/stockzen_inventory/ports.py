"""What the inventory's service layer needs from its database; adapters implement these."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

from stockzen_contracts import Change, ProductView, StockMovementState

from .domain.feed import FeedPosition
from .domain.pagination import MovementCursor, ProductCursor
from .domain.products import ProductFilter


class ReadTimedOut(Exception):
    """A read ran out of time (its own limit, or its caller's deadline) and was stopped."""


@dataclass(frozen=True, slots=True)
class ListedProduct:
    """A product as the list shows it, and its position in the list's order (for the next cursor)."""

    view: ProductView
    position: ProductCursor


class FeedSnapshot(Protocol):
    """One consistent, read-only view of a tenant's feed: every read sees the same commits."""

    async def position(self) -> FeedPosition:
        """The tenant's last checkpoint and feed horizon (zeros for a tenant that never wrote)."""
        ...

    async def changes_after(self, checkpoint: int, limit: int) -> list[Change]:
        """The first ``limit`` changes above ``checkpoint`` in checkpoint order: products' current
        states (tombstones included) and movements."""
        ...

    async def products_as_of(self, checkpoint: int, after: UUID | None, limit: int) -> list[ProductView]:
        """Up to ``limit`` live products with an id above ``after``, by id, each with its stock level
        counting only the movements up to ``checkpoint``."""
        ...

    async def live_product_count(self) -> int:
        """How many live products the tenant has."""
        ...


class InventoryReader(Protocol):
    """Reads one tenant's inventory; every read runs under that tenant's row-level security.

    Every read has a time limit; past it the read is stopped and raises :class:`ReadTimedOut`.
    """

    def until(self, deadline: float) -> InventoryReader:
        """This reader, with each read also stopped at ``deadline`` (:func:`time.monotonic` seconds)
        when that comes before the reader's own limit."""
        ...

    async def list_products(
        self, tenant_id: UUID, product_filter: ProductFilter, after: ProductCursor | None, limit: int
    ) -> list[ListedProduct]:
        """Up to ``limit`` live products after ``after``, ordered by ``(lower(name), id)``."""
        ...

    async def get_product(self, tenant_id: UUID, product_id: UUID) -> ProductView | None:
        """A live product with its stock level (``None`` if unknown, deleted or another tenant's)."""
        ...

    async def movement_history(
        self, tenant_id: UUID, product_id: UUID, after: MovementCursor | None, limit: int
    ) -> list[StockMovementState] | None:
        """Up to ``limit`` movements of a live product after ``after``, newest first (``None``: no such product)."""
        ...

    def feed_snapshot(self, tenant_id: UUID) -> AbstractAsyncContextManager[FeedSnapshot]:
        """A read-only REPEATABLE READ transaction to read one feed page in."""
        ...
