"""Waiting for the worker's results without a Redis connection per waiting request.

The worker answers a batch by pushing its results onto the batch's reply list (``RPUSH reply_to``).
A waiting request used to block on its own list with its own pooled connection, so enough of them at
once took every connection, and whatever else needed one (the rate limiter among them) failed. Now
only a bounded number wait that way (:class:`~stockzen_gateway.adapters.redis_state.RedisGatewayState`
decides); the others wait here: one listener per process blocks on all their lists at once, on one
connection, and hands each result to its waiter. It costs a round trip or two more per request than
a connection of one's own, and each read names every waiting list: the way past a flood, not the
everyday path.

A ``BLPOP`` waits on the lists it was given: a request that starts waiting while the listener is
blocked pushes onto the process's own *wake* list, which the listener always watches too, so that it
comes back and blocks again on the new set. The listener runs only while someone waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from stockzen_gateway.metrics import METRICS

log = logging.getLogger(__name__)


# One round trip: the wake, and an expiry so that a process that dies leaves nothing behind.
_WAKE = """
redis.call('RPUSH', KEYS[1], '')
redis.call('EXPIRE', KEYS[1], 60)
return 1
"""


class RedisReplyListener:
    """Every waiting request of this process served by one blocking read on one connection."""

    def __init__(self, client: aioredis.Redis, *, prefix: str, block_seconds: float = 1.0) -> None:
        self._client = client
        self._wake_script = client.register_script(_WAKE)
        self._wake_key = f"{prefix}reply-wake:{uuid.uuid4().hex}"
        # Bounds how long the listener may wait on lists nobody waits for any more (a waiter that
        # gave up does not wake it); the connection's socket timeout must be above it.
        self._block_seconds = block_seconds
        self._waiting: dict[str, asyncio.Future[bytes | None]] = {}
        self._listener: asyncio.Task[None] | None = None
        self._wake_sent = False

    async def wait(self, reply_to: str, timeout_seconds: float) -> bytes | None:
        """The payload pushed onto ``reply_to``, or ``None`` past ``timeout_seconds`` or when Redis fails."""
        waiter: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self._waiting[reply_to] = waiter
        try:
            if self._listener is None:
                self._listener = asyncio.create_task(self._listen(), name="reply-listener")
            elif not await self._wake():
                return None
            async with asyncio.timeout(timeout_seconds):
                return await waiter
        except TimeoutError:
            return None
        finally:
            if self._waiting.get(reply_to) is waiter:
                del self._waiting[reply_to]

    async def _wake(self) -> bool:
        """Bring a blocked listener back to take the new list in; ``False`` when Redis cannot be told."""
        if self._wake_sent:
            return True  # a wake is already on its way, and the listener reads the lists after it
        self._wake_sent = True
        try:
            await self._wake_script(keys=[self._wake_key])
        except RedisError as exc:
            METRICS.redis_errors.labels("wait_for_reply").inc()
            log.warning("could not wait for results", extra={"error": str(exc)})
            return False
        return True

    async def _listen(self) -> None:
        connection = self._client.client()  # one connection, held while anyone waits
        try:
            while self._waiting:
                self._wake_sent = False  # from here on, a new waiter's list is read, or it wakes us
                keys = [self._wake_key, *self._waiting]
                try:
                    popped = await connection.blpop(keys, timeout=self._block_seconds)
                except RedisError as exc:
                    self._fail_everyone(exc)
                    continue
                if popped is not None:
                    self._deliver(popped[0], popped[1])
        finally:
            self._listener = None
            with contextlib.suppress(RedisError):
                await connection.aclose()

    def _deliver(self, key: bytes | str, payload: bytes | str) -> None:
        name = key.decode() if isinstance(key, bytes) else key
        payload = payload.encode() if isinstance(payload, str) else payload
        waiter = self._waiting.pop(name, None)  # off the list at once: the next read leaves it out
        if waiter is not None and not waiter.done():
            waiter.set_result(payload)

    def _fail_everyone(self, exc: RedisError) -> None:
        # As the per-request read did: Redis away means "no results now", and the client retries.
        METRICS.redis_errors.labels("wait_for_reply").inc()
        log.warning("could not wait for results", extra={"error": str(exc)})
        for waiter in self._waiting.values():
            if not waiter.done():
                waiter.set_result(None)
        self._waiting.clear()

    async def aclose(self) -> None:
        """Stop listening (every waiter then times out or gets ``None``)."""
        listener = self._listener
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
