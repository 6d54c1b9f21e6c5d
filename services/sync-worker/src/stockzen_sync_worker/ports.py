"""What the service layer needs from the outside world; adapters implement these."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol
from uuid import UUID

from stockzen_contracts import ItemResult, Operation, ProductState, RecordStockMovement, SyncBatchApplied

from .domain.lww import Version
from .domain.outcomes import Effect, StoredResult


class WriteRefused(Exception):
    """The database refused one operation for good (a constraint or data error): reject that item only."""


ProductWriteKind = Literal["create", "update", "delete"]


@dataclass(frozen=True, slots=True)
class ProductWrite:
    """A create, edit or delete of a product, with the version it carries under last-writer-wins
    (``changes`` is empty for a delete)."""

    kind: ProductWriteKind
    product_id: UUID
    changes: dict[str, Any]
    version: Version


ProductDecision = Literal["create", "delete"]
"""What a batch's creates and deletes of a product decide before a movement on it: ``delete`` once
any delete came (deletes win; a tombstone takes no create), else ``create`` once a create came."""


@dataclass(frozen=True, slots=True)
class MovementToRecord:
    """A movement to append, and what its batch's earlier writes decided about its product
    (``None``: nothing; an edit never changes whether a product is live).

    A batch's movements are recorded before its product writes, so the database judges a movement
    against its product as the batch found it, changed by that decision: after ``delete`` it is
    gone; after ``create`` it is live unless it was a tombstone already."""

    operation: RecordStockMovement
    occurred_at: datetime
    after: ProductDecision | None = None


class TenantTransaction(Protocol):
    """One tenant's transaction on the inventory database, holding the tenant's checkpoint counter."""

    async def stored_results(self, operation_ids: Sequence[UUID]) -> dict[UUID, StoredResult]:
        """Durable results of operations already applied (the dedupe truth)."""
        ...

    def refusals(self) -> AbstractAsyncContextManager[None]:
        """A block whose permanent refusals by the database leave it as :class:`WriteRefused`, as in
        :meth:`savepoint`, but with no savepoint (two round trips fewer): nothing is undone, so after
        a refusal the transaction is good only for rolling back. For a batch alone in its transaction."""
        ...

    def savepoint(self) -> AbstractAsyncContextManager[None]:
        """A savepoint: what fails inside it is undone without undoing the other operations.

        A permanent refusal by the database leaves the block as :class:`WriteRefused`; anything
        else (a lost connection, a bug) propagates and fails the whole batch, to be retried.
        """
        ...

    async def write_products(self, writes: Sequence[ProductWrite]) -> list[Effect]:
        """Apply product writes in order, field by field under last-writer-wins (deletes win, and
        leave a tombstone); one effect per write, in the same order. A later write of the same
        product sees the earlier ones; every write that changes its product takes a checkpoint."""
        ...

    async def record_movement(self, operation: RecordStockMovement, occurred_at: datetime) -> Effect:
        """Append a movement to the ledger (its stock level follows in the same transaction)."""
        ...

    async def record_movements(self, movements: Sequence[MovementToRecord]) -> list[Effect]:
        """Append several movements at once, in order (as :meth:`record_movement` would one by one,
        with each product as ``after`` says); one effect per movement, in the same order. A movement
        id taken earlier in the same call is refused like one taken before."""
        ...

    async def remember(self, operation: Operation, message_id: str, result: ItemResult, fingerprint: str) -> None:
        """Record the operation's result and fingerprint in the same transaction as its effect."""
        ...

    async def remember_all(self, entries: Sequence[tuple[Operation, ItemResult, str]], message_id: str) -> None:
        """:meth:`remember` for several (operation, result, fingerprint) at once."""
        ...

    async def purge_expired_tombstones(self) -> None:
        """Drop tombstones past the retention window (keeping their ids) and move the feed horizon past them."""
        ...

    async def product_states(self, product_ids: Sequence[UUID]) -> dict[UUID, ProductState]:
        """The products as they stand now (one whose tombstone was purged: a tombstone with no fields);
        a product never seen is left out."""
        ...

    async def checkpoint(self) -> int:
        """The tenant's checkpoint as of this transaction's changes."""
        ...


class InventoryDatabase(Protocol):
    """Opens tenant-scoped transactions on the inventory database."""

    def for_tenant(self, tenant_id: UUID) -> AbstractAsyncContextManager[TenantTransaction]:
        """A transaction scoped to ``tenant_id``; committed when the block ends without error."""
        ...

    async def read_checkpoint(self, tenant_id: UUID) -> int:
        """The tenant's current checkpoint (0 for a tenant never seen)."""
        ...

    async def product_states(self, tenant_id: UUID, product_ids: Sequence[UUID]) -> dict[UUID, ProductState]:
        """:meth:`TenantTransaction.product_states`, read in a transaction of its own."""
        ...


class ResultCache(Protocol):
    """The Redis fast path: recent results and the way back to the waiting gateway."""

    async def lookup(
        self, tenant_id: UUID, operation_ids: Sequence[UUID]
    ) -> tuple[dict[UUID, StoredResult], int | None]:
        """Known results and the tenant's last known checkpoint, in one round trip."""
        ...

    async def deliver(
        self,
        tenant_id: UUID,
        results: dict[UUID, StoredResult],
        checkpoint: int,
        reply_to: str,
        applied: SyncBatchApplied,
    ) -> None:
        """Keep the new results (with a TTL), advance the cached checkpoint, and hand the batch's
        results to the gateway waiting on ``reply_to``; announce ``checkpoint`` to the tenant's
        live listeners when it moved the cached checkpoint forward (called after the tenant
        transaction committed)."""
        ...
