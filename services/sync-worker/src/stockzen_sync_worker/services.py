"""The service layer: apply one sync batch exactly once and say what became of each operation."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Literal
from uuid import UUID

from stockzen_contracts import (
    ApplySyncBatch,
    Code,
    CreateProduct,
    DeleteProduct,
    InvalidOperation,
    ItemResult,
    ItemStatus,
    Operation,
    ProductState,
    RawSyncBatch,
    RecordStockMovement,
    SyncBatchApplied,
    UpdateProduct,
    parse_operation,
)

from .domain.lww import Version, clamp_modified_at
from .domain.outcomes import (
    Effect,
    StoredResult,
    answer_for_known,
    as_duplicate,
    result_for,
    reused_id,
)
from .ports import (
    InventoryDatabase,
    MovementToRecord,
    ProductDecision,
    ProductWrite,
    ResultCache,
    TenantTransaction,
    WriteRefused,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """The batch's results, and how many were already known to Redis and to Postgres."""

    applied: SyncBatchApplied
    cache_hits: int
    database_hits: int


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
    database: InventoryDatabase,
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
    (The same steps as :func:`look_up`, :func:`settle_alone` and :func:`answer`; a group commit
    puts :func:`settle_group` in the middle instead.)
    """
    batch = await look_up(command, message_id, cache, unreadable=unreadable)
    settled, checkpoint = await settle_alone(batch, database)
    return await answer(batch, settled, checkpoint, cache)


@dataclass(frozen=True, slots=True)
class LookedUp:
    """A batch after the Redis lookup: the results Redis remembered, by position, and the positions
    left for Postgres to decide (``todo``)."""

    command: ApplySyncBatch
    message_id: str
    fingerprints: list[str]
    known: dict[int, ItemResult]
    cached_checkpoint: int | None
    todo: list[int]
    unreadable: Mapping[int, ItemResult]


@dataclass(frozen=True, slots=True)
class Settled:
    """Every result of a batch by position, the results new to the cache, and how many operations
    Postgres already knew."""

    results: dict[int, ItemResult]
    fresh: dict[UUID, StoredResult]
    database_hits: int


async def look_up(
    command: ApplySyncBatch,
    message_id: str,
    cache: ResultCache,
    *,
    unreadable: Mapping[int, ItemResult] | None = None,
) -> LookedUp:
    """Ask Redis for the results it remembers of the batch's operations (one round trip)."""
    ids = [op.operation_id for op in command.operations]
    fingerprints = command.operation_fingerprints()  # the gateway's, else computed
    cached, cached_checkpoint = await cache.lookup(command.tenant_id, ids)
    known = {
        i: answer_for_known(op_id, cached[op_id], fingerprints[i], message_id)
        for i, op_id in enumerate(ids)
        if op_id in cached
    }
    todo = [i for i in range(len(ids)) if i not in known]
    return LookedUp(command, message_id, fingerprints, known, cached_checkpoint, todo, unreadable or {})


Attempt = Literal["shared", "alone", "item_by_item"]
"""How a tenant transaction applies a batch. ``shared``: set-based under a savepoint, so that a
refusal undoes the batch's work alone and it goes item by item in the same transaction, its
companions kept. ``alone``: set-based with no savepoint (two round trips fewer), for a batch with a
transaction of its own: a refusal fails the transaction (:class:`_SetBasedRefused`), which its
caller rolls back and runs again ``item_by_item``."""


async def settle_in(batch: LookedUp, tenant: TenantTransaction, attempt: Attempt = "shared") -> Settled:
    """Decide the batch's ``todo`` in an open tenant transaction (which sees what earlier batches of the
    same transaction did, so an operation they applied is found applied)."""
    applied = await _apply_in_order(
        _Batch(batch.command, batch.fingerprints, batch.message_id), tenant, batch.todo, attempt
    )
    results = {**batch.known, **applied.results}
    await _carry_current_states(results, tenant.product_states)
    return Settled(results, applied.fresh, applied.database_hits)


