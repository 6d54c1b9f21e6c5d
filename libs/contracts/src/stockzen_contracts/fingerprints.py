"""An operation's fingerprint: what tells a replay of an operation from its ``operationId`` reused for
another change.

The canonical form is defined here and nowhere else: the gateway computes each fingerprint as it
publishes a batch (:meth:`~stockzen_contracts.ApplySyncBatch.to_message`) and the worker computes
them only for a message that carries none (one published before fingerprints were carried), both
with this module. Every fingerprint already kept (Redis, ``applied_operations``) was made with this
form, so changing it would make an honest retry of an old operation look like a reused id: the
tests pin its value.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import StringConstraints

from .operations import Operation

Fingerprint = Annotated[str, StringConstraints(strict=True, pattern=r"^[0-9a-f]{64}$")]
"""A SHA-256 digest in lowercase hex, as :func:`operation_fingerprint` writes it."""


def wire_fingerprint(wire: Mapping[str, Any]) -> str:
    """The fingerprint of an operation given in its validated wire form (``operation.to_wire()``).

    Only that form is canonical (UTC timestamps, stripped text, absent fields left out): a raw item
    as a client sent it must be parsed first. The digest is SHA-256 of its JSON with sorted keys,
    no spaces and ASCII escapes.
    """
    canonical = json.dumps(wire, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def operation_fingerprint(operation: Operation) -> str:
    """A digest of everything an operation asks for, in its canonical (validated, UTC) wire form."""
    return wire_fingerprint(operation.to_wire())
