"""Building sync operations the way a device would."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def op(
    tenant_id: uuid.UUID,
    entity_type: str,
    operation_type: str,
    payload: dict[str, Any] | None,
    *,
    entity_id: uuid.UUID | None = None,
    modified_at: datetime | None = None,
    operation_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    """One operation as the wire carries it."""
    op_id = str(operation_id or uuid.uuid4())
    body: dict[str, Any] = {
        "operationId": op_id,
        "idempotencyKey": op_id,
        "entityType": entity_type,
        "entityId": str(entity_id or uuid.uuid4()),
        "operationType": operation_type,
        "tenantId": str(tenant_id),
        "modifiedAt": iso(modified_at or datetime.now(UTC)),
    }
    if payload is not None:
        body["payload"] = payload
    return body


def create_product(
    tenant_id: uuid.UUID,
    product_id: uuid.UUID,
    name: str = "Blue mug",
    modified_at: datetime | None = None,
    **fields: Any,
) -> dict[str, Any]:
    return op(tenant_id, "product", "create", {"name": name, **fields}, entity_id=product_id, modified_at=modified_at)


def update_product(
    tenant_id: uuid.UUID, product_id: uuid.UUID, modified_at: datetime | None = None, **fields: Any
) -> dict[str, Any]:
    return op(tenant_id, "product", "update", fields, entity_id=product_id, modified_at=modified_at)


def delete_product(tenant_id: uuid.UUID, product_id: uuid.UUID, modified_at: datetime | None = None) -> dict[str, Any]:
    return op(tenant_id, "product", "delete", {}, entity_id=product_id, modified_at=modified_at)


def movement(
    tenant_id: uuid.UUID, product_id: uuid.UUID, kind: str = "entry", quantity: int = 1, **fields: Any
) -> dict[str, Any]:
    payload = {"productId": str(product_id), "kind": kind, "quantity": quantity, **fields}
    return op(tenant_id, "stockMovement", "create", payload)


def earlier(seconds: float) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)
