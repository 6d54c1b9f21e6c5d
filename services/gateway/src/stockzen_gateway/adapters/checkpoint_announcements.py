"""Live checkpoint announcements: one Redis pub/sub connection per gateway process, fanned out to
the tenant's open streams.

The worker publishes each committed checkpoint on the tenant's channel. This process listens to
every tenant's channel with one pattern subscription (so a stream opening costs no Redis round trip)
and hands each message to the in-process queues of that tenant's listeners. A listener that falls
behind only loses announcements it would have coalesced anyway: it keeps the newest one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from uuid import UUID

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from stockzen_contracts import checkpoint_channel
from stockzen_gateway.metrics import METRICS

log = logging.getLogger(__name__)

_RECONNECT_DELAY_SECONDS = 1.0


class _Listener:
    """One stream's mailbox: only the newest unread checkpoint matters, so it holds one."""

    def __init__(self, closing: asyncio.Event) -> None:
        self._latest: asyncio.Queue[str] = asyncio.Queue(maxsize=1)
        self._closing = closing

    def offer(self, checkpoint: str) -> None:
        if self._latest.full():
            self._latest.get_nowait()
        self._latest.put_nowait(checkpoint)

    async def next_checkpoint(self, timeout_seconds: float) -> str | None:
        closing = asyncio.ensure_future(self._closing.wait())
        latest = asyncio.ensure_future(self._latest.get())
        try:
            done, _ = await asyncio.wait(
                {closing, latest}, timeout=timeout_seconds, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in (closing, latest):
                if not waiter.done():
                    waiter.cancel()
        if latest in done and not latest.cancelled():
            return latest.result()
        return None

    @property
    def closed(self) -> bool:
        return self._closing.is_set()


class RedisCheckpointAnnouncements:
    """See :class:`~stockzen_gateway.ports.CheckpointAnnouncements`."""

    def __init__(self, client: aioredis.Redis, *, prefix: str) -> None:
        self._redis = client
        self._prefix = prefix
        self._listeners: dict[UUID, set[_Listener]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._closing: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _start(self) -> asyncio.Event:
        # Created on first use, on the serving event loop (nothing connects at import or build time).
        if self._closing is None:
            self._loop = asyncio.get_running_loop()
            self._closing = asyncio.Event()
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read_forever(), name="checkpoint-announcements")
        return self._closing

    @asynccontextmanager
    async def subscribe(self, tenant_id: UUID) -> AsyncIterator[_Listener]:
        """Listen to ``tenant_id``'s announcements while the context is open."""
        listener = _Listener(self._start())
        self._listeners.setdefault(tenant_id, set()).add(listener)
        METRICS.live_streams.inc()
        try:
            yield listener
        finally:
            METRICS.live_streams.dec()
            listeners = self._listeners.get(tenant_id, set())
            listeners.discard(listener)
            if not listeners:
                self._listeners.pop(tenant_id, None)

    def close_soon(self) -> None:
        """End every open stream; callable from a signal handler (it only schedules the work)."""
        if self._loop is not None and self._closing is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._closing.set)

    async def aclose(self) -> None:
        """End every stream and stop listening to Redis."""
        if self._closing is not None:
            self._closing.set()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self._redis.aclose()

    def _dispatch(self, channel: str, checkpoint: str) -> None:
        tenant = channel.rsplit(":", 1)[-1]
        with contextlib.suppress(ValueError):
            for listener in self._listeners.get(UUID(tenant), ()):
                listener.offer(checkpoint)

    async def _read_forever(self) -> None:
        pattern = checkpoint_channel(self._prefix, UUID(int=0)).replace(str(UUID(int=0)), "*")
        while True:
            try:
                async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.psubscribe(pattern)
                    async for message in pubsub.listen():
                        if message.get("type") == "pmessage":
                            self._dispatch(_text(message["channel"]), _text(message["data"]))
            except RedisError as exc:
                # Streams stay open; clients still pull periodically while announcements are away.
                METRICS.redis_errors.labels("announcements").inc()
                log.warning("checkpoint announcements unavailable; retrying", extra={"error": str(exc)})
                await asyncio.sleep(_RECONNECT_DELAY_SECONDS)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
