"""What the gateway's service layer needs from the outside world; adapters implement these."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol
from uuid import UUID

from stockzen_contracts import ApplySyncBatch, SyncBatchApplied

from .domain.idempotency import KeyClaim, StoredResponse


class PublishFailed(Exception):
    """The broker did not confirm the batch. It may still have taken it (a confirm lost to a time-out or
    a broken link), so the operations may or may not be applied: the client retries with the same ids."""


class BatchPublisher(Protocol):
    """Puts sync batches on the queue, confirmed by the broker."""

    async def publish(self, command: ApplySyncBatch) -> None:
        """Return once the broker confirmed it holds the message durably, or raise :class:`PublishFailed`."""
        ...


class SyncState(Protocol):
    """Idempotency-Key records and the way results come back (Redis in production)."""

    async def claim_key(self, tenant_id: UUID, key: str, fingerprint: str, *, in_flight_seconds: int) -> KeyClaim:
        """Claim ``key`` for this request (the claim carries a fresh token), or learn it is running,
        finished, or used for another body."""
        ...

    async def complete_key(
        self, tenant_id: UUID, key: str, token: str, response: StoredResponse, *, ttl_seconds: int
    ) -> bool:
        """Keep the final response for replays, only if the claim ``token`` still holds the key
        (atomically); ``False`` when the claim was lost (expired, or the store restarted)."""
        ...

    async def release_key(self, tenant_id: UUID, key: str, token: str) -> None:
        """Forget a claim whose answer must not be replayed, only if ``token`` still holds it."""
        ...

    def new_reply_key(self) -> str:
        """A fresh, unguessable reply address for one batch."""
        ...

    async def wait_for_reply(self, reply_to: str, timeout_seconds: float) -> SyncBatchApplied | None:
        """The worker's results, or ``None`` past the deadline or when they cannot be waited for."""
        ...


class CheckpointSubscription(Protocol):
    """One listener's view of its tenant's new checkpoints."""

    async def next_checkpoint(self, timeout_seconds: float) -> str | None:
        """The next announced checkpoint, or ``None`` when none came within the timeout."""
        ...

    @property
    def closed(self) -> bool:
        """True once the gateway is shutting down: the listener should end its stream."""
        ...


class CheckpointAnnouncements(Protocol):
    """Announcements, per tenant, of checkpoints the worker committed (a hint: may drop some)."""

    def subscribe(self, tenant_id: UUID) -> AbstractAsyncContextManager[CheckpointSubscription]:
        """Listen to ``tenant_id``'s announcements for as long as the context is open."""
        ...

    def close_soon(self) -> None:
        """End every open subscription (safe to call from a signal handler)."""
        ...

    async def aclose(self) -> None:
        """End every open subscription and release the connection."""
        ...
