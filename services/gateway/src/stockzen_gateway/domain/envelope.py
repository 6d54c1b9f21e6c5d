"""Judging a sync request item by item: what gets published and what is refused on the spot.

The tenant check here is one of four layers; :mod:`stockzen_platform.tenancy` lists them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from pydantic import JsonValue

from stockzen_contracts import Code, InvalidOperation, ItemResult, Operation, parse_operation
from stockzen_platform.tenancy import TENANT_MISMATCH_MESSAGE, belongs_to_caller


@dataclass(frozen=True, slots=True)
class Judged:
    """The request's items in order: each either an operation to publish or its refusal."""

    items: tuple[Operation | ItemResult, ...]

    @property
    def accepted(self) -> list[Operation]:
        """The operations to publish, in request order."""
        return [item for item in self.items if not isinstance(item, ItemResult)]


def judge_operations(raw_operations: list[JsonValue], tenant_id: UUID) -> Judged:
    """Validate each item alone; refuse bad ones (``VALIDATION_ERROR``) and other tenants' (``TENANT_MISMATCH``)."""
    return Judged(tuple(_judge(raw, tenant_id) for raw in raw_operations))


def _judge(raw: JsonValue, tenant_id: UUID) -> Operation | ItemResult:
    try:
        operation = parse_operation(raw)
    except InvalidOperation as exc:
        return ItemResult.rejected(exc.operation_id, Code.VALIDATION_ERROR, exc.message)
    if not belongs_to_caller(operation.tenant_id, tenant_id):  # layer 2 of stockzen_platform.tenancy
        return ItemResult.rejected(operation.operation_id, Code.TENANT_MISMATCH, TENANT_MISMATCH_MESSAGE)
    return operation
