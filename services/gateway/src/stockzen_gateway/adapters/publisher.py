"""Publishing sync batches to RabbitMQ with aio-pika: confirmed, persistent, unroutable refused.

The message is a dramatiq message addressed to the worker's actor, published to the default
exchange with the queue's name as routing key, which dramatiq consumes like its own ``send()``.
Nothing here blocks the event loop (the blocking pika client is the worker's, not ours).

The queues are declared here too, with the worker's arguments (:mod:`stockzen_platform.amqp`):
classic, or quorum on a cluster. With quorum queues a confirm means a majority of the nodes hold
the message, so a batch is acknowledged to the gateway only once it survives the loss of a node.
Several addresses (a cluster's nodes) are tried in turn; aio-pika's robust connection reconnects to
the address it has, so when that node is down the connection is dropped and the next publish
connects to the first node that answers, starting after the one that failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

import aio_pika
import dramatiq
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from aiormq.exceptions import AMQPError, ChannelInvalidStateError, DeliveryError

from stockzen_contracts import APPLY_SYNC_BATCH_ACTOR, ApplySyncBatch
from stockzen_gateway.metrics import METRICS
from stockzen_gateway.ports import PublishFailed
from stockzen_platform.amqp import QueueType, dead_letter_queue_name, sync_queue_declarations

log = logging.getLogger(__name__)


class AmqpBatchPublisher:
    """See :class:`~stockzen_gateway.ports.BatchPublisher`. Connects on first use, then stays robust."""

    def __init__(
        self,
        urls: str | Sequence[str],
        queue_name: str,
        *,
        timeout_seconds: float,
        queue_type: QueueType = QueueType.CLASSIC,
    ) -> None:
        self._urls = [urls] if isinstance(urls, str) else list(urls)
        if not self._urls:
            raise ValueError("no broker address")
        self._first = 0  # the address tried first on the next connect
        self._queue = queue_name
        self._queue_type = queue_type
        self._timeout = timeout_seconds
        self._connection: AbstractRobustConnection | None = None
        self._connected_to = 0
        self._channel: AbstractChannel | None = None  # a strong reference keeps it alive
        self._lock = asyncio.Lock()

    async def _ready_connection(self) -> AbstractRobustConnection:
        async with self._lock:
            if self._connection is None:
                self._connection = await self._connect_to_a_live_node()
            return self._connection

    async def _connect_to_a_live_node(self) -> AbstractRobustConnection:
        """A robust connection to the first address that answers, trying each in turn once."""
        count = len(self._urls)
        failure: BaseException | None = None
        for attempt in range(count):
            index = (self._first + attempt) % count
            try:
                connection = await aio_pika.connect_robust(
                    self._urls[index],
                    timeout=self._timeout / count,  # every address gets its turn within the deadline
                    reconnect_interval=1,
                    client_properties={"connection_name": "stockzen-gateway"},
                )
            except (AMQPError, ConnectionError, OSError, TimeoutError) as exc:
                failure = exc
                continue
            self._connected_to = index
            if attempt:
                log.info("broker connection moved", extra={"address_index": index})
            return connection
        assert failure is not None
        raise failure

    async def _ready_channel(self) -> AbstractChannel:
        connection = await self._ready_connection()
        async with self._lock:
            if self._channel is None:
                channel = await _open_channel(connection, publisher_confirms=True, on_return_raises=True)
                # Declared as the worker declares them (a robust channel declares them again on reconnect),
                # so a batch published before any worker ran still has its queue.
                for name, arguments in sync_queue_declarations(self._queue, self._queue_type):
                    await channel.declare_queue(name, durable=True, arguments=arguments)
                self._channel = channel
            return self._channel

    async def _forget_a_dead_node(self) -> None:
        """With several addresses, drop a connection that is down, so the next use tries the others."""
        connection = self._connection
        if len(self._urls) < 2 or connection is None or connection.connected.is_set():
            return
        self._connection, self._channel = None, None
        self._first = (self._connected_to + 1) % len(self._urls)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self._timeout):
                await connection.close()

    async def _replace_channel(self, refused_on: AbstractChannel | None) -> None:
        """Drop the channel a publish was refused on (nacked), so the next publish opens a new one.

        Measured on RabbitMQ 3.10 (``make chaos-cluster``): a channel opened on a surviving node while
        the quorum queue was still electing its new leader had every later publish nacked, for two
        minutes, until the dead node came back; a new channel on the same connection publishes at once.
        """
        async with self._lock:
            if refused_on is None or self._channel is not refused_on:
                return  # another publish replaced it already
            self._channel = None
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self._timeout):
                await refused_on.close()

    async def publish(self, command: ApplySyncBatch) -> None:
        message: dramatiq.Message[None] = dramatiq.Message(
            queue_name=self._queue,
            actor_name=APPLY_SYNC_BATCH_ACTOR,
            args=(command.to_message(),),  # each operation with its fingerprint, hashed here once
            kwargs={},
            options={},
        )
        started = time.perf_counter()
        channel: AbstractChannel | None = None
        try:
            async with asyncio.timeout(self._timeout):
                channel = await self._ready_channel()
                await channel.default_exchange.publish(
                    aio_pika.Message(
                        message.encode(),
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        message_id=message.message_id,
                        content_type="application/json",
                    ),
                    routing_key=self._queue,
                    mandatory=True,
                    timeout=self._timeout,
                )
        except (AMQPError, ChannelInvalidStateError, ConnectionError, OSError, TimeoutError) as exc:
            reason = type(exc).__name__
            METRICS.publish_failures.labels(reason).inc()
            log.warning("publish failed", extra={"error": reason, "queue": self._queue})
            if isinstance(exc, DeliveryError):
                await self._replace_channel(channel)
            await self._forget_a_dead_node()
            raise PublishFailed(reason) from exc
        finally:
            METRICS.publish_seconds.observe(time.perf_counter() - started)

    async def queue_depths(self) -> dict[str, tuple[int, int]]:
        """(messages, consumers) of the sync queue and its dead-letter queue, via passive declares.

        Empty when the broker is out of reach (the connection is opened here too if need be).
        """
        try:
            async with asyncio.timeout(self._timeout):
                connection = await self._ready_connection()
        except (AMQPError, ConnectionError, OSError, TimeoutError):
            return {}
        depths = {}
        for name in (self._queue, dead_letter_queue_name(self._queue)):
            try:
                async with asyncio.timeout(self._timeout):
                    channel = await _open_channel(connection)  # a throwaway: a 404 closes it
                    async with channel:
                        queue = await channel.declare_queue(name, passive=True)
                        result = queue.declaration_result
                        depths[name] = (result.message_count or 0, result.consumer_count or 0)
            except (AMQPError, ChannelInvalidStateError, ConnectionError, OSError, TimeoutError):
                continue
        if not depths:
            await self._forget_a_dead_node()
        return depths

    async def close(self) -> None:
        """Close the connection (pending publishes fail)."""
        if self._connection is not None:
            await self._connection.close()
        self._connection, self._channel = None, None


async def _open_channel(connection: AbstractRobustConnection, **options: bool) -> AbstractChannel:
    """A new, open channel on ``connection``.

    While a robust connection waits to reconnect, aio-pika and aiormq refuse to make or open a
    channel with a bare ``RuntimeError``; that means the broker is out of reach, so it is raised as
    a ``ConnectionError`` like every other way of not reaching it.
    """
    try:
        return await connection.channel(**options)
    except RuntimeError as exc:
        raise ConnectionError(f"the broker connection is not open: {exc}") from exc
