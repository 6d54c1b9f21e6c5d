"""``POST /api/sync``: the request envelope, the per-operation results and the response."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from pydantic import ConfigDict, Field, JsonValue, SerializerFunctionWrapHandler, model_serializer

from ._wire import UtcDateTime, WireModel, text
from .codes import Code, ItemStatus
from .payloads import ProductState

MAX_OPERATIONS_CEILING = 1000
"""No configuration may allow more operations per batch than this."""

Checkpoint = Annotated[str, text(40, min_length=1)]
"""An opaque, per-tenant, monotonic position in the tenant's change feed."""


class SyncRequest(WireModel):
    """The envelope. Operations stay raw here: each is validated on its own."""

    checkpoint: Checkpoint | None = None
    operations: Annotated[list[JsonValue], Field(min_length=1, max_length=MAX_OPERATIONS_CEILING)]


class ItemResult(WireModel):
    """The outcome of one operation; absent fields are omitted on the wire."""

    model_config = ConfigDict(extra="ignore")

    operation_id: UUID | None
    status: ItemStatus
    code: Code | None = None
    message: str | None = None
    retryable: bool | None = None
    server_state: ProductState | None = None  # the winning state, for product conflicts

    # No return annotation on purpose: with one, pydantic documents the result as "any object" and
    # the OpenAPI (hence the browser app's generated types) would lose the fields.
    @model_serializer(mode="wrap")
    def _omit_absent(self, handler: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]
        # Only top-level absences are dropped: nulls inside serverState are real values.
        data: dict[str, Any] = handler(self)
        return {k: v for k, v in data.items() if v is not None or k in ("operationId",)}

    @classmethod
    def rejected(cls, operation_id: UUID | None, code: Code, message: str) -> ItemResult:
        """A permanent refusal: the client must not retry this operation as it is."""
        return cls(operation_id=operation_id, status=ItemStatus.REJECTED, code=code, message=message, retryable=False)

    @classmethod
    def retry_later(cls, operation_id: UUID | None, code: Code, message: str) -> ItemResult:
        """Refused for now, nothing stored: the same operation may apply later (e.g. after its product's create)."""
        return cls(operation_id=operation_id, status=ItemStatus.REJECTED, code=code, message=message, retryable=True)

    @classmethod
    def pending(cls, operation_id: UUID) -> ItemResult:
        """Accepted but not applied yet: the client retries later with the same ids."""
        return cls(
            operation_id=operation_id,
            status=ItemStatus.PENDING,
            message="accepted, not applied yet: retry later with the same ids",
            retryable=True,
        )


class SyncResponse(WireModel):
    """One result per operation, in request order, and the tenant's checkpoint after the batch."""

    model_config = ConfigDict(extra="ignore")

    checkpoint: str | None
    server_time: UtcDateTime
    results: list[ItemResult]
