"""Putting the answer together: one result per operation, in request order."""

from __future__ import annotations

from stockzen_contracts import ItemResult, ItemStatus, SyncBatchApplied

from .envelope import Judged


def assemble_results(judged: Judged, applied: SyncBatchApplied | None) -> list[ItemResult]:
    """Refusals where the gateway refused, the worker's results where it answered, else ``pending``.

    The worker answers in the order of the operations it was sent, which is request order with
    the refused items left out.
    """
    worker_results = iter(applied.results if applied else [])
    results = []
    for item in judged.items:
        if isinstance(item, ItemResult):
            results.append(item)
            continue
        answer = next(worker_results, None)
        if answer is None or answer.operation_id != item.operation_id:
            answer = ItemResult.pending(item.operation_id)
        results.append(answer)
    return results


def is_complete(results: list[ItemResult]) -> bool:
    """True when no item is still pending (the answer is final and may be replayed)."""
    return all(r.status is not ItemStatus.PENDING for r in results)
