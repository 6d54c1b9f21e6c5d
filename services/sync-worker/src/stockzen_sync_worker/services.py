"""The service layer: apply one sync batch exactly once and say what became of each operation."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from stockzen_contracts import (
    ApplySyncBatch,
    Code,
    CreateProduct,
    DeleteProduct,
    InvalidOperation,
    ItemResult,
    Operation,
    RawSyncBatch,
    RecordStockMovement,
    SyncBatchApplied,
    UpdateProduct,
    parse_operation,
)

from .domain.lww import Version, clamp_modified_at, write_sequence
from .domain.outcomes import (
    Effect,
    StoredResult,
    answer_for_known,
    as_duplicate,
    result_for,
    reused_id,
)
from .ports import Ledger, LedgerRefused, ResultCache, TenantLedger

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """The batch's results, and how many were already known to Redis and to Postgres."""

    applied: SyncBatchApplied
    cache_hits: int
    ledger_hits: int


@dataclass(frozen=True, slots=True)
class ReadBatch:
    """A batch message as read: the operations to apply, and the refusals of those it could not read,
    by their position in the message."""

    command: ApplySyncBatch
    unreadable: dict[int, ItemResult]


def read_batch(raw: RawSyncBatch) -> ReadBatch:
    """Parse each operation of a batch on its own: one that cannot be read is refused alone."""
    valid: list[Operation] = []
    unreadable: dict[int, ItemResult] = {}
    for position, item in enumerate(raw.operations):
        try:
            valid.append(parse_operation(item))
        except InvalidOperation as exc:
            unreadable[position] = ItemResult.rejected(exc.operation_id, Code.VALIDATION_ERROR, exc.message)
    header = raw.model_dump(exclude={"operations", "fingerprints"})
    carried = None if raw.fingerprints is None else [f for i, f in enumerate(raw.fingerprints) if i not in unreadable]
    return ReadBatch(ApplySyncBatch(**header, operations=valid, fingerprints=carried), unreadable)


async def apply_sync_batch(
    command: ApplySyncBatch,
    message_id: str,
    ledger: Ledger,
    cache: ResultCache,
    *,
    unreadable: Mapping[int, ItemResult] | None = None,
) -> BatchOutcome:
    """Apply a batch for its tenant and answer the waiting gateway; every operation is applied at
    most once, whatever is replayed.

    Redis answers for operations it remembers; Postgres decides the rest inside one transaction
    that holds the tenant's checkpoint counter, so a concurrent delivery of the same operations
    waits and then finds them applied. ``unreadable`` holds the refusals of operations the message
    carried but the worker could not read, by position in the message; the answer keeps that order.
    """
    ids = [op.operation_id for op in command.operations]
    fingerprints = command.operation_fingerprints()  # the gateway's, else computed
    cached, cached_checkpoint = await cache.lookup(command.tenant_id, ids)
    results: dict[int, ItemResult] = {
        i: answer_for_known(op_id, cached[op_id], fingerprints[i], message_id)
        for i, op_id in enumerate(ids)
        if op_id in cached
    }
    fresh: dict[UUID, StoredResult] = {}
    todo = [i for i in range(len(ids)) if i not in results]
    ledger_hits = 0
    if todo:
        async with ledger.for_tenant(command.tenant_id) as tenant:
            ledger_hits = await _apply_in_order(command, fingerprints, message_id, tenant, todo, results, fresh)
            checkpoint = await tenant.checkpoint()
    else:
        checkpoint = (
            cached_checkpoint if cached_checkpoint is not None else await ledger.read_checkpoint(command.tenant_id)
        )
    applied = SyncBatchApplied(
        request_id=command.request_id,
        checkpoint=str(checkpoint),
        results=_in_message_order([results[i] for i in range(len(ids))], unreadable or {}),
    )
    await cache.deliver(command.tenant_id, fresh, checkpoint, command.reply_to, applied)
    return BatchOutcome(applied, cache_hits=len(ids) - len(todo), ledger_hits=ledger_hits)


def _in_message_order(results: list[ItemResult], unreadable: Mapping[int, ItemResult]) -> list[ItemResult]:
    applied = iter(results)
    total = len(results) + len(unreadable)
    return [unreadable[i] if i in unreadable else next(applied) for i in range(total)]


async def _apply_in_order(
    command: ApplySyncBatch,
    fingerprints: list[str],
    message_id: str,
    tenant: TenantLedger,
    todo: list[int],
    results: dict[int, ItemResult],
    fresh: dict[UUID, StoredResult],
) -> int:
    """Apply the operations at ``todo`` as if in order; return how many Postgres already knew.

    The usual path is set-based, under one savepoint for the whole batch. When the ledger refuses
    one of its statements, that work is undone and the batch is applied item by item, each under a
    savepoint of its own, so that the refused operation is rejected alone.
    """
    stored = await tenant.stored_results([command.operations[i].operation_id for i in todo])
    try:
        async with tenant.operation():
            done = await _apply_set_based(command, fingerprints, message_id, tenant, todo, stored)
    except LedgerRefused as exc:
        log.info("the ledger refused a set-based statement; applying item by item", extra={"error": str(exc)})
        await _apply_one_by_one(command, fingerprints, message_id, tenant, todo, stored, results, fresh)
    else:
        results.update(done.results)
        fresh.update(done.fresh)
    return len(stored)


@dataclass
class _SetBasedPass:
    """What the set-based path decided; merged into the batch's answer only if it commits."""

    results: dict[int, ItemResult] = field(default_factory=dict)
    fresh: dict[UUID, StoredResult] = field(default_factory=dict)
    to_remember: list[tuple[Operation, ItemResult, str]] = field(default_factory=list)


