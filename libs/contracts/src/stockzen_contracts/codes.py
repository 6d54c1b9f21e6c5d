"""The closed vocabularies of the sync contract: entity and operation kinds, statuses, codes."""

from enum import StrEnum


class EntityType(StrEnum):
    """What an operation changes."""

    PRODUCT = "product"
    STOCK_MOVEMENT = "stockMovement"


class OperationType(StrEnum):
    """How an operation changes its entity."""

    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


class ItemStatus(StrEnum):
    """The outcome of one operation in a sync request."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"
    REJECTED = "rejected"
    PENDING = "pending"


class Code(StrEnum):
    """Machine-readable codes, for item results and for whole-request errors alike."""

    VALIDATION_ERROR = "VALIDATION_ERROR"
    TENANT_MISMATCH = "TENANT_MISMATCH"
    NOT_FOUND = "NOT_FOUND"
    CONFLICT_RESOLVED = "CONFLICT_RESOLVED"
    OPERATION_ID_REUSED = "OPERATION_ID_REUSED"  # an operationId seen before with different content
    RATE_LIMITED = "RATE_LIMITED"
    UNAUTHORIZED = "UNAUTHORIZED"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    TOO_MANY_OPERATIONS = "TOO_MANY_OPERATIONS"
    IDEMPOTENCY_KEY_MISMATCH = "IDEMPOTENCY_KEY_MISMATCH"
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    IDEMPOTENCY_KEY_IN_FLIGHT = "IDEMPOTENCY_KEY_IN_FLIGHT"
    RESET_REQUIRED = "RESET_REQUIRED"
    UNAVAILABLE = "UNAVAILABLE"
    INTERNAL_ERROR = "INTERNAL_ERROR"


class MovementKind(StrEnum):
    """Whether a stock movement adds to or takes from a product's stock."""

    ENTRY = "entry"
    EXIT = "exit"
