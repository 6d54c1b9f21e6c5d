"""The change feed: which checkpoints a client may resume from, and how one page is put together.

Why a client pulling ``since=checkpoint`` never misses a commit
---------------------------------------------------------------
A checkpoint is a per-tenant counter (``tenants.last_checkpoint``), not a global sequence. Every
writer of a tenant first locks that tenant's row and keeps the lock until it commits, and takes
its checkpoints (``next_checkpoint()``) under that lock. So checkpoints are handed out in commit
order: a transaction holding checkpoint *n* has committed before anyone can take *n + 1*.

Hence in any snapshot, the checkpoints visible are a prefix ``1..last_checkpoint`` of the
tenant's counter (minus values whose row was since superseded). A page is read in one
REPEATABLE READ snapshot, together with ``last_checkpoint``; everything up to that value is in
the snapshot, and everything committed later gets a higher checkpoint. Resuming from the page's
checkpoint therefore sees each later change, exactly once. (With a global sequence, a transaction
could take 7, another take 8 and commit first: a reader would move past 8 and never see 7.)

Products are compacted: the feed carries each product's *current* state at its latest
checkpoint, so a state superseded before the pull is not repeated. A product changed after a
client passed it gets a new, higher checkpoint and is shown again. Movements are append-only and
each appears once.

A first download does not replay the ledger: it reads a *snapshot*, every live product with its
stock level as of one checkpoint C, then follows the feed from C. Each snapshot page is read in
its own REPEATABLE READ transaction, at any time after C was read; it shows the level as of C by
taking, from the current level, the movements above C (the ledger is append-only, so the movements
up to C never change). Everything above C reaches the client through the feed, exactly once. A
product on a page may be newer than C (the feed brings that state again, and upserts are
idempotent), and a product deleted after C is missing from later pages, while its tombstone, above
C, is in the feed. A snapshot whose C falls below the horizon must start again, like a checkpoint.

Deleted products leave tombstones, which the sync worker purges after ``TOMBSTONE_RETENTION_DAYS``,
raising ``tenants.feed_horizon`` to the highest purged checkpoint. A client whose checkpoint is
below the horizon may have missed a purged delete, so it must re-download (``RESET_REQUIRED``);
so must a client whose checkpoint is ahead of the tenant's counter (the server was restored from
a backup and that checkpoint names changes it no longer has).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from stockzen_contracts import Change, ChangeFeedPage

_CHECKPOINT = re.compile(r"^(0|[1-9][0-9]{0,18})$")
MAX_CHECKPOINT = 2**63 - 1  # Postgres bigint


class InvalidCheckpoint(ValueError):
    """The checkpoint is not a token this service hands out."""


class ResetRequired(Exception):
    """The client cannot resume from its checkpoint: it must discard its copy and download again."""


@dataclass(frozen=True, slots=True)
class FeedPosition:
    """Where a tenant's feed stands: its last checkpoint, and the highest one purged (0: none)."""

    last_checkpoint: int
    horizon: int


def parse_checkpoint(token: str | None) -> int | None:
    """The counter value a checkpoint token names; ``None`` when the client has none yet."""
    if token is None:
        return None
    if not _CHECKPOINT.match(token) or int(token) > MAX_CHECKPOINT:
        raise InvalidCheckpoint("checkpoint must be a value this API returned (omit it for a first download)")
    return int(token)


def format_checkpoint(value: int) -> str:
    """The token of a counter value (the same token ``POST /api/sync`` returns)."""
    return str(value)


def check_resumable(since: int | None, position: FeedPosition) -> None:
    """Raise :class:`ResetRequired` when the feed cannot bring a client at ``since`` up to date.

    A client without a checkpoint downloads everything that exists; purged tombstones do not
    matter to it, as it holds nothing they would delete.
    """
    if since is None:
        return
    if since < position.horizon:
        raise ResetRequired(
            f"checkpoint {since} is older than the tombstone retention window (changes up to "
            f"{position.horizon} were purged): discard local data and download again without a checkpoint"
        )
    if since > position.last_checkpoint:
        raise ResetRequired(
            f"checkpoint {since} is ahead of this tenant's data (last checkpoint {position.last_checkpoint}): "
            "discard local data and download again without a checkpoint"
        )


def assemble_feed_page(changes: list[Change], *, limit: int, position: FeedPosition) -> ChangeFeedPage:
    """One page from (up to) the first ``limit + 1`` changes after a checkpoint, in checkpoint order.

    When more follow, the next pull resumes after the last change shown; otherwise after the
    tenant's last checkpoint, read in the same snapshot (it may be higher than the last change
    shown, when the latest changes were superseded product states).
    """
    page, has_more = changes[:limit], len(changes) > limit
    checkpoint = page[-1].checkpoint if has_more else format_checkpoint(position.last_checkpoint)
    # Each checkpoint names at most one change, so the distance to the last one bounds what is left.
    remaining = position.last_checkpoint - int(checkpoint) if has_more else 0
    return ChangeFeedPage(checkpoint=checkpoint, has_more=has_more, changes=page, remaining=remaining)


def snapshot_checkpoint(resuming_at: int | None, position: FeedPosition) -> int:
    """The checkpoint C a snapshot page is read as of: the tenant's last one for a first page, the
    cursor's for a later page (which must still be resumable, see :func:`check_resumable`)."""
    if resuming_at is None:
        return position.last_checkpoint
    check_resumable(resuming_at, position)
    return resuming_at
