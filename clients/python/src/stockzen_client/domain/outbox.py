"""The outbox's values: a change on its way, what settling a batch did, a refused change, a first
download's progress. Pure values; the wire models are named for type checking only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

from stockzen_client.domain.status import Notice

if TYPE_CHECKING:
    from stockzen_contracts import Operation


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One queued change, as it is (re)sent."""

    seq: int
    operation: Operation
    body: dict[str, Any]
    attempts: int
    in_doubt: bool = False  # sent before without a final answer: it may be applied already

    @property
    def operation_id(self) -> UUID:
        return self.operation.operation_id

    @property
    def product_id(self) -> UUID:
        """The product the change touches (a movement's product, or the product itself)."""
        if self.body.get("entityType") == "stockMovement":
            return UUID(self.body["payload"]["productId"])
        return UUID(self.body["entityId"])

    @property
    def is_product_create(self) -> bool:
        """Whether the change creates a product (its product's later changes depend on it)."""
        return self.body.get("entityType") == "product" and self.body.get("operationType") == "create"


@dataclass(frozen=True, slots=True)
class Settled:
    """What settling one batch's results did: the notices it made, how many changes stay queued."""

    notices: list[Notice]
    deferred: int


@dataclass(frozen=True, slots=True)
class SnapshotProgress:
    """Where a first download stands: its checkpoint C, the cursor of the next page (None once the last
    page is stored), and how many products are stored of how many the server announced."""

    checkpoint: str
    cursor: str | None
    done: int
    total: int


OutboxStatus = Literal["queued", "failed"]
"""An outbox entry as the user (and the client spec) sees it: waiting to be sent (again), or refused for
good and waiting for the user."""


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """A change this device made that is still held: ``queued``, or ``failed`` with the server's code."""

    operation_id: UUID
    entity_type: str  # "product" | "stockMovement"
    entity_id: UUID
    product_id: UUID
    operation_type: str  # "create" | "update" | "delete"
    status: OutboxStatus
    code: str | None  # the server's code for a failed change
    reason: str | None  # why it failed, or why it is still queued
    attempts: int

    def describe(self) -> str:
        """What the change was, in words (``update of product …``, ``stock movement … of product …``)."""
        if self.entity_type == "stockMovement":
            return f"stock movement {self.entity_id} of product {self.product_id}"
        return f"{self.operation_type} of product {self.entity_id}"

    def to_json(self) -> dict[str, Any]:
        """camelCase, as the CLI's ``--json`` prints it."""
        return {
            "operationId": str(self.operation_id),
            "entityType": self.entity_type,
            "entityId": str(self.entity_id),
            "productId": str(self.product_id),
            "operationType": self.operation_type,
            "status": self.status,
            "code": self.code,
            "reason": self.reason,
            "attempts": self.attempts,
        }
