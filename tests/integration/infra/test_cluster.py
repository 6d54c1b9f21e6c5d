"""The short form of ``make chaos-cluster``: the whole topology of ``make cluster`` (three RabbitMQ nodes
with quorum queues, Postgres under Patroni with a synchronous standby, two of each service, HAProxy in
front) on ports of its own, devices pushing through the front while the queue leader, the Postgres
primary (killed, then the next one hung), a worker, a gateway, etcd and the primary's whole machine fail in turn; the worker is cut off from the broker by a network
partition where network namespaces can be made (as root, with iproute2), and frozen otherwise. Nothing
with a final result is lost or applied twice, every level equals its ledger, and after every fault the
writes are applied again.

Deselected by default (marker ``cluster``; it needs Debian's patroni, etcd-server and haproxy and takes
a few minutes): ``make test-cluster``.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from chaos.run_cluster_chaos import FAULTS, ClusterChaos
from scripts.cluster import HAPROXY, Ports, Topology
from scripts.pg_cluster import tools_missing

MISSING = [*tools_missing(), *([] if Path(HAPROXY).exists() else ["haproxy"])]
pytestmark = [
    pytest.mark.cluster,
    pytest.mark.slow,
    pytest.mark.skipif(bool(MISSING), reason=f"not installed: {', '.join(MISSING)} (ensure_tools.sh --cluster)"),
]

# Clear of make cluster's defaults and of the other cluster tests' ports.
TEST_PORTS = Ports(
    front=8200,
    rabbit=5781,
    epmd=4372,
    postgres=5641,
    patroni_rest=8641,
    etcd=2679,
    inventory=8201,
    gateway=8211,
    gateway_metrics=9381,
    worker_metrics=9391,
)


@pytest.mark.timeout(900)
async def test_nothing_acknowledged_is_lost_or_doubled_while_each_machine_fails_in_turn(tmp_path: Path) -> None:
    topology = Topology(ports=TEST_PORTS, isolate=("worker-a",))
    held = False
    try:
        await asyncio.to_thread(topology.start)
        chaos = ClusterChaos(topology, tenants=2, devices=4, settle=3.0, seed=7)
        held = await chaos.go()
    finally:
        if not held:  # every node's and service's log, kept in pytest's folder to read afterwards
            shutil.copytree(topology.root, tmp_path / "cluster", ignore=shutil.ignore_patterns("data", "mnesia"))
        await asyncio.to_thread(topology.stop)

    assert held  # unfinished, lost, doubled, level != ledger, unexpected answers: all 0
    assert [window.name for window in chaos.run.windows] == list(FAULTS)
    # Seconds from each fault until a write was applied again: a few here; two minutes of refused
    # publishes after the queue leader's death was a defect these runs found (docs/scaling.md).
    took = {w.name: (w.recovered - w.started) if w.recovered else None for w in chaos.run.windows}
    assert all(seconds is not None and seconds < 60 for seconds in took.values()), took
    assert len(chaos.run.finals) > 100  # the devices really pushed through it all
    if topology.no_namespaces is None:  # a real partition (root, iproute2): both sides noticed it
        seen = chaos.partition
        assert seen is not None
        assert seen.broker_closed, "the broker never gave up worker-a's connections"
        assert seen.worker_noticed is not None, "worker-a never noticed the cut"
        # Batches worker-a committed behind the cut (acks lost) and worker-b got again are counted and
        # printed (seen.redelivered), not required: whether a delivery is in worker-a's hands at the cut
        # is timing, and a test must not fail on timing. Every run here so far had 3 or 4.
