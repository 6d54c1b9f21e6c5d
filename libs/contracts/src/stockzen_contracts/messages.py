"""What the gateway puts on the queue for the sync worker, and what the worker answers."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from pydantic import Field, JsonValue

from ._wire import UtcDateTime, WireModel, text
from .operations import Operation
from .sync import MAX_OPERATIONS_CEILING, ItemResult

APPLY_SYNC_BATCH_ACTOR = "apply_sync_batch"
"""The dramatiq actor name the gateway addresses its messages to."""


class _SyncBatchHeader(WireModel):
    """What a batch message says about itself, whatever its operations."""

    request_id: Annotated[str, text(64, min_length=1)]
    tenant_id: UUID
    user_id: Annotated[str, text(255, min_length=1)]
    received_at: UtcDateTime
    reply_to: Annotated[str, text(200, min_length=1)]


class ApplySyncBatch(_SyncBatchHeader):
    """Command: apply these already-validated operations for one tenant.

    The worker may be handed none of them valid (a message written by another version): it then
    only answers with their refusals, so an empty list is allowed here; the gateway never sends one.
    """

    operations: Annotated[list[Operation], Field(max_length=MAX_OPERATIONS_CEILING)]


class RawSyncBatch(_SyncBatchHeader):
    """An :class:`ApplySyncBatch` as the worker first reads it: the header checked, each operation
    still raw, so that one operation it cannot read is refused alone instead of poisoning the batch."""

    operations: Annotated[list[JsonValue], Field(min_length=1, max_length=MAX_OPERATIONS_CEILING)]


class SyncBatchApplied(WireModel):
    """Event: the worker's results for one :class:`ApplySyncBatch`, in its order."""

    request_id: str
    checkpoint: str | None
    results: list[ItemResult]


CHECKPOINT_CHANNEL = "checkpoints:"
"""Redis pub/sub channel (after the key prefix, before the tenant id) announcing a tenant's new
checkpoint; the message is the checkpoint itself. A hint for live updates, never the truth."""


def checkpoint_channel(prefix: str, tenant_id: UUID) -> str:
    """The pub/sub channel on which ``tenant_id``'s committed checkpoints are announced."""
    return f"{prefix}{CHECKPOINT_CHANNEL}{tenant_id}"
