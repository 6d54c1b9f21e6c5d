"""``POST /api/sync``: the request envelope, the per-operation results and the response."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from pydantic import ConfigDict, Field, JsonValue, SerializerFunctionWrapHandler, model_serializer
from pydantic_core import to_json

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

    def wire_json(self) -> str:
        """This result's JSON, the same as :meth:`model_dump_json` writes, built from plain values.

        The worker writes one per operation to Postgres, Redis and the reply; this skips the model's
        serializer (and its Python wrapper) on that path.
        """
        bare = self.code is None and self.message is None and self.retryable is None and self.server_state is None
        if bare and self.operation_id is not None:
            # The usual answer, "applied" and nothing else: a UUID and a status need no escaping.
            return f'{{"operationId":"{self.operation_id}","status":"{self.status.value}"}}'
        data: dict[str, Any] = {
            "operationId": None if self.operation_id is None else str(self.operation_id),
            "status": self.status.value,
        }
        if self.code is not None:
            data["code"] = self.code.value
        if self.message is not None:
            data["message"] = self.message
        if self.retryable is not None:
            data["retryable"] = self.retryable
        if self.server_state is not None:
            data["serverState"] = self.server_state.to_wire()
        return to_json(data).decode()

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
