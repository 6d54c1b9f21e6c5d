"""The Redis fast path: recently given results, the tenant's checkpoint, and replies to the gateway."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from uuid import UUID

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from stockzen_contracts import ItemResult, ItemStatus, SyncBatchApplied, checkpoint_channel
from stockzen_sync_worker.domain.outcomes import StoredResult

log = logging.getLogger(__name__)

# Checkpoints only move forward, even when two workers store out of commit order; the tenant's live
# listeners hear of a checkpoint only when it moved it forward. A batch of replays or duplicates
# changes nothing they could pull, and a checkpoint stored after a higher one is covered by it
# (checkpoints follow commit order), so neither wakes every device of the tenant for an empty pull.
_ADVANCE_CHECKPOINT = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  redis.call('PUBLISH', ARGV[3], ARGV[1])
  return 1
end
return 0
"""

# Every new result of a batch in one command: the client packs one command instead of one per
# result, which was the worker's largest cost per operation in Redis.
_REMEMBER_RESULTS = """
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], ARGV[i + 1], 'EX', ARGV[1])
end
return #KEYS
"""


# An entry holds only what a later answer needs, in a few bytes: a flags byte, the message that
# applied the operation (16 bytes when it is a UUID, as dramatiq's are), the operation's fingerprint
# (the 32 bytes of its SHA-256), and the result's wire JSON unless it is the usual bare "applied",
# which the flags say. Its key is the tenant's and the operation's 16 bytes each after the prefix.
# An applied operation takes about 150 bytes of Redis (MEMORY USAGE) where its JSON entry under a
# text key took 360 to 390. Entries written as JSON (``{"messageId", "result", "fingerprint"}``)
# are still read.
_MESSAGE_IS_UUID = 1
_FINGERPRINT_IS_SHA256 = 2
_FINGERPRINT_AS_TEXT = 4
_BARE_APPLIED = 8
_SHA256_HEX = 64


def result_key(prefix: str, tenant_id: UUID, operation_id: UUID) -> bytes:
    """The key of an operation's cached result: ``{prefix}r:`` and the two ids' 16 bytes each."""
    return prefix.encode() + b"r:" + tenant_id.bytes + operation_id.bytes


def encode_entry(operation_id: UUID, stored: StoredResult, result_json: str | None = None) -> bytes:
    """A cache entry for ``stored`` (``result_json``: its result's wire JSON, when already made)."""
    flags, parts = 0, []
    message = _uuid_or_none(stored.message_id)
    if message is not None:
        flags |= _MESSAGE_IS_UUID
        parts.append(message.bytes)
    else:
        parts.append(_text(stored.message_id))
    fingerprint = stored.fingerprint
    digest = _sha256_digest(fingerprint)
    if digest is not None:
        flags |= _FINGERPRINT_IS_SHA256
        parts.append(digest)
    elif fingerprint is not None:
        flags |= _FINGERPRINT_AS_TEXT
        parts.append(_text(fingerprint))
    result = stored.result
    if _bare_applied(operation_id, result):
        flags |= _BARE_APPLIED
    else:
        parts.append((result_json or result.wire_json()).encode())
    return bytes([flags]) + b"".join(parts)


def decode_entry(operation_id: UUID, raw: bytes) -> StoredResult:
    """The stored result an entry holds (either form)."""
    if raw[:1] == b"{":
        entry = json.loads(raw)
        return StoredResult(entry["messageId"], ItemResult.model_validate(entry["result"]), entry.get("fingerprint"))
    flags, at = raw[0], 1
    if flags & _MESSAGE_IS_UUID:
        message_id, at = str(UUID(bytes=raw[at : at + 16])), at + 16
    else:
        message_id, at = _read_text(raw, at)
    fingerprint: str | None = None
    if flags & _FINGERPRINT_IS_SHA256:
        fingerprint, at = raw[at : at + 32].hex(), at + 32
    elif flags & _FINGERPRINT_AS_TEXT:
        fingerprint, at = _read_text(raw, at)
    if flags & _BARE_APPLIED:
        result = ItemResult(operation_id=operation_id, status=ItemStatus.APPLIED)
    else:
        result = ItemResult.model_validate_json(raw[at:])
    return StoredResult(message_id, result, fingerprint)


