"""What each kind of effect means for the client: the result an operation gets."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from pydantic.alias_generators import to_camel

from stockzen_contracts import Code, ItemResult, ItemStatus, ProductState
from stockzen_contracts.fingerprints import operation_fingerprint as operation_fingerprint  # defined once, there


@dataclass(frozen=True, slots=True)
class StoredResult:
    """A result already given to an operation, the queue message that produced it, and the
    operation's fingerprint (``None`` for results kept before fingerprints were)."""

    message_id: str
    result: ItemResult
    fingerprint: str | None = None


@dataclass(frozen=True, slots=True)
class ProductMerged:
    """A product write went through last-writer-wins: ``won`` of ``requested`` fields took effect."""

    state: ProductState
    requested: tuple[str, ...]
    won: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ProductWasDeleted:
    """The product is a tombstone: deletes win over every edit."""

    state: ProductState


@dataclass(frozen=True, slots=True)
class ProductDeleted:
    """The product is now (or already was) a tombstone."""

    state: ProductState


@dataclass(frozen=True, slots=True)
class MovementRecorded:
    """The movement is in the ledger, at ``checkpoint`` (its answer needs no more: clients have the
    movement they sent, and the feed carries it to the others)."""

    checkpoint: int


@dataclass(frozen=True, slots=True)
class MissingEntity:
    """What the operation refers to was deleted: a final refusal."""

    message: str


@dataclass(frozen=True, slots=True)
class UnknownProduct:
    """The product was never seen here: its create may only be late, so the operation may apply later."""

    product_id: UUID


@dataclass(frozen=True, slots=True)
class RefusedByRule:
    """The operation breaks a rule only the stored data can reveal (e.g. a reused movement id)."""

    message: str


Effect = (
    ProductMerged
    | ProductWasDeleted
    | ProductDeleted
    | MovementRecorded
    | MissingEntity
    | UnknownProduct
    | RefusedByRule
)


def result_for(operation_id: UUID, effect: Effect) -> ItemResult:
    """The result an operation gets for the effect it had."""
    match effect:
        case ProductMerged(state=state, requested=requested, won=won):
            if set(won) == set(requested):
                return ItemResult(operation_id=operation_id, status=ItemStatus.APPLIED)
            lost = [to_camel(f) for f in requested if f not in won]
            applied = "; your other changes were applied" if won else ""
            return _conflict(operation_id, state, f"newer edits won for {', '.join(lost)}{applied}")
        case ProductWasDeleted(state=state):
            return _conflict(operation_id, state, "the product was deleted; deletes win over edits")
        case ProductDeleted() | MovementRecorded():
            return ItemResult(operation_id=operation_id, status=ItemStatus.APPLIED)
        case MissingEntity(message=message):
            return ItemResult.rejected(operation_id, Code.NOT_FOUND, message)
        case UnknownProduct(product_id=product_id):
            return ItemResult.retry_later(
                operation_id,
                Code.NOT_FOUND,
                f"product {product_id} does not exist yet: nothing was stored; retry with the same ids "
                "and this operation applies once the product's create has landed",
            )
        case RefusedByRule(message=message):
            return ItemResult.rejected(operation_id, Code.VALIDATION_ERROR, message)


def _conflict(operation_id: UUID, state: ProductState, message: str) -> ItemResult:
    return ItemResult(
        operation_id=operation_id,
        status=ItemStatus.CONFLICT,
        code=Code.CONFLICT_RESOLVED,
        message=message,
        retryable=False,
        server_state=state,
    )


def reused_id(operation_id: UUID) -> ItemResult:
    """The refusal of an operationId seen before with other content: the new change is not applied."""
    return ItemResult.rejected(
        operation_id,
        Code.OPERATION_ID_REUSED,
        "this operationId was already used for a different change; give every change its own operationId",
    )


def answer_for_known(operation_id: UUID, stored: StoredResult, fingerprint: str, message_id: str) -> ItemResult:
    """The answer for an operationId seen before: its replay if the content is the same, else a refusal."""
    if stored.fingerprint is not None and stored.fingerprint != fingerprint:
        return reused_id(operation_id)
    return replay(stored, message_id)


def replay(stored: StoredResult, message_id: str) -> ItemResult:
    """The answer for an operation seen before.

    The same queue message delivered again gets its original result (its first answer may never
    have reached the client); any other request gets ``duplicate`` carrying the original outcome.
    A refusal stays a refusal: nothing was applied.
    """
    if stored.message_id == message_id or stored.result.status is ItemStatus.REJECTED:
        return stored.result
    return as_duplicate(stored.result)


def as_duplicate(original: ItemResult) -> ItemResult:
    """``original`` re-labelled ``duplicate``, keeping its code, message and server state."""
    if original.status is ItemStatus.REJECTED:
        return original
    return original.model_copy(
        update={"status": ItemStatus.DUPLICATE, "message": original.message or "already applied"}
    )
