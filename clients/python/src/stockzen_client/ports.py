"""The ports: what the sync engine needs from the outside world, as small protocols, and the failures
the gateway's port raises. The adapters (``adapters/api.py``, ``adapters/store.py``) implement them;
a test can give the engine anything that does.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from stockzen_client.domain.outbox import OutboxItem, Settled, SnapshotProgress
from stockzen_client.domain.status import Notice, SyncState

if TYPE_CHECKING:
    from stockzen_client.adapters.sse import ServerSentEvent
    from stockzen_contracts import ChangeFeedPage, ItemResult, SnapshotPage, SyncResponse

Clock = Callable[[], float]
"""Wall-clock time in unix seconds (stamps, next attempt times); tests move their own."""

Delay = Callable[[int], float]
"""Seconds to wait before an item's next attempt, from its attempt count (1 for the first failure)."""


# --- the gateway ---------------------------------------------------------------------------------


class ApiFailure(Exception):
    """A request did not give the engine an answer it can use; ``str()`` is one sentence for people."""

    retry_after: float | None = None


class Unreachable(ApiFailure):
    """No answer from the server at all (refused, reset, timed out): the device is offline."""


class ServerFailing(ApiFailure):
    """The server answered, but with a failure that may pass (5xx, 503 ``UNAVAILABLE``, 408, a bad answer)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimited(ServerFailing):
    """429 ``RATE_LIMITED``: wait ``retry_after`` seconds."""


class Unauthorized(ApiFailure):
    """401: the token is missing, invalid or expired; only a new login helps."""


class Refused(ApiFailure):
    """Another 4xx for the whole request (413, 422, ...): the server cannot take what was sent, and read
    none of it. ``status`` and ``code`` are the server's."""

    def __init__(self, message: str, status: int = 400, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class ResetRequired(ApiFailure):
    """409 ``RESET_REQUIRED``: the feed cannot resume from the checkpoint, or a snapshot from its cursor."""


@dataclass(frozen=True, slots=True)
class PushAnswer:
    """The answer to a push: 200 (every result final) or 202 (some still ``pending``)."""

    status_code: int
    response: SyncResponse


class Gateway(Protocol):
    """The server, as the engine talks to it; every failure is one of the :class:`ApiFailure` kinds."""

    async def push(self, checkpoint: str | None, operations: Sequence[dict[str, Any]]) -> PushAnswer:
        """``POST /api/sync`` with these operations (their wire JSON, as queued)."""
        ...

    async def changes(self, checkpoint: str | None) -> ChangeFeedPage:
        """One page of the change feed after ``checkpoint``."""
        ...

    async def snapshot(self, cursor: str | None) -> SnapshotPage:
        """One page of a first download (the first when ``cursor`` is None)."""
        ...

    def live_events(self) -> AsyncGenerator[ServerSentEvent, None]:
        """The live stream's events, until the server ends it."""
        ...

    async def probe(self) -> bool:
        """Whether the server answers at all."""
        ...


# --- the store -----------------------------------------------------------------------------------


class Outbox(Protocol):
    """The push side: the queued changes, and what the server's answers do to them."""

    def outbox_head(self) -> int: ...

    def sendable(self, limit: int, exclude: Collection[int] = ()) -> list[OutboxItem]: ...

    def still_queued(self, items: Sequence[OutboxItem]) -> list[OutboxItem]: ...

    def next_attempt_at(self) -> float | None: ...

    def backing_off(self, now: float) -> bool: ...

    def in_doubt_movements(self) -> int: ...

    def mark_sending(self, items: Sequence[OutboxItem]) -> None: ...

    def defer(self, items: Sequence[OutboxItem], error: str, delay: Delay, *, stored: bool | None = None) -> None: ...

    def release(self, items: Sequence[OutboxItem]) -> None: ...

    def refuse(self, item: OutboxItem, code: str, reason: str) -> Notice: ...

    def settle(self, items: Sequence[OutboxItem], results: Iterable[ItemResult], delay: Delay) -> Settled: ...

    def release_backoff(self) -> None: ...


class Replica(Protocol):
    """The pull side: the server's data as last pulled, and where the pull stands."""

    @property
    def checkpoint(self) -> str | None: ...

    def apply_page(self, page: ChangeFeedPage) -> None: ...

    def pull_finished(self) -> None: ...

    def forget_checkpoint(self) -> None: ...

    def snapshot_progress(self) -> SnapshotProgress | None: ...

    def store_snapshot_page(self, page: SnapshotPage, resumed: SnapshotProgress | None) -> SnapshotProgress: ...

    def abandon_snapshot(self) -> None: ...


class StatusRecord(Protocol):
    """What the status is made of, and where it is kept for other processes."""

    def counts(self) -> tuple[int, int, int]: ...

    def max_attempts(self) -> int: ...

    def last_queued_error(self) -> str | None: ...

    def notices(self, limit: int = 5) -> list[Notice]: ...

    def save_status(self, state: SyncState, last_error: str | None, synced_at: datetime | None) -> None: ...

    def get_meta(self, key: str) -> str | None: ...


class SyncStore(Outbox, Replica, StatusRecord, Protocol):
    """Everything the engine asks of the local store."""
