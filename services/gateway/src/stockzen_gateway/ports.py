"""What the gateway's service layer needs from the outside world; adapters implement these."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol
from uuid import UUID

from stockzen_contracts import ApplySyncBatch, SyncBatchApplied
from stockzen_platform.identity import Identity

from .domain.rate_limits import RateDecision, RateLimit
from .domain.request_keys import RequestKeyClaim, StoredResponse
from .domain.results import WorkerReply


class PublishFailed(Exception):
    """The broker did not confirm the batch. It may still have taken it (a confirm lost to a time-out or
    a broken link), so the operations may or may not be applied: the client retries with the same ids."""


class BatchPublisher(Protocol):
    """Puts sync batches on the queue, confirmed by the broker."""

    async def publish(self, command: ApplySyncBatch) -> None:
        """Return once the broker confirmed it holds the message durably, or raise :class:`PublishFailed`."""
        ...


class SyncState(Protocol):
    """request-key records and the way results come back (Redis in production)."""

    async def claim_request_key(
        self, tenant_id: UUID, key: str, fingerprint: str, *, in_flight_seconds: int
    ) -> RequestKeyClaim:
        """Claim ``key`` for this request (the claim carries a fresh token), or learn it is running,
        finished, or used for another body."""
        ...

    async def complete_request_key(
        self, tenant_id: UUID, key: str, token: str, response: StoredResponse, *, ttl_seconds: int
    ) -> bool:
        """Keep the final response for replays, only if the claim ``token`` still holds the key
        (atomically); ``False`` when the claim was lost (expired, or the store restarted), or when the
        tenant's budget for kept answers is spent (the claim is then let go: a retry runs again)."""
        ...

    async def release_request_key(self, tenant_id: UUID, key: str, token: str) -> None:
        """Forget a claim whose answer must not be replayed, only if ``token`` still holds it."""
        ...

    def new_reply_key(self) -> str:
        """A fresh, unguessable reply address for one batch."""
        ...

    async def wait_for_reply(self, reply_to: str, timeout_seconds: float) -> WorkerReply | SyncBatchApplied | None:
        """The worker's results (as the worker wrote them, or already read), or ``None`` past the deadline or
        when they cannot be waited for."""
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


class RateLimiterUnavailable(Exception):
    """The rate limiter's store could not answer (what then is the domain's call: it fails open)."""


class RateLimiterOverloaded(RateLimiterUnavailable):
    """The limiter's own connections stayed busy: its own load, never a reason to let a request through."""


class RateLimiter(Protocol):
    """Token buckets per (scope, tenant, user) and per (scope, tenant), shared by every gateway replica
    (Redis in production)."""

    async def take_token(self, limit: RateLimit, tenant_id: UUID, user_id: str) -> RateDecision:
        """Spend one request from the caller's bucket for ``limit`` and from its tenant's ceiling (both
        or neither); raise :class:`RateLimiterUnavailable` when its store cannot answer, and
        :class:`RateLimiterOverloaded` when the limiter is too busy to ask it."""
        ...


class InventoryUnavailable(Exception):
    """The inventory service could not answer (down, too slow, or refusing the gateway's credentials)."""


@dataclass(frozen=True, slots=True)
class InventoryAnswer:
    """Inventory's answer, passed on to the client as it is: status, body and the headers that matter."""

    status_code: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class InventoryReads(Protocol):
    """The inventory service's read API, asked on behalf of a verified caller."""

    async def get(
        self, path: str, identity: Identity, *, params: Mapping[str, str | int | bool], request_id: str | None = None
    ) -> InventoryAnswer:
        """GET ``path`` for ``identity``; raise :class:`InventoryUnavailable` when there is no usable answer."""
        ...
