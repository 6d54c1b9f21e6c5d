"""What the client tells its user about syncing: one value, four states."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class SyncState(StrEnum):
    """Where syncing stands (see the state machine in the client's README)."""

    OFFLINE = "offline"  # the server cannot be reached; changes queue locally
    SYNCING = "syncing"  # a sync is running, or queued changes wait for their next attempt
    UP_TO_DATE = "upToDate"  # nothing left to send, and the last pull covers the last push
    ERROR = "error"  # the server answers but keeps failing; work goes on, changes stay queued

    @property
    def symbol(self) -> str:
        """A symbol that goes with the word, so the state never rests on colour alone."""
        return _SYMBOLS[self]

    @property
    def label(self) -> str:
        """The state in words, for people."""
        return _LABELS[self]


_SYMBOLS = {
    SyncState.OFFLINE: "○",
    SyncState.SYNCING: "↻",
    SyncState.UP_TO_DATE: "✓",
    SyncState.ERROR: "✗",
}
_LABELS = {
    SyncState.OFFLINE: "offline",
    SyncState.SYNCING: "syncing",
    SyncState.UP_TO_DATE: "up to date",
    SyncState.ERROR: "error",
}


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the user should know without being interrupted (a conflict settled, a change refused)."""

    at: datetime
    kind: str  # "conflict" | "rejected"
    entity_id: str  # the product, or the stock movement, the change was about
    message: str
    product_id: str | None = None  # the product the change touched (a movement's product); None if unknown


_PHASES = {"upload": "sent", "snapshot": "products", "feed": "changes"}


@dataclass(frozen=True, slots=True)
class SyncProgress:
    """How far the running sync is: ``done`` of about ``total``, in one phase.

    ``upload``: changes sent of those queued; ``snapshot``: products stored of the first download's
    total; ``feed``: changes stored in this pull of (at most) those stored plus those the server says
    remain.
    """

    phase: str  # "upload" | "snapshot" | "feed"
    done: int
    total: int

    def describe(self) -> str:
        """``products 1,200 of 2,000``."""
        return f"{_PHASES.get(self.phase, self.phase)} {self.done:,} of {self.total:,}"

    def to_json(self) -> dict[str, object]:
        """The machine-readable form."""
        return {"phase": self.phase, "done": self.done, "total": self.total}


@dataclass(frozen=True, slots=True)
class SyncStatus:
    """Everything a UI needs to show about syncing, in one immutable value (PowerSync's ``SyncStatus``)."""

    state: SyncState
    queued: int = 0
    failed: int = 0
    last_synced_at: datetime | None = None
    last_error: str | None = None
    uploading: bool = False
    downloading: bool = False
    notices: tuple[Notice, ...] = field(default=())
    progress: SyncProgress | None = None  # while a sync runs: how far it is

    def describe(self) -> str:
        """One line for people: symbol, word, counts."""
        parts = [f"{self.state.symbol} {self.state.label}", f"{self.queued} queued", f"{self.failed} failed"]
        if self.uploading:
            parts.append("uploading")
        if self.downloading:
            parts.append("downloading")
        if self.progress is not None:
            parts.append(self.progress.describe())
        if self.last_error and self.state is not SyncState.UP_TO_DATE:
            parts.append(f"last error: {self.last_error}")
        return " · ".join(parts)

    def to_json(self) -> dict[str, object]:
        """The machine-readable form (camelCase, ISO-8601 UTC times), as the CLI's ``--json`` prints it."""
        return {
            "state": self.state.value,
            "queued": self.queued,
            "failed": self.failed,
            "lastSyncedAt": self.last_synced_at.isoformat() if self.last_synced_at else None,
            "lastError": self.last_error,
            "uploading": self.uploading,
            "downloading": self.downloading,
            "progress": self.progress.to_json() if self.progress else None,
            "notices": [
                {
                    "at": n.at.isoformat(),
                    "kind": n.kind,
                    "entityId": n.entity_id,
                    "productId": n.product_id,
                    "message": n.message,
                }
                for n in self.notices
            ],
        }


def settled_state(*, queued: int, stuck: bool) -> SyncState:
    """The state a sync that reached the server ends in: up to date when nothing is left to send,
    error when queued changes keep failing, else syncing (they wait for their next attempt)."""
    if queued == 0:
        return SyncState.UP_TO_DATE
    return SyncState.ERROR if stuck else SyncState.SYNCING


@dataclass(slots=True)
class StateMachine:
    """The four states and what moves a device between them (``docs/sync-states.md``).

    - No answer at all (refused, reset, timed out) → ``offline``.
    - A sync that fails with an answer → ``syncing`` for the first and second failure in a row,
      ``error`` from the ``error_after``-th; a refused token (401) → ``error`` at once.
    - A sync that reaches the server both ways → ``upToDate`` when nothing is queued, else ``syncing``
      (changes wait for a final answer), or ``error`` if a queued change is stuck (it has had
      ``stuck_after`` attempts without a final answer).
    - A device starts ``syncing``: its first sync starts at once.

    ``shown`` is the state the status says: a change queued after an ``upToDate`` sync makes it
    ``syncing`` (the next sync is due), and a warning (a login the engine will not follow) ``error``.
    """

    error_after: int = 3
    stuck_after: int = 3
    state: SyncState = SyncState.SYNCING
    failures: int = 0  # syncs in a row that failed with an answer

    def unreachable(self) -> SyncState:
        """A request got no answer at all."""
        self.state = SyncState.OFFLINE
        return self.state

    def failed(self, *, at_once: bool = False, attempts: int = 0) -> SyncState:
        """A sync failed with an answer (``at_once``: a 401); ``attempts``: the most any queued change had."""
        self.failures += 1
        stuck = attempts >= self.stuck_after
        self.state = SyncState.ERROR if at_once or stuck or self.failures >= self.error_after else SyncState.SYNCING
        return self.state

    def succeeded(self, *, queued: int, attempts: int, caught_up: bool = True) -> SyncState:
        """A sync pushed what it could and pulled; ``caught_up`` is False when a first download waits."""
        self.failures = 0
        stuck = attempts >= self.stuck_after
        if caught_up:
            self.state = settled_state(queued=queued, stuck=stuck)
        else:
            self.state = SyncState.ERROR if stuck else SyncState.SYNCING
        return self.state

    def shown(self, *, queued: int, warning: bool = False) -> SyncState:
        """The state the status says now."""
        if warning:
            return SyncState.ERROR
        if self.state is SyncState.UP_TO_DATE and queued:
            return SyncState.SYNCING
        return self.state
