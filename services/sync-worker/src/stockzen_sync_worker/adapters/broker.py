"""dramatiq's RabbitMQ broker, declaring the sync queues as ``SYNC_QUEUE_TYPE`` says.

dramatiq has no queue-type switch of its own: its broker declares ``<queue>``, ``<queue>.DQ`` and
``<queue>.XQ`` itself, as classic queues. This subclass declares the same three queues with the
arguments of :mod:`stockzen_platform.amqp`, which the gateway's publisher declares too (RabbitMQ
refuses a second declaration with other arguments). With ``classic`` they are exactly dramatiq's.
"""

from __future__ import annotations

from typing import Any

from dramatiq.brokers.rabbitmq import RabbitmqBroker

from stockzen_platform.amqp import (
    QueueType,
    dead_letter_queue_name,
    delay_queue_name,
    queue_arguments,
)


class SyncQueueBroker(RabbitmqBroker):
    """A :class:`RabbitmqBroker` on one or several nodes (pika tries each address in turn) whose queues
    are ``queue_type``."""

    def __init__(self, *, urls: list[str], queue_type: QueueType, confirm_delivery: bool = True) -> None:
        super().__init__(url=urls, confirm_delivery=confirm_delivery)
        self.queue_type = queue_type

    def _declare(self, name: str) -> Any:
        return self.channel.queue_declare(queue=name, durable=True, arguments=queue_arguments(name, self.queue_type))

    def _declare_queue(self, queue_name: str) -> Any:
        return self._declare(queue_name)

    def _declare_dq_queue(self, queue_name: str) -> Any:
        return self._declare(delay_queue_name(queue_name))

    def _declare_xq_queue(self, queue_name: str) -> Any:
        return self._declare(dead_letter_queue_name(queue_name))
