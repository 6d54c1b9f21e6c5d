"""Operations: the changes a device made offline, one per entity change, validated one by one.

An operation is a tagged union on ``(entityType, operationType)``; each member carries the payload
its kind needs. :func:`parse_operation` validates a single raw item so that one bad item becomes
one rejected result instead of failing the whole batch.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self
from uuid import UUID

from pydantic import Discriminator, Field, Tag, TypeAdapter, ValidationError, model_validator

from ._wire import UtcDateTime, WireModel
from .codes import EntityType, OperationType
from .payloads import ProductCreate, ProductDelete, ProductPatch, StockMovementCreate

LEDGER_IS_APPEND_ONLY = (
    "the ledger is append-only: stock movements cannot be updated or deleted; record a new movement to correct one"
)


class OperationBase(WireModel):
    """What every operation carries, whatever it changes."""

    operation_id: UUID
    # The operation key: the wire's ``idempotencyKey``, always the operation id again (operations
    # are deduplicated by their id; the name is the contract's). Not the request's Idempotency-Key.
    operation_key: UUID = Field(alias="idempotencyKey")
    entity_type: EntityType
    entity_id: UUID
    operation_type: OperationType
    tenant_id: UUID
    modified_at: UtcDateTime

    @model_validator(mode="after")
    def _key_names_the_operation(self) -> Self:
        if self.operation_key != self.operation_id:
            raise ValueError("idempotencyKey must equal operationId")
        return self


class CreateProduct(OperationBase):
    """Create a product whose id the device chose."""

    entity_type: Literal[EntityType.PRODUCT]
    operation_type: Literal[OperationType.CREATE]
    payload: ProductCreate


class UpdateProduct(OperationBase):
    """Change some fields of a product."""

    entity_type: Literal[EntityType.PRODUCT]
    operation_type: Literal[OperationType.UPDATE]
    payload: ProductPatch


class DeleteProduct(OperationBase):
    """Delete a product (it leaves a tombstone)."""

    entity_type: Literal[EntityType.PRODUCT]
    operation_type: Literal[OperationType.DELETE]
    payload: ProductDelete = ProductDelete()


class RecordStockMovement(OperationBase):
    """Record an entry or exit of stock in the ledger."""

    entity_type: Literal[EntityType.STOCK_MOVEMENT]
    operation_type: Literal[OperationType.CREATE]
    payload: StockMovementCreate


class _ChangeStockMovement(OperationBase):
    """Never valid: it exists so the refusal names the rule instead of a union mismatch."""

    entity_type: Literal[EntityType.STOCK_MOVEMENT]
    operation_type: Literal[OperationType.UPDATE, OperationType.DELETE]
    payload: Any = None

    @model_validator(mode="after")
    def _refuse(self) -> Self:
        raise ValueError(LEDGER_IS_APPEND_ONLY)


def _operation_tag(value: Any) -> str | None:
    if isinstance(value, dict):
        entity = value.get("entityType", value.get("entity_type"))
        kind = value.get("operationType", value.get("operation_type"))
    else:
        entity = getattr(value, "entity_type", None)
        kind = getattr(value, "operation_type", None)
    if entity == EntityType.STOCK_MOVEMENT and kind in (OperationType.UPDATE, OperationType.DELETE):
        return "stockMovement:change"
    return f"{entity}:{kind}"


Operation = Annotated[
    Annotated[CreateProduct, Tag("product:create")]
    | Annotated[UpdateProduct, Tag("product:update")]
    | Annotated[DeleteProduct, Tag("product:delete")]
    | Annotated[RecordStockMovement, Tag("stockMovement:create")]
    | Annotated[_ChangeStockMovement, Tag("stockMovement:change")],
    Discriminator(
        _operation_tag,
        custom_error_type="invalid_operation_kind",
        custom_error_message=(
            "entityType must be 'product' or 'stockMovement' and operationType 'create', 'update' or 'delete'"
        ),
    ),
]
"""Any valid operation (``_ChangeStockMovement`` never validates)."""

_operation_adapter: TypeAdapter[Operation] = TypeAdapter(Operation)


class InvalidOperation(ValueError):
    """One operation failed validation; ``operation_id`` is set when the item named one."""

    def __init__(self, message: str, operation_id: UUID | None) -> None:
        super().__init__(message)
        self.message = message
        self.operation_id = operation_id


def parse_operation(raw: object) -> Operation:
    """Validate one raw operation (a decoded JSON value) or raise :class:`InvalidOperation`."""
    if not isinstance(raw, dict):
        raise InvalidOperation("an operation must be a JSON object", None)
    try:
        return _operation_adapter.validate_python(raw)
    except ValidationError as exc:
        raise InvalidOperation(describe_errors(exc), claimed_operation_id(raw)) from None


def claimed_operation_id(raw: object) -> UUID | None:
    """The ``operationId`` an item claims, if it is a UUID, so its rejection can name it."""
    if not isinstance(raw, dict):
        return None
    value = raw.get("operationId")
    if not isinstance(value, str):
        return None
    try:
        return UUID(value)
    except ValueError:
        return None


def describe_errors(exc: ValidationError, *, limit: int = 5) -> str:
    """A short human sentence naming each failing field (``payload.quantity: ...``)."""
    parts = []
    for error in exc.errors(include_url=False)[:limit]:
        # The first location element is the union tag; it names no field.
        loc = [str(p) for p in error["loc"] if ":" not in str(p)]
        where = ".".join(loc)
        ctx = error.get("ctx") or {}
        # A validator's own ValueError reads better without pydantic's "Value error, " prefix.
        msg = str(ctx["error"]) if error["type"] == "value_error" and "error" in ctx else error["msg"]
        parts.append(f"{where}: {msg}" if where else msg)
    extra = len(exc.errors()) - limit
    if extra > 0:
        parts.append(f"and {extra} more")
    return "; ".join(parts)
