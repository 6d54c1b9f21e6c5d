"""StockZen Sync contracts: every shape that crosses a process boundary."""

from ._wire import UtcDateTime, WireModel, format_utc
from .codes import Code, EntityType, ItemStatus, MovementKind, OperationType
from .errors import ErrorBody
from .messages import APPLY_SYNC_BATCH_ACTOR, ApplySyncBatch, SyncBatchApplied
from .operations import (
    LEDGER_IS_APPEND_ONLY,
    CreateProduct,
    DeleteProduct,
    InvalidOperation,
    Operation,
    OperationBase,
    ProductOperation,
    RecordStockMovement,
    UpdateProduct,
    claimed_operation_id,
    describe_errors,
    parse_operation,
)
from .payloads import (
    PRODUCT_FIELDS,
    ProductCreate,
    ProductDelete,
    ProductPatch,
    ProductState,
    StockMovementCreate,
    StockMovementState,
)
from .sync import MAX_OPERATIONS_CEILING, ItemResult, SyncRequest, SyncResponse

__all__ = [
    "APPLY_SYNC_BATCH_ACTOR",
    "LEDGER_IS_APPEND_ONLY",
    "MAX_OPERATIONS_CEILING",
    "PRODUCT_FIELDS",
    "ApplySyncBatch",
    "Code",
    "CreateProduct",
    "DeleteProduct",
    "EntityType",
    "ErrorBody",
    "InvalidOperation",
    "ItemResult",
    "ItemStatus",
    "MovementKind",
    "Operation",
    "OperationBase",
    "OperationType",
    "ProductCreate",
    "ProductDelete",
    "ProductOperation",
    "ProductPatch",
    "ProductState",
    "RecordStockMovement",
    "StockMovementCreate",
    "StockMovementState",
    "SyncBatchApplied",
    "SyncRequest",
    "SyncResponse",
    "UpdateProduct",
    "UtcDateTime",
    "WireModel",
    "claimed_operation_id",
    "describe_errors",
    "format_utc",
    "parse_operation",
]
