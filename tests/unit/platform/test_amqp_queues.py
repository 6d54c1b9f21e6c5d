"""The sync queues' shape (stockzen_platform.amqp): classic is exactly what dramatiq's own broker
declares (so queues it made are declared again without PRECONDITION_FAILED), quorum is the same on
quorum queues; both sides take it from one place; AMQP_URL may list a cluster's nodes."""

from __future__ import annotations

import secrets

import pytest
from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL, RabbitmqBroker
from pydantic import ValidationError

from stockzen_gateway.config import GatewaySettings
from stockzen_platform.amqp import (
    DEAD_MESSAGE_TTL_MS,
    QueueType,
    broker_urls,
    queue_arguments,
    sync_queue_declarations,
)
from stockzen_sync_worker.adapters.broker import SyncQueueBroker
from stockzen_sync_worker.config import WorkerSettings
from tests.support.compose import settings_from

QUEUE = "stockzen.sync"


def test_classic_queues_are_the_ones_dramatiqs_own_broker_declares() -> None:
    stock = RabbitmqBroker(url="amqp://guest:guest@127.0.0.1:5672/")  # connects to nothing yet
    assert DEAD_MESSAGE_TTL_MS == DEAD_MESSAGE_TTL
    dramatiqs: dict[str, object] = stock._build_queue_arguments(QUEUE)  # type: ignore[no-untyped-call]
    declared = dict(sync_queue_declarations(QUEUE, QueueType.CLASSIC))
    assert declared == {
        QUEUE: dramatiqs,
        f"{QUEUE}.DQ": dramatiqs,  # dramatiq declares its .DQ with the queue's own arguments
        f"{QUEUE}.XQ": {"x-message-ttl": DEAD_MESSAGE_TTL},
    }


def test_quorum_queues_dead_letter_to_the_xq_at_least_once_and_take_no_priority() -> None:
    declared = dict(sync_queue_declarations(QUEUE, QueueType.QUORUM))
    assert list(declared) == [QUEUE, f"{QUEUE}.DQ", f"{QUEUE}.XQ"]
    assert {arguments["x-queue-type"] for arguments in declared.values()} == {"quorum"}
    for name in (QUEUE, f"{QUEUE}.DQ"):
        assert declared[name]["x-dead-letter-routing-key"] == f"{QUEUE}.XQ"
        assert declared[name]["x-dead-letter-strategy"] == "at-least-once"
        assert declared[name]["x-overflow"] == "reject-publish"  # at-least-once needs it
    assert declared[f"{QUEUE}.XQ"]["x-message-ttl"] == DEAD_MESSAGE_TTL
    assert not any("x-max-priority" in arguments for arguments in declared.values())


@pytest.mark.parametrize("queue_type", list(QueueType))
def test_the_workers_broker_declares_what_the_gateway_declares(queue_type: QueueType) -> None:
    calls: list[tuple[str, dict[str, object]]] = []

    class Channel:
        def queue_declare(self, *, queue: str, durable: bool, arguments: dict[str, object]) -> None:
            assert durable
            calls.append((queue, arguments))

    broker = SyncQueueBroker(urls=["amqp://guest:guest@127.0.0.1:5672/"], queue_type=queue_type)
    broker.state.channel = Channel()  # dramatiq's per-thread channel: nothing connects
    broker._declare_queue(QUEUE)
    broker._declare_dq_queue(QUEUE)
    broker._declare_xq_queue(QUEUE)
    assert calls == sync_queue_declarations(QUEUE, queue_type)
    assert queue_arguments(f"{QUEUE}.DQ", queue_type) == queue_arguments(QUEUE, queue_type)


def test_the_workers_broker_takes_every_address() -> None:
    urls = [f"amqp://guest:guest@127.0.0.1:{port}/" for port in (5681, 5682, 5683)]
    broker = SyncQueueBroker(urls=urls, queue_type=QueueType.QUORUM)
    assert [parameters.port for parameters in broker.parameters] == [5681, 5682, 5683]


def test_amqp_url_lists_nodes_separated_by_commas() -> None:
    assert broker_urls("amqp://a/, amqp://b/,") == ["amqp://a/", "amqp://b/"]
    with pytest.raises(ValueError, match="names no broker"):
        broker_urls(" , ")
    settings = settings_from(WorkerSettings, {"AMQP_URL": "amqp://u:p@a:5681/,amqp://u:p@b:5682/"})
    assert settings.amqp_urls == ["amqp://u:p@a:5681/", "amqp://u:p@b:5682/"]
    assert settings.sync_queue_type is QueueType.CLASSIC  # make run stays on one node's classic queues
    assert settings_from(WorkerSettings, {"SYNC_QUEUE_TYPE": "quorum"}).sync_queue_type is QueueType.QUORUM
    with pytest.raises(ValidationError):
        settings_from(WorkerSettings, {"SYNC_QUEUE_TYPE": "stream"})


def test_production_checks_every_address_of_a_cluster() -> None:
    good = f"amqp://stockzen-sync:{secrets.token_urlsafe(24)}@mq-a/"
    env = {
        "STOCKZEN_ENV": "production",
        "JWT_SECRET": secrets.token_urlsafe(40),
        "INTERNAL_TOKEN_SECRET": secrets.token_urlsafe(40),
        "JWT_AUDIENCE": "stockzen-api",
        "JWT_ISSUER": "https://id.example.test/",
        "AMQP_URL": f"{good},{good.replace('mq-a', 'mq-b')}",
    }
    assert len(settings_from(GatewaySettings, env).amqp_urls) == 2
    with pytest.raises(ValidationError, match="AMQP_URL: the user is a default account"):
        settings_from(GatewaySettings, {**env, "AMQP_URL": f"{good},amqp://guest:{secrets.token_urlsafe(24)}@mq-b/"})