def _bare_applied(operation_id: UUID, result: ItemResult) -> bool:
    """Whether ``result`` is ``ItemResult(operation_id=operation_id, status=APPLIED)`` and nothing more."""
    return (
        result.status is ItemStatus.APPLIED
        and result.operation_id == operation_id
        and result.code is None
        and result.message is None
        and result.retryable is None
        and result.server_state is None
    )


def _uuid_or_none(text: str) -> UUID | None:
    try:
        value = UUID(text)
    except ValueError:
        return None
    return value if str(value) == text else None  # only the canonical spelling comes back the same


def _sha256_digest(fingerprint: str | None) -> bytes | None:
    """The 32 bytes a SHA-256 fingerprint spells in lowercase hex, else ``None`` (kept as text)."""
    if fingerprint is None or len(fingerprint) != _SHA256_HEX:
        return None
    try:
        digest = bytes.fromhex(fingerprint)
    except ValueError:
        return None
    return digest if digest.hex() == fingerprint else None


def _text(text: str) -> bytes:
    encoded = text.encode()
    return len(encoded).to_bytes(2, "big") + encoded


def _read_text(raw: bytes, at: int) -> tuple[str, int]:
    size = int.from_bytes(raw[at : at + 2], "big")
    return raw[at + 2 : at + 2 + size].decode(), at + 2 + size


class RedisResultCache:
    """See :class:`~stockzen_sync_worker.ports.ResultCache`. Keys: :func:`result_key`; entries:
    :func:`encode_entry`."""

    def __init__(
        self, client: aioredis.Redis, *, prefix: str, result_ttl_seconds: int, reply_ttl_seconds: int = 300
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._ttl = result_ttl_seconds
        self._reply_ttl = reply_ttl_seconds

    def _result_key(self, tenant_id: UUID, operation_id: UUID) -> bytes:
        return result_key(self._prefix, tenant_id, operation_id)

    def _checkpoint_key(self, tenant_id: UUID) -> str:
        return f"{self._prefix}checkpoint:{tenant_id}"

    async def lookup(
        self, tenant_id: UUID, operation_ids: Sequence[UUID]
    ) -> tuple[dict[UUID, StoredResult], int | None]:
        keys: list[bytes | str] = [self._result_key(tenant_id, op) for op in operation_ids]
        keys.append(self._checkpoint_key(tenant_id))
        try:
            values = await self._redis.mget(keys)
        except RedisError as exc:
            # Only a fast path: Postgres holds the truth, so carry on without it.
            log.warning("result cache unavailable for lookup", extra={"error": str(exc)})
            return {}, None
        found = {}
        for op, raw in zip(operation_ids, values[:-1], strict=True):
            if raw is not None:
                found[op] = decode_entry(op, raw.encode() if isinstance(raw, str) else raw)
        checkpoint = int(values[-1]) if values[-1] is not None else None
        return found, checkpoint

    async def deliver(
        self,
        tenant_id: UUID,
        results: dict[UUID, StoredResult],
        checkpoint: int,
        reply_to: str,
        applied: SyncBatchApplied,
    ) -> None:
        # Each result is encoded once, for the reply and for its own entry (a new result is the very
        # object the reply holds; one found in Postgres is not, and is encoded on its own).
        encoded = [result.wire_json() for result in applied.results]
        by_object = {id(result): text for result, text in zip(applied.results, encoded, strict=True)}
        keys = [self._result_key(tenant_id, op) for op in results]
        entries = [encode_entry(op, stored, by_object.get(id(stored.result))) for op, stored in results.items()]
        # One round trip: remember the new results, advance the checkpoint (announcing it to the
        # tenant's live listeners if it moved: the transaction has committed, so a pull sees the
        # change), and answer the gateway.
        channel = checkpoint_channel(self._prefix, tenant_id)
        # EVAL with the script's text, not a registered script: in a pipeline redis-py checks with an
        # extra SCRIPT EXISTS round trip on every execute, which costs more than the text.
        async with self._redis.pipeline(transaction=False) as pipe:
            if keys:
                pipe.eval(_REMEMBER_RESULTS, len(keys), *keys, self._ttl, *entries)
            pipe.eval(_ADVANCE_CHECKPOINT, 1, self._checkpoint_key(tenant_id), checkpoint, self._ttl, channel)
            pipe.rpush(reply_to, applied.wire_json(encoded))
            pipe.expire(reply_to, self._reply_ttl)
            await pipe.execute()