async def settle_alone(batch: LookedUp, database: InventoryDatabase) -> tuple[Settled, int]:
    """Settle one batch in a transaction of its own (none when Redis knew every operation); its
    results and the tenant's checkpoint as of its commit. Set-based first, with no savepoint; when
    that gives way, item by item in a second transaction (see :data:`Attempt`)."""
    tenant_id = batch.command.tenant_id
    if batch.todo:
        try:
            return await _settle_in_own_transaction(batch, database, "alone")
        except _SetBasedRefused:  # its transaction was rolled back
            return await _settle_in_own_transaction(batch, database, "item_by_item")
    results = dict(batch.known)
    await _carry_current_states(results, partial(database.product_states, tenant_id))
    checkpoint = (
        batch.cached_checkpoint if batch.cached_checkpoint is not None else await database.read_checkpoint(tenant_id)
    )
    return Settled(results, {}, 0), checkpoint


async def _settle_in_own_transaction(
    batch: LookedUp, database: InventoryDatabase, attempt: Attempt
) -> tuple[Settled, int]:
    """Settle one batch in a transaction of its own, applied as ``attempt`` says; its results and the
    tenant's checkpoint as of its commit."""
    async with database.for_tenant(batch.command.tenant_id) as tenant:
        settled = await settle_in(batch, tenant, attempt)
        checkpoint = await tenant.checkpoint()
    return settled, checkpoint


async def settle_group(batches: Sequence[LookedUp], database: InventoryDatabase) -> list[tuple[Settled, int]]:
    """Settle several batches of one tenant in one transaction, in the order given: as if each had
    its own transaction, committed one after the other, except that they commit together. Each
    gets the tenant's checkpoint as of the group's commit. What fails one fails the group (its
    caller then settles each alone)."""
    tenant_id = batches[0].command.tenant_id
    if any(b.command.tenant_id != tenant_id for b in batches):
        raise ValueError("a group holds the batches of one tenant")
    async with database.for_tenant(tenant_id) as tenant:
        settled = [await settle_in(batch, tenant) for batch in batches]
        checkpoint = await tenant.checkpoint()
    return [(each, checkpoint) for each in settled]


async def answer(batch: LookedUp, settled: Settled, checkpoint: int, cache: ResultCache) -> BatchOutcome:
    """Keep the new results in Redis and hand the batch's answer to the gateway (after the commit)."""
    command = batch.command
    reply = SyncBatchApplied(
        request_id=command.request_id,
        checkpoint=str(checkpoint),
        results=_in_message_order([settled.results[i] for i in range(len(command.operations))], batch.unreadable),
    )
    await cache.deliver(command.tenant_id, settled.fresh, checkpoint, command.reply_to, reply)
    return BatchOutcome(reply, cache_hits=len(batch.known), database_hits=settled.database_hits)


async def _carry_current_states(
    results: dict[int, ItemResult],
    read: Callable[[list[UUID]], Awaitable[dict[UUID, ProductState]]],
) -> None:
    """A ``duplicate`` replaying a conflict carries the product as it stands now, not as it stood when
    the conflict was settled: the device retrying after a lost answer may have pulled newer states
    since (a tombstone even), and puts the answer's state over what it holds. (The same message
    delivered again keeps its original result: that answer goes to the request that waits for it.)"""
    replayed = {
        i: result.server_state.id
        for i, result in results.items()
        if result.status is ItemStatus.DUPLICATE and result.server_state is not None
    }
    if not replayed:
        return
    current = await read(sorted(set(replayed.values())))
    for i, product_id in replayed.items():
        if product_id in current:
            results[i] = results[i].model_copy(update={"server_state": current[product_id]})


def _in_message_order(results: list[ItemResult], unreadable: Mapping[int, ItemResult]) -> list[ItemResult]:
    applied = iter(results)
    total = len(results) + len(unreadable)
    return [unreadable[i] if i in unreadable else next(applied) for i in range(total)]


