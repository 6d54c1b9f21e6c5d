"""What the gateway puts on the queue for the sync worker, and what the worker answers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Self
from uuid import UUID

from pydantic import Field, model_validator
from pydantic_core import to_json

from ._wire import UtcDateTime, WireModel, text
from .fingerprints import Fingerprint, operation_fingerprint, wire_fingerprint
from .operations import Operation
from .sync import MAX_OPERATIONS_CEILING, ItemResult

APPLY_SYNC_BATCH_ACTOR = "apply_sync_batch"
"""The dramatiq actor name the gateway addresses its messages to."""

# Each operation's fingerprint travels with it, computed by the gateway from the operation it
# validated and publishes, so the worker need not hash every operation again. The worker takes it
# as given: the queue is internal and the gateway is its only publisher. A wrong fingerprint could
# only make a reused operationId pass for a replay (or the reverse), and whoever can publish to the
# queue can already write any operation for any tenant, so trusting it widens nothing. A message without fingerprints
# (published before they were carried) still reads: the worker then computes them itself. A worker
# older than this field refuses a message that carries it, so workers are deployed before gateways.
Fingerprints = Annotated[list[Fingerprint], Field(max_length=MAX_OPERATIONS_CEILING)]


class _SyncBatchHeader(WireModel):
    """What a batch message says about itself, whatever its operations."""

    request_id: Annotated[str, text(64, min_length=1)]
    tenant_id: UUID
    user_id: Annotated[str, text(255, min_length=1)]
    received_at: UtcDateTime
    reply_to: Annotated[str, text(200, min_length=1)]


def _one_fingerprint_per_operation(operations: Sequence[object], fingerprints: Sequence[str] | None) -> None:
    if fingerprints is not None and len(fingerprints) != len(operations):
        raise ValueError(
            f"fingerprints must be one per operation ({len(fingerprints)} for {len(operations)} operations)"
        )


class ApplySyncBatch(_SyncBatchHeader):
    """Command: apply these already-validated operations for one tenant.

    The worker may be handed none of them valid (a message written by another version): it then
    only answers with their refusals, so an empty list is allowed here; the gateway never sends one.
    ``fingerprints``, when present, holds each operation's fingerprint in the same order.
    """

    operations: Annotated[list[Operation], Field(max_length=MAX_OPERATIONS_CEILING)]
    fingerprints: Fingerprints | None = None

    @model_validator(mode="after")
    def _fingerprints_line_up(self) -> Self:
        _one_fingerprint_per_operation(self.operations, self.fingerprints)
        return self

    def operation_fingerprints(self) -> list[str]:
        """Each operation's fingerprint, in order: those the message carries, else computed here."""
        if self.fingerprints is not None:
            return self.fingerprints
        return [operation_fingerprint(op) for op in self.operations]

    def to_message(self) -> dict[str, Any]:
        """The queue message for this batch: its wire form with every operation's fingerprint.

        Each operation's wire form is made once, and its fingerprint is hashed from that same form
        (unless the batch already carries its fingerprints).
        """
        operations = [op.to_wire() for op in self.operations]
        fingerprints = self.fingerprints
        if fingerprints is None:
            fingerprints = [wire_fingerprint(wire) for wire in operations]
        header = self.model_dump(mode="json", exclude={"operations", "fingerprints"})
        return {**header, "operations": operations, "fingerprints": fingerprints}


class RawSyncBatch(_SyncBatchHeader):
    """An :class:`ApplySyncBatch` as the worker first reads it: the header checked, each operation
    still raw, so that one operation it cannot read is refused alone instead of poisoning the batch.

    The operations are not walked here: the message was decoded from JSON, so each is a JSON value
    already, and :func:`~stockzen_contracts.parse_operation` checks every one of them next.
    """

    operations: Annotated[list[Any], Field(min_length=1, max_length=MAX_OPERATIONS_CEILING)]
    fingerprints: Fingerprints | None = None

    @model_validator(mode="after")
    def _fingerprints_line_up(self) -> Self:
        _one_fingerprint_per_operation(self.operations, self.fingerprints)
        return self


class SyncBatchApplied(WireModel):
    """Event: the worker's results for one :class:`ApplySyncBatch`, in its order."""

    request_id: str
    checkpoint: str | None
    results: list[ItemResult]

    def wire_json(self, encoded_results: Sequence[str] | None = None) -> str:
        """This event's JSON, the same as :meth:`model_dump_json` writes; ``encoded_results``, when
        given, is each result's :meth:`ItemResult.wire_json` already made (so each is made once)."""
        if encoded_results is None:
            encoded_results = [result.wire_json() for result in self.results]
        head = to_json({"requestId": self.request_id, "checkpoint": self.checkpoint}).decode()
        return f'{head[:-1]},"results":[{",".join(encoded_results)}]}}'


CHECKPOINT_CHANNEL = "checkpoints:"
"""Redis pub/sub channel (after the key prefix, before the tenant id) announcing a tenant's new
checkpoint; the message is the checkpoint itself. A hint for live updates, never the truth."""


def checkpoint_channel(prefix: str, tenant_id: UUID) -> str:
    """The pub/sub channel on which ``tenant_id``'s committed checkpoints are announced."""
    return f"{prefix}{CHECKPOINT_CHANNEL}{tenant_id}"
