"""The whole path on classic queues on one RabbitMQ node against quorum queues on a three-node cluster, in one run.

``make cluster`` runs the sync queue as a quorum queue on three nodes: every publish is confirmed only
once a majority of the nodes has it on disk, and every ack is replicated too. This measures what that
costs: one gateway and one worker (their own queue, Redis prefix and the database ``stockzen_bench_queues``)
against the machine's RabbitMQ with classic queues, then against a three-node cluster of its own
(``scripts/rabbit_cluster.py``, on ports clear of ``make cluster``'s) with quorum queues, in turns,
each batch size for ``--seconds``. It prints operations/s and p50 for each, the ratio quorum / classic of
each turn, and the CPU the RabbitMQ nodes spent per settled operation. Stops every process it started.

    make bench-queues
    .venv/bin/python -m bench.queue_types --sizes 1 50 --seconds 6 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import uvloop

from bench import profiling
from bench.single_ops import listener_pid
from bench.throughput import BENCH_DATABASE, Fleet, LoadResult, drive, stacks
from scripts.rabbit_cluster import RabbitCluster
from stockzen_inventory.adapters.migrations import migrate, prepare_database
from tests.support.services import ServiceUrls, service_urls
from tests.support.stack import delete_redis_keys

DATABASE = f"{BENCH_DATABASE}_queues"
CLUSTER_PORT = 6081  # and the next two; clear of make cluster (5681) and the cluster tests
CLUSTER_EPMD_PORT = 4376


@dataclass(frozen=True)
class Broker:
    """Where one configuration's queue lives."""

    label: str
    amqp_url: str
    queue_type: str
    ports: tuple[int, ...]  # the AMQP ports of its nodes, to find their processes

    def node_pids(self) -> list[int]:
        return [pid for port in self.ports if (pid := listener_pid(port)) is not None]


def _cpu(pids: Sequence[int]) -> float:
    return sum(seconds for pid in pids if (seconds := profiling.cpu_seconds(pid)) is not None)


async def _one_turn(
    urls: ServiceUrls, logs: Path, broker: Broker, sizes: Sequence[int], seconds: float, devices: int, tenants: int
) -> dict[int, tuple[LoadResult, float]]:
    """One gateway and one worker on ``broker``: each size for ``seconds``; the load and the nodes' CPU."""
    measured: dict[int, tuple[LoadResult, float]] = {}
    with stacks(urls, logs, 1, amqp_url=broker.amqp_url, queue_type=broker.queue_type) as running:
        gateway = running[0].gateway_url
        fleet = await Fleet.create(gateway, devices, tenants)
        await drive([gateway], fleet, 1, min(2.0, seconds))  # warm up
        pids = broker.node_pids()
        for size in sizes:
            before = _cpu(pids)
            load = await drive([gateway], fleet, size, seconds)
            measured[size] = (load, _cpu(pids) - before)
    return measured


async def run(sizes: Sequence[int], seconds: float, rounds: int, devices: int, tenants: int) -> None:
    """Alternate the two brokers ``rounds`` times and print the figures."""
    cluster = RabbitCluster(base_port=CLUSTER_PORT, epmd_port=CLUSTER_EPMD_PORT)
    with service_urls() as urls, tempfile.TemporaryDirectory(prefix="stockzen-bench-queues-") as log_dir:
        await prepare_database(urls.admin_server_url, urls.app_url)
        await migrate(urls.admin_server_url, urls.app_url)
        try:
            started = await asyncio.to_thread(cluster.start)
            print(f"bench: three RabbitMQ nodes up in {started:.1f} s; {seconds:.0f} s a run", flush=True)
            machine_port = int(urls.amqp_url.rsplit(":", 1)[1].split("/")[0])
            brokers = (
                Broker("classic, 1 node", urls.amqp_url, "classic", (machine_port,)),
                Broker("quorum, 3 nodes", cluster.amqp_url, "quorum", tuple(node.port for node in cluster.nodes)),
            )
            turns: list[tuple[Broker, dict[int, tuple[LoadResult, float]]]] = []
            for round_ in range(rounds):
                for broker in brokers:
                    turns.append(
                        (broker, await _one_turn(urls, Path(log_dir), broker, sizes, seconds, devices, tenants))
                    )
                    print(f"  round {round_ + 1}, {broker.label}: done", flush=True)
        finally:
            await asyncio.to_thread(cluster.stop)
            await delete_redis_keys(urls.redis_url, urls.redis_prefix)
    _report(turns, sizes, devices, tenants, seconds)


def _report(
    turns: Sequence[tuple[Broker, dict[int, tuple[LoadResult, float]]]],
    sizes: Sequence[int],
    devices: int,
    tenants: int,
    seconds: float,
) -> None:
    print()
    print(f"{devices} devices of {tenants} tenants, 1 worker + 1 gateway, {seconds:.0f} s per run")
    print("broker              batch     ops/s  p50 ms  5xx  RabbitMQ CPU us/op")
    for broker, measured in turns:
        for size in sizes:
            load, cpu = measured[size]
            failed = sum(n for status, n in load.http.items() if status >= 500)
            per_op = cpu / load.settled * 1e6 if load.settled else float("nan")
            print(
                f"{broker.label:<18} {size:>6} {load.settled_per_second:>9.0f} {load.percentile(0.5):>7.1f}"
                f" {failed:>4} {per_op:>19.0f}"
            )
    for size in sizes:
        ratios = [
            quorum[size][0].settled_per_second / classic[size][0].settled_per_second
            for (_, classic), (_, quorum) in zip(turns[::2], turns[1::2], strict=True)
            if classic[size][0].settled_per_second
        ]
        if ratios:
            shown = ", ".join(f"{r:.2f}" for r in ratios)
            print(f"quorum / classic, batch {size}: {shown} (median {statistics.median(ratios):.2f})")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 50], help="batch sizes")
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each timed run")
    parser.add_argument("--rounds", type=int, default=2, help="turns of each broker, alternated")
    parser.add_argument("--devices", type=int, default=16, help="simulated devices")
    parser.add_argument("--tenants", type=int, default=4, help="tenants the devices belong to")
    args = parser.parse_args(argv)
    os.environ.setdefault("TEST_DATABASE_NAME", DATABASE)  # tests/support/services names the database from it
    uvloop.run(run(args.sizes, args.seconds, args.rounds, args.devices, args.tenants))
    return 0


if __name__ == "__main__":
    sys.exit(main())