@dataclass(frozen=True, slots=True)
class _Batch:
    """A batch being applied: its command, each operation's fingerprint, and the queue message
    that carries it."""

    command: ApplySyncBatch
    fingerprints: list[str]
    message_id: str

    def version(self, position: int) -> Version:
        """The LWW version of the write at ``position``: its clamped time, request order, operation id."""
        op = self.command.operations[position]
        return Version.of_write(op.modified_at, self.command.received_at, op.operation_id, position)

    def occurred_at(self, op: RecordStockMovement) -> datetime:
        """When a movement happened, for the ledger: its own time (else its op's), clamped like versions."""
        return clamp_modified_at(op.payload.occurred_at or op.modified_at, self.command.received_at)

    def product_write(self, position: int) -> ProductWrite:
        """The product write the operation at ``position`` asks for."""
        op = self.command.operations[position]
        match op:
            case CreateProduct():
                return ProductWrite("create", op.entity_id, op.payload.changes(), self.version(position))
            case UpdateProduct():
                return ProductWrite("update", op.entity_id, op.payload.changes(), self.version(position))
            case DeleteProduct():
                return ProductWrite("delete", op.entity_id, {}, self.version(position))
        raise TypeError(f"{type(op).__name__} is not a product write")


@dataclass(frozen=True, slots=True)
class _Applied:
    """What the tenant transaction decided: results by position, the results new to the cache (and
    those Postgres already held), and how many operations Postgres already knew."""

    results: dict[int, ItemResult] = field(default_factory=dict)
    fresh: dict[UUID, StoredResult] = field(default_factory=dict)
    database_hits: int = 0


@dataclass
class _Answers:
    """The answers decided so far while going through a batch in order."""

    batch: _Batch
    stored: Mapping[UUID, StoredResult]
    results: dict[int, ItemResult] = field(default_factory=dict)
    fresh: dict[UUID, StoredResult] = field(default_factory=dict)
    new: list[tuple[Operation, ItemResult, str]] = field(default_factory=list)

    def answer_known(self, position: int) -> bool:
        """Answer the operation at ``position`` if it is already known (earlier in this batch, or
        stored by Postgres) and say whether it was."""
        op_id = self.batch.command.operations[position].operation_id
        fingerprint = self.batch.fingerprints[position]
        if op_id in self.fresh:  # the same operation twice in one batch
            known = self.fresh[op_id]
            self.results[position] = (
                as_duplicate(known.result) if known.fingerprint == fingerprint else reused_id(op_id)
            )
            return True
        if op_id in self.stored:
            self.results[position] = answer_for_known(op_id, self.stored[op_id], fingerprint, self.batch.message_id)
            self.fresh[op_id] = self.stored[op_id]
            return True
        return False

    def settle(self, position: int, result: ItemResult) -> None:
        """Record what the operation at ``position`` got; a final result is kept (stored and cached)."""
        self.results[position] = result
        if not result.retryable:  # a refusal for now is neither stored nor cached: the retry runs again
            op, fingerprint = self.batch.command.operations[position], self.batch.fingerprints[position]
            self.fresh[op.operation_id] = StoredResult(self.batch.message_id, result, fingerprint)
            self.new.append((op, result, fingerprint))

    def applied(self) -> _Applied:
        return _Applied(self.results, self.fresh, len(self.stored))


class _OrderMatters(Exception):
    """An operation repeated in its batch whose first copy got a refusal for now: applied again in
    request order it may land (after its product's create), which only the slow path does."""


class _SetBasedRefused(Exception):
    """The set-based path of a batch alone in its transaction (attempt ``alone``) gave way to the slow
    path: its work is not undone, so the transaction is to be rolled back and the batch applied
    item by item in a new one."""


async def _apply_in_order(batch: _Batch, tenant: TenantTransaction, todo: list[int], attempt: Attempt) -> _Applied:
    """Apply the operations at ``todo`` as if in order.

    The usual path is set-based: a fixed number of statements for the whole batch. When the
    database refuses one of its statements, that work is undone (see :data:`Attempt`) and the batch
    is applied item by item, each under a savepoint of its own, so that the refused operation is
    rejected alone.
    """
    stored = await tenant.stored_results([batch.command.operations[i].operation_id for i in todo])
    if attempt == "item_by_item":
        return await _apply_one_by_one(batch, tenant, todo, stored)
    gave_way: Exception
    try:
        # Alone, the undo is the whole transaction's rollback: no savepoint to pay for.
        async with tenant.savepoint() if attempt == "shared" else tenant.refusals():
            return await _apply_set_based(batch, tenant, todo, stored)
    except WriteRefused as exc:
        log.info("the database refused a set-based statement; applying item by item", extra={"error": str(exc)})
        gave_way = exc
    except _OrderMatters as exc:
        log.info("an operation repeated in its batch may land on its second copy; applying item by item")
        gave_way = exc
    if attempt == "alone":
        raise _SetBasedRefused from gave_way
    return await _apply_one_by_one(batch, tenant, todo, stored)


