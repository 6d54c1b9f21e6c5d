"""Putting the answer together: one result per operation, in request order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from pydantic_core import from_json, to_json

from stockzen_contracts import Code, ItemResult, ItemStatus, SyncBatchApplied, format_utc

from .envelope import Judged


@dataclass(frozen=True, slots=True)
class WorkerReply:
    """The worker's reply to one batch as it came off Redis: the JSON of a :class:`SyncBatchApplied`
    (``SyncBatchApplied.wire_json``). Kept as bytes so that its results can go to the client as they are
    (:func:`passed_through`) instead of being validated into models and encoded again."""

    payload: bytes

    def read(self) -> SyncBatchApplied:
        """The reply validated whole (what the gateway did with every reply before)."""
        return SyncBatchApplied.model_validate_json(self.payload)

    @property
    def request_id(self) -> str:
        """The ``requestId`` the reply answers (read whole: for tests and logs, not the hot path)."""
        return self.read().request_id


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


_RESULTS_KEY = b',"results":['
_HEAD_KEYS = frozenset(("requestId", "checkpoint"))
_BARE_KEYS = frozenset(("operationId", "status"))
_RESULT_KEYS = frozenset(("operationId", "status", "code", "message", "retryable", "serverState"))
_OPTIONAL_TYPES: dict[str, type] = {"code": str, "message": str, "retryable": bool, "serverState": dict}
_STATUSES = {status.value: status for status in ItemStatus}
_CODES = {code.value: code for code in Code}


class Outcome(NamedTuple):
    """What the gateway reads of a result it passes on as the worker wrote it (never ``serverState``)."""

    status: ItemStatus
    code: Code | None
    retryable: bool | None


@dataclass(frozen=True, slots=True)
class PassedThrough:
    """An answer whose results are the worker's bytes: the response body, and each result's outcome."""

    body: bytes
    outcomes: tuple[Outcome, ...]
    complete: bool


def passed_through(
    judged: Judged, raw_operations: Sequence[Any], reply: WorkerReply, server_time: datetime
) -> PassedThrough | None:
    """The response body with the worker's results spliced in as the worker wrote them, byte for byte what
    ``SyncResponse(...).model_dump_json()`` of :func:`assemble_results` makes of the same reply.

    Only for the usual case: the gateway refused no item and the reply, in ``wire_json``'s layout, holds
    one result per operation in order, each naming its operation as the request spelled it (in lower
    case), with the fields an :class:`ItemResult` writes and no null. Anything else gives ``None``, and
    the reply is then read whole as before. The reply is parsed (in Rust, no model built) for the fields
    the gateway needs; the worker validated its results when it made them, and the queue and Redis are
    internal, as for the fingerprints the gateway publishes.
    """
    if len(judged.accepted) != len(judged.items):
        return None
    payload = reply.payload
    at = payload.find(_RESULTS_KEY)
    if at < 0 or not payload.startswith(b'{"requestId":') or not payload.endswith(b"]}"):
        return None
    results_json = payload[at + len(_RESULTS_KEY) - 1 : -1]
    try:
        # The head alone, closed, then the array: together they are the payload, so it holds nothing else.
        head: Any = from_json(payload[:at] + b"}")
        raw_results: Any = from_json(results_json)
    except ValueError:
        return None
    if not isinstance(head, dict) or head.keys() != _HEAD_KEYS or not isinstance(raw_results, list):
        return None
    checkpoint = head["checkpoint"]
    if (checkpoint is not None and not isinstance(checkpoint, str)) or len(raw_results) != len(raw_operations):
        return None
    outcomes = []
    for raw_operation, raw in zip(raw_operations, raw_results, strict=True):
        operation_id = raw_operation.get("operationId")  # a string: the operation was judged valid
        outcome = _outcome(raw, operation_id.lower()) if isinstance(operation_id, str) else None
        if outcome is None:
            return None
        outcomes.append(outcome)
    head_json = to_json({"checkpoint": checkpoint, "serverTime": format_utc(server_time)})
    body = b"".join((head_json[:-1], b',"results":', results_json, b"}"))
    complete = all(outcome.status is not ItemStatus.PENDING for outcome in outcomes)
    return PassedThrough(body, tuple(outcomes), complete)


def _outcome(raw: Any, operation_id: str) -> Outcome | None:
    """What the gateway reads of one of the worker's results, or ``None`` when it is not as expected."""
    if not isinstance(raw, dict) or raw.get("operationId") != operation_id:
        return None
    status = _STATUSES.get(raw.get("status"))  # type: ignore[arg-type]
    if status is None:
        return None
    if raw.keys() == _BARE_KEYS:
        return Outcome(status, None, None)
    if not raw.keys() <= _RESULT_KEYS:
        return None
    for key, kind in _OPTIONAL_TYPES.items():
        if key in raw and not isinstance(raw[key], kind):
            return None  # a null, or a type ItemResult would refuse
    code = None
    if "code" in raw:
        code = _CODES.get(raw["code"])
        if code is None:
            return None
    return Outcome(status, code, raw.get("retryable"))
