"""Three RabbitMQ nodes (scripts/rabbit_cluster.py) and quorum sync queues: a batch the gateway's
publisher had confirmed survives the loss of the node leading the queue, is consumed exactly once
from a surviving node, and the publisher moves to a live node.

The queues are declared by the worker's real broker (SyncQueueBroker) and the gateway's real
publisher (AmqpBatchPublisher), which must agree on every argument or RabbitMQ refuses the second.
The cluster comes up in about 20 s here (three Erlang nodes on two cores).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from scripts.rabbit_cluster import RABBIT_BIN, RabbitCluster
from stockzen_contracts import ApplySyncBatch
from stockzen_gateway.adapters.publisher import AmqpBatchPublisher
from stockzen_gateway.ports import PublishFailed
from stockzen_platform.amqp import QueueType
from stockzen_sync_worker.adapters.broker import SyncQueueBroker

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (RABBIT_BIN / "rabbitmq-server").exists(), reason="RabbitMQ is not installed"),
]

BATCHES = 20


@pytest.fixture(scope="module")
def cluster() -> Iterator[RabbitCluster]:
    # Ports of their own, so a `make cluster-rabbit` left running does not stop the test.
    cluster = RabbitCluster(base_port=5781, epmd_port=4371)
    try:
        seconds = cluster.start()
    except BaseException:
        cluster.stop()
        raise
    print(f"3-node RabbitMQ cluster up in {seconds:.1f} s")
    try:
        yield cluster
    finally:
        cluster.stop()


def _batch(number: int) -> ApplySyncBatch:
    return ApplySyncBatch(
        request_id=f"cluster-{number}",
        tenant_id=uuid.uuid4(),
        user_id="u1",
        received_at=datetime.now(UTC),
        reply_to="reply:cluster-test",
        operations=[],
    )


def _drain(broker: SyncQueueBroker, queue: str, *, until_idle_seconds: float = 3.0) -> list[str]:
    """Every request id consumed from ``queue`` (each acked) until it stays empty for a while."""
    consumer = broker.consume(queue, prefetch=50, timeout=500)
    seen: list[str] = []
    idle_since = time.monotonic()
    try:
        while time.monotonic() - idle_since < until_idle_seconds:
            message = next(consumer)
            if message is None:
                continue
            seen.append(message.args[0]["requestId"])
            consumer.ack(message)
            idle_since = time.monotonic()
    finally:
        consumer.close()
    return seen


async def test_a_confirmed_batch_survives_the_queue_leaders_death_and_is_consumed_once(
    cluster: RabbitCluster,
) -> None:
    queue = f"test.cluster.{uuid.uuid4().hex[:8]}"

    # The worker declares its queues as quorum queues on the cluster.
    worker_broker = SyncQueueBroker(urls=cluster.urls, queue_type=QueueType.QUORUM)
    worker_broker.declare_queue(queue, ensure=True)
    worker_broker.close()
    listed = cluster.ctl(cluster.nodes[1], "list_queues", "name", "type", "--quiet", "--no-table-headers")
    types = dict(line.split() for line in listed.splitlines() if line.strip())
    assert {types[name] for name in (queue, f"{queue}.DQ", f"{queue}.XQ")} == {"quorum"}

    leader = cluster.leader(queue)
    # The gateway's publisher, connected to the leader first: it must move when the leader dies.
    first = cluster.nodes.index(leader)
    urls = cluster.urls[first:] + cluster.urls[:first]
    publisher = AmqpBatchPublisher(urls, queue, timeout_seconds=5, queue_type=QueueType.QUORUM)
    try:
        for number in range(BATCHES):
            await publisher.publish(_batch(number))  # returns once confirmed: a majority holds it

        cluster.kill(leader)

        # Publishing again: the first try may fail (the connection was to the dead node; a client
        # retries a 503 with the same ids), then it goes to a live node.
        started, failures = time.monotonic(), list[str]()
        while len(failures) < 20:
            try:
                await publisher.publish(_batch(BATCHES))
                break
            except PublishFailed as exc:
                failures.append(str(exc))
                await asyncio.sleep(0.5)
        else:
            pytest.fail(f"the publisher never reached a live node: {failures}")
        print(f"publisher on a live node in {time.monotonic() - started:.1f} s, after failures {failures}")
    finally:
        await publisher.close()

    survivor = cluster.running()[0]
    for _ in range(60):  # the survivors elect a new leader (Raft): at once, or nearly
        new_leader = cluster.leader(queue, via=survivor)
        if new_leader != leader:
            break
        await asyncio.sleep(0.5)
    assert new_leader in cluster.running()

    # A worker started now (its broker tries each address; the dead node refuses) consumes each batch once.
    consumer_broker = SyncQueueBroker(urls=cluster.urls, queue_type=QueueType.QUORUM)
    try:
        seen = await asyncio.to_thread(_drain, consumer_broker, queue)
    finally:
        consumer_broker.close()
    counts = Counter(seen)
    assert sorted(counts) == sorted(f"cluster-{number}" for number in range(BATCHES + 1))
    assert [request for request, count in counts.items() if count > 1] == []