async def _apply_set_based(
    batch: _Batch, tenant: TenantTransaction, todo: list[int], stored: Mapping[UUID, StoredResult]
) -> _Applied:
    """All movements in one statement, then all product writes in one, then every result remembered
    in one: a fixed number of statements whatever the batch holds.

    Recording movements before product writes changes nothing a client can see but the order of
    checkpoints inside the batch's one commit: each movement carries what the creates and deletes
    of its product before it in the request decide (an edit never changes whether a product is
    live), so it lands or not exactly as in request order.
    """
    operations = batch.command.operations
    first_copies = _first_copies(batch, todo, stored)
    movements: dict[int, MovementToRecord] = {}
    writes: dict[int, ProductWrite] = {}
    decided: dict[UUID, ProductDecision] = {}  # what the writes so far decide about each product
    for i in first_copies:
        op = operations[i]
        if isinstance(op, RecordStockMovement):
            movements[i] = MovementToRecord(op, batch.occurred_at(op), decided.get(op.payload.product_id))
        else:
            writes[i] = write = batch.product_write(i)
            if write.kind == "delete" or (write.kind == "create" and decided.get(write.product_id) != "delete"):
                decided[write.product_id] = write.kind  # deletes win: no later create revives a product
    effects = dict(zip(movements, await tenant.record_movements(list(movements.values())), strict=True))
    effects.update(zip(writes, await tenant.write_products(list(writes.values())), strict=True))
    answers = _Answers(batch, stored)
    for i in todo:
        if i in effects:
            answers.settle(i, result_for(operations[i].operation_id, effects[i]))
        elif not answers.answer_known(i):
            raise _OrderMatters
    await tenant.remember_all(answers.new, batch.message_id)
    if any(w.kind == "delete" for w in writes.values()):
        await tenant.purge_expired_tombstones()
    return answers.applied()


def _first_copies(batch: _Batch, todo: list[int], stored: Mapping[UUID, StoredResult]) -> list[int]:
    """The positions of operations to apply: neither stored nor seen earlier in the batch."""
    seen: set[UUID] = set(stored)
    first: list[int] = []
    for i in todo:
        op_id = batch.command.operations[i].operation_id
        if op_id not in seen:
            seen.add(op_id)
            first.append(i)
    return first


async def _apply_one_by_one(
    batch: _Batch, tenant: TenantTransaction, todo: list[int], stored: Mapping[UUID, StoredResult]
) -> _Applied:
    """The slow path: each operation in order under a savepoint of its own."""
    answers = _Answers(batch, stored)
    tombstoned = False
    for i in todo:
        if answers.answer_known(i):
            continue
        answers.settle(i, await _apply_one(batch, tenant, i))
        tombstoned = tombstoned or isinstance(batch.command.operations[i], DeleteProduct)
    if tombstoned:
        await tenant.purge_expired_tombstones()
    return answers.applied()


async def _apply_one(batch: _Batch, tenant: TenantTransaction, position: int) -> ItemResult:
    op, fingerprint = batch.command.operations[position], batch.fingerprints[position]
    try:
        async with tenant.savepoint():
            result = result_for(op.operation_id, await _apply_operation(batch, tenant, position))
            if not result.retryable:
                await tenant.remember(op, batch.message_id, result, fingerprint)
            return result
    except WriteRefused as exc:
        # Refused for good; the savepoint undid only this operation's work.
        log.warning(
            "operation refused by the database", extra={"operation_id": str(op.operation_id), "error": str(exc)}
        )
        result = ItemResult.rejected(op.operation_id, Code.VALIDATION_ERROR, f"refused by the database: {exc}")
        async with tenant.savepoint():
            await tenant.remember(op, batch.message_id, result, fingerprint)
        return result


async def _apply_operation(batch: _Batch, tenant: TenantTransaction, position: int) -> Effect:
    """Carry out one operation's effect in the tenant transaction."""
    op = batch.command.operations[position]
    if isinstance(op, RecordStockMovement):
        return await tenant.record_movement(op, batch.occurred_at(op))
    (effect,) = await tenant.write_products([batch.product_write(position)])
    return effect
