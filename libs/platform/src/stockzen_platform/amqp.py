"""The sync queue's shape on RabbitMQ, shared by the worker (dramatiq's broker) and the gateway (aio-pika).

RabbitMQ refuses a declaration whose arguments differ from the queue's (PRECONDITION_FAILED, and
the channel is closed), so both sides take the queues and their arguments from here and nowhere
else. dramatiq's names: ``<queue>`` (the work), ``<queue>.DQ`` (retries waiting for their eta;
dramatiq's worker holds them unacked and sends them back to ``<queue>`` when due, so no TTL is
involved) and ``<queue>.XQ`` (dead letters, kept for a fixed time).

``classic`` gives exactly the queues dramatiq's own broker declares (what a single node runs).
``quorum`` gives replicated queues (Raft): a message a publisher confirm acknowledged is held by a
majority of the nodes, and survives the loss of a minority of them. A queue's type cannot change
once declared: moving a deployment means new queue names (``SYNC_QUEUE``) or deleting the old ones.
"""

from __future__ import annotations

import os
from enum import StrEnum
from typing import Any


class QueueType(StrEnum):
    """``SYNC_QUEUE_TYPE``: what kind of RabbitMQ queue holds the sync queue and its companions."""

    CLASSIC = "classic"
    QUORUM = "quorum"


#: How long a dead letter stays in ``<queue>.XQ``: dramatiq's own value (and environment variable),
#: which a classic ``.XQ`` it declared was made with.
DEAD_MESSAGE_TTL_MS = int(os.getenv("dramatiq_dead_message_ttl", str(86_400_000 * 7)))  # noqa: SIM112 (its name)


def delay_queue_name(queue: str) -> str:
    """Where dramatiq's retries wait (``dramatiq.common.dq_name``)."""
    return f"{queue}.DQ"


def dead_letter_queue_name(queue: str) -> str:
    """Where messages end when retries run out (``dramatiq.common.xq_name``)."""
    return f"{queue}.XQ"


def _dead_lettering(queue: str, queue_type: QueueType) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": dead_letter_queue_name(queue),
    }
    if queue_type is QueueType.QUORUM:
        arguments.update(
            {
                "x-queue-type": "quorum",
                # A dead letter leaves the queue only once .XQ has confirmed it (RabbitMQ >= 3.10;
                # the default, at-most-once, drops it if .XQ cannot take it). Needs reject-publish.
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            }
        )
    return arguments


def queue_arguments(name: str, queue_type: QueueType) -> dict[str, Any]:
    """The arguments of the queue ``name`` (``<queue>``, ``<queue>.DQ`` or ``<queue>.XQ``)."""
    if name.endswith(".XQ"):
        arguments: dict[str, Any] = {"x-message-ttl": DEAD_MESSAGE_TTL_MS}
        if queue_type is QueueType.QUORUM:
            arguments["x-queue-type"] = "quorum"  # quorum queues take a queue TTL since RabbitMQ 3.10
        return arguments
    canonical = name.removesuffix(".DQ")
    return _dead_lettering(canonical, queue_type)


def sync_queue_declarations(queue: str, queue_type: QueueType) -> list[tuple[str, dict[str, Any]]]:
    """Every queue the sync path uses, each with its arguments (all durable): work, retries, dead letters."""
    names = (queue, delay_queue_name(queue), dead_letter_queue_name(queue))
    return [(name, queue_arguments(name, queue_type)) for name in names]


def broker_urls(value: str) -> list[str]:
    """The broker addresses in ``AMQP_URL``: one, or several separated by commas (nodes of one
    cluster, tried in order; a comma inside a password is written ``%2C``)."""
    urls = [url.strip() for url in value.split(",") if url.strip()]
    if not urls:
        raise ValueError("AMQP_URL names no broker")
    return urls