async def _apply_set_based(
    command: ApplySyncBatch,
    fingerprints: list[str],
    message_id: str,
    tenant: TenantLedger,
    todo: list[int],
    stored: Mapping[UUID, StoredResult],
) -> _SetBasedPass:
    """Movements are recorded together, a run at a time, and every result is remembered in one go.

    Reordering movements within the transaction changes nothing a client can see, except where a
    product op in the same batch decides whether a movement's product is live: a create or delete
    (never an update) closes the run of movements before it, and so does an id the run already holds.
    """
    operations = command.operations
    done = _SetBasedPass()
    run: list[int] = []
    run_ids: set[UUID] = set()

    def settle(i: int, result: ItemResult) -> None:
        done.results[i] = result
        if not result.retryable:  # a refusal for now is neither stored nor cached: the retry runs again
            op = operations[i]
            done.fresh[op.operation_id] = StoredResult(message_id, result, fingerprints[i])
            done.to_remember.append((op, result, fingerprints[i]))

    async def flush() -> None:
        movements = [(op, _occurred_at(op, command)) for op in (operations[i] for i in run)]
        checked = [(op, at) for op, at in movements if isinstance(op, RecordStockMovement)]
        for i, effect in zip(run, await tenant.record_movements(checked), strict=True):
            settle(i, result_for(operations[i].operation_id, effect))
        run.clear()
        run_ids.clear()

    tombstoned = False
    for i in todo:
        op = operations[i]
        if op.operation_id in run_ids or op.entity_id in run_ids or isinstance(op, CreateProduct | DeleteProduct):
            await flush()
        if op.operation_id in done.fresh:  # the same operation twice in one batch
            known = done.fresh[op.operation_id]
            same = known.fingerprint == fingerprints[i]
            done.results[i] = as_duplicate(known.result) if same else reused_id(op.operation_id)
        elif op.operation_id in stored:
            done.results[i] = answer_for_known(op.operation_id, stored[op.operation_id], fingerprints[i], message_id)
            done.fresh[op.operation_id] = stored[op.operation_id]
        elif isinstance(op, RecordStockMovement):
            run.append(i)
            run_ids.update((op.operation_id, op.entity_id))
        else:
            settle(i, result_for(op.operation_id, await apply_operation(tenant, op, command, i)))
            tombstoned = tombstoned or isinstance(op, DeleteProduct)
    await flush()
    await tenant.remember_all(done.to_remember, message_id)
    if tombstoned:
        await tenant.purge_expired_tombstones()
    return done


async def _apply_one_by_one(
    command: ApplySyncBatch,
    fingerprints: list[str],
    message_id: str,
    tenant: TenantLedger,
    todo: list[int],
    stored: Mapping[UUID, StoredResult],
    results: dict[int, ItemResult],
    fresh: dict[UUID, StoredResult],
) -> None:
    """The slow path: each operation in order under a savepoint of its own."""
    operations = command.operations
    tombstoned = False
    for i in todo:
        op = operations[i]
        if op.operation_id in fresh:  # the same operation twice in one batch
            known = fresh[op.operation_id]
            same = known.fingerprint == fingerprints[i]
            results[i] = as_duplicate(known.result) if same else reused_id(op.operation_id)
            continue
        if op.operation_id in stored:
            results[i] = answer_for_known(op.operation_id, stored[op.operation_id], fingerprints[i], message_id)
            fresh[op.operation_id] = stored[op.operation_id]
            continue
        result = await _apply_one(tenant, op, command, message_id, i, fingerprints[i])
        results[i] = result
        if not result.retryable:  # a refusal for now is neither stored nor cached: the retry runs again
            fresh[op.operation_id] = StoredResult(message_id, result, fingerprints[i])
        tombstoned = tombstoned or isinstance(op, DeleteProduct)
    if tombstoned:
        await tenant.purge_expired_tombstones()


async def _apply_one(
    tenant: TenantLedger, op: Operation, command: ApplySyncBatch, message_id: str, position: int, fingerprint: str
) -> ItemResult:
    try:
        async with tenant.operation():
            result = result_for(op.operation_id, await apply_operation(tenant, op, command, position))
            if not result.retryable:
                await tenant.remember(op, message_id, result, fingerprint)
            return result
    except LedgerRefused as exc:
        # Refused for good; the savepoint undid only this operation's work.
        log.warning("operation refused by the ledger", extra={"operation_id": str(op.operation_id), "error": str(exc)})
        result = ItemResult.rejected(op.operation_id, Code.VALIDATION_ERROR, f"refused by the ledger: {exc}")
        async with tenant.operation():
            await tenant.remember(op, message_id, result, fingerprint)
        return result


async def apply_operation(tenant: TenantLedger, op: Operation, command: ApplySyncBatch, position: int) -> Effect:
    """Carry out one operation's effect on the ledger (``position``: its place in the batch, request order)."""
    when = clamp_modified_at(op.modified_at, command.received_at)
    version = Version(when, op.operation_id, write_sequence(op.modified_at, command.received_at, position))
    match op:
        case CreateProduct():
            return await tenant.merge_product(op.entity_id, op.payload.changes(), version, create=True)
        case UpdateProduct():
            return await tenant.merge_product(op.entity_id, op.payload.changes(), version, create=False)
        case DeleteProduct():
            return await tenant.delete_product(op.entity_id, version)
        case RecordStockMovement():
            return await tenant.record_movement(op, _occurred_at(op, command))
    raise TypeError(f"no handler for {type(op).__name__}")  # the contract refuses other kinds


def _occurred_at(op: Operation, command: ApplySyncBatch) -> datetime:
    """When a movement happened, for the ledger: its own time (else its op's), clamped like versions."""
    assert isinstance(op, RecordStockMovement)
    return clamp_modified_at(op.payload.occurred_at or op.modified_at, command.received_at)
