"""Request-key rules (the ``Idempotency-Key`` header, draft-ietf-httpapi-idempotency-key-header),
decided without I/O.

Words, one per thing: the **request key** is the header's value, naming one whole ``POST /api/sync``
so that its answer can be replayed; an operation's **operation key** (``idempotencyKey`` on the wire)
is its ``operationId`` again; the worker's **applied-operation records** are how an operation is
never applied twice, with or without a request key. This module is only about the first.
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from uuid import UUID

from stockzen_contracts import Code, ItemResult
from stockzen_contracts.operations import claimed_operation_id

from .results import Outcome

_KEY_SHAPE = re.compile(r"^[\x21-\x7e]{1,255}$")  # visible ASCII, as a structured-field string allows


class RequestKeyState(StrEnum):
    """What the store knew about a key when a request claimed it."""

    CLAIMED = "claimed"  # new: this request now owns the key
    IN_FLIGHT = "in_flight"  # another request with this key is still running
    COMPLETED = "completed"  # a request with this key finished; its response is stored
    MISMATCH = "mismatch"  # the key was used with a different body


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """A finished response kept for replays (``body`` as the store holds it: see :func:`pack_answer`)."""

    status_code: int
    body: bytes


@dataclass(frozen=True, slots=True)
class RequestKeyClaim:
    """The outcome of claiming a request key: ``token`` proves the claim when ``CLAIMED``,
    ``stored`` is the kept answer when ``COMPLETED``."""

    state: RequestKeyState
    stored: StoredResponse | None = None
    token: str | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request carrying a request key cannot go on."""

    status_code: int
    code: Code
    message: str


def fingerprint(operations: Any) -> str:
    """A digest of what a request asks for, its operations: key order and whitespace do not change it.

    ``checkpoint`` is left out on purpose: a client resending the same operations after a pull
    carries a newer checkpoint, and that is still the same request.
    """
    # ensure_ascii: a lone surrogate (valid JSON, not valid UTF-8) becomes an escape, not an error.
    canonical = json.dumps(operations, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def check_request_key(key: str, operation_ids: list[object]) -> Refusal | None:
    """Refuse a malformed key, or a single-operation request whose key is not its operation's id."""
    if not _KEY_SHAPE.match(key):
        return Refusal(400, Code.VALIDATION_ERROR, "Idempotency-Key must be 1-255 visible ASCII characters")
    if len(operation_ids) == 1 and not _same_id(key, operation_ids[0]):
        return Refusal(
            400,
            Code.IDEMPOTENCY_KEY_MISMATCH,
            "for a single-operation request the Idempotency-Key header must equal its operationId",
        )
    return None


def _same_id(key: str, operation_id: object) -> bool:
    if not isinstance(operation_id, str):
        return False
    try:
        return UUID(key) == UUID(operation_id)
    except ValueError:
        return key == operation_id


def refusal_for(state: RequestKeyState) -> Refusal | None:
    """The answer for a key someone else holds (``None`` when this request may go on)."""
    if state is RequestKeyState.MISMATCH:
        return Refusal(
            422,
            Code.IDEMPOTENCY_KEY_REUSED,
            "this Idempotency-Key was already used with a different request body",
        )
    if state is RequestKeyState.IN_FLIGHT:
        return Refusal(
            409,
            Code.IDEMPOTENCY_KEY_IN_FLIGHT,
            "a request with this Idempotency-Key is still being processed",
        )
    return None


def is_replayable(status_code: int, results: Sequence[ItemResult | Outcome]) -> bool:
    """Only final answers are kept: a 202 (pending items), a 5xx, or an item to retry later (``retryable``,
    e.g. ``NOT_FOUND`` for a product whose create is late) must let the retry run again."""
    return status_code == 200 and not any(r.retryable for r in results)


# What a kept answer holds. A replay carries the very operations of the first request (its fingerprint
# says so), so their ids, a third of a typical answer and its least compressible part, need not be
# kept: each is written as one byte, then the rest is compressed. An answer of 500 refusals with the
# same code goes from about 97 kB to well under 1 kB. A JSON text never holds a raw byte below 0x20,
# so these marks cannot clash with the answer's own bytes.
_PACKED = b"\x02"  # first byte of a packed answer (an answer kept whole starts with "{")
_NEXT_ID = b"\x00"  # the operation id after the last one written back
_ID_AT = b"\x01"  # the operation id at the two-byte index that follows
_UUID_TEXT = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_MARK = re.compile(rb"\x00|\x01(..)", re.DOTALL)


def operation_ids(raw_operations: Sequence[Any]) -> list[bytes]:
    """Each operation's id as an answer spells it (``b""`` when it has none), for :func:`pack_answer`."""
    ids = (claimed_operation_id(raw) for raw in raw_operations)
    return [str(op_id).encode() if op_id is not None else b"" for op_id in ids]


def pack_answer(body: bytes, ids: Sequence[bytes]) -> bytes:
    """``body`` as it is kept: the request's operation ids written as marks, the rest compressed.

    :func:`unpack_answer` with the same ``ids`` gives ``body`` back byte for byte.
    """
    if _NEXT_ID in body or _ID_AT in body or len(ids) > 0xFFFF:
        return body  # never from a JSON answer; kept whole all the same
    first_index = {op_id: index for index, op_id in reversed(list(enumerate(ids))) if op_id}
    cursor = 0

    def mark(found: re.Match[bytes]) -> bytes:
        nonlocal cursor
        text = found.group()
        if cursor < len(ids) and ids[cursor] == text:
            cursor += 1
            return _NEXT_ID
        index = first_index.get(text)
        if index is None:
            return text  # a UUID that is not one of the operations' ids
        cursor = index + 1
        return _ID_AT + index.to_bytes(2, "big")

    return _PACKED + zlib.compress(_UUID_TEXT.sub(mark, body), 9)


def unpack_answer(kept: bytes, ids: Sequence[bytes]) -> bytes:
    """The answer :func:`pack_answer` kept, given the same request's operation ids (an answer kept whole,
    as earlier versions did, comes back as it is)."""
    if not kept.startswith(_PACKED):
        return kept
    cursor = 0

    def write_back(found: re.Match[bytes]) -> bytes:
        nonlocal cursor
        if found.group(1) is not None:
            cursor = int.from_bytes(found.group(1), "big")
        cursor += 1
        return ids[cursor - 1]

    return _MARK.sub(write_back, zlib.decompress(kept[1:]))
