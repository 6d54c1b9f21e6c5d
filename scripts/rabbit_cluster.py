#!/usr/bin/env python3
"""Three RabbitMQ nodes on this machine, clustered, until Ctrl-C (``make cluster-rabbit``).

Each node is a process of its own: its own node name (``rabbit-a@localhost``...), AMQP port
(5681-5683 by default), distribution port, data and log folders under one temporary folder, no
plugins (management off). They share an Erlang cookie and an epmd of their own on another port,
so nothing here touches the machine's RabbitMQ (``rabbit@localhost`` on 5672) or the epmd it
uses: the nodes are started in process groups of their own, and only those groups, and the epmd
started here, are stopped. The second and third nodes join the first with ``rabbitmqctl
join_cluster``.

Standard library only (run it as ``python -m scripts.rabbit_cluster`` from the repository). Used by
``tests/integration/infra/test_rabbit_cluster.py``, and meant for ``make cluster`` later. Starting and
stopping process groups is shared with ``pg_cluster.py`` (:mod:`scripts.cluster_processes`).
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from scripts.cluster_processes import (
    Cluster,
    answers,
    kill_group,
    refuse_taken_ports,
    serve_until_interrupted,
    start_group,
    stop_groups,
    wait_for,
)

RABBIT_BIN = Path(os.environ.get("RABBITMQ_BIN_DIR", "/usr/lib/rabbitmq/bin"))  # not the su wrapper in /usr/sbin
EPMD = shutil.which("epmd") or "/usr/bin/epmd"
NODE_LETTERS = "abcdefg"


@dataclass(frozen=True)
class RabbitNode:
    """One node: its Erlang name, its AMQP port and its distribution port."""

    letter: str
    port: int
    dist_port: int

    @property
    def name(self) -> str:
        return f"rabbit-{self.letter}@localhost"

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"


class RabbitCluster(Cluster):
    """Start, cluster, inspect, kill and stop the nodes. A context manager: leaving it stops them all."""

    def __init__(self, *, size: int = 3, base_port: int = 5681, epmd_port: int = 4370, root: Path | None = None):
        if not 1 <= size <= len(NODE_LETTERS):
            raise ValueError(f"size must be 1..{len(NODE_LETTERS)}")
        self.nodes = [
            RabbitNode(letter, base_port + index, base_port + 20_000 + index)
            for index, letter in enumerate(NODE_LETTERS[:size])
        ]
        self.epmd_port = epmd_port
        self._own_root = root is None
        self.root = root or Path(tempfile.mkdtemp(prefix="stockzen-rabbit-cluster-"))
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._epmd: subprocess.Popen[bytes] | None = None

    # -- addresses -------------------------------------------------------------------------
    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    @property
    def amqp_url(self) -> str:
        """Every node's address, comma-separated, as AMQP_URL takes them."""
        return ",".join(self.urls)

    def node(self, name: str) -> RabbitNode:
        return next(node for node in self.nodes if node.name == name)

    # -- the environment every node and CLI call shares -------------------------------------
    def _env(self, node: RabbitNode | None = None) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("RABBITMQ_", "ERL_")) and key not in {"ERL_FLAGS", "HOME"}
        }
        env.update(
            HOME=str(self.root),  # holds the shared .erlang.cookie
            ERL_EPMD_PORT=str(self.epmd_port),
            ERL_EPMD_ADDRESS="127.0.0.1",
            RABBITMQ_CONF_ENV_FILE=str(self.root / "rabbitmq-env.conf"),  # not /etc/rabbitmq's
            RABBITMQ_CONFIG_FILE=str(self.root / "rabbitmq.conf"),  # rabbitmq.conf, not /etc/rabbitmq's
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.root / "enabled_plugins"),
        )
        if node is not None:
            base = self.root / node.letter
            env.update(
                RABBITMQ_NODENAME=node.name,
                RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
                RABBITMQ_NODE_PORT=str(node.port),
                RABBITMQ_DIST_PORT=str(node.dist_port),
                RABBITMQ_MNESIA_BASE=str(base / "mnesia"),
                RABBITMQ_LOG_BASE=str(base / "log"),
                RABBITMQ_PID_FILE=str(base / "rabbit.pid"),
                RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
            )
        return env

    def _prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        cookie = self.root / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(secrets.token_hex(16).upper())
            cookie.chmod(0o400)
        (self.root / "rabbitmq-env.conf").write_text("")
        (self.root / "enabled_plugins").write_text("[].\n")
        # pause_minority: a node cut off from the majority stops serving rather than diverge (the
        # choice RabbitMQ's docs advise for three or more nodes; quorum queues need a majority anyway).
        (self.root / "rabbitmq.conf").write_text(
            "loopback_users.guest = true\ncluster_partition_handling = pause_minority\n"
        )
        for node in self.nodes:
            (self.root / node.letter / "log").mkdir(parents=True, exist_ok=True)

    # -- life cycle ------------------------------------------------------------------------
    def start(self) -> float:
        """Start every node and cluster them; the seconds it took."""
        started = time.monotonic()
        refuse_taken_ports([self.epmd_port, *(n.port for n in self.nodes), *(n.dist_port for n in self.nodes)])
        self._prepare()
        self._epmd = start_group([EPMD, "-port", str(self.epmd_port), "-address", "127.0.0.1"], env=self._env())
        wait_for(lambda: answers(self.epmd_port), 10, "epmd")
        for node in self.nodes:
            self._start_node(node)
        for node in self.nodes:
            self._await_node(node)
        first, *others = self.nodes
        for node in others:
            self.ctl(node, "stop_app")
            self.ctl(node, "join_cluster", first.name)
            self.ctl(node, "start_app", timeout=130)
        return time.monotonic() - started

    def _start_node(self, node: RabbitNode) -> None:
        # A group of its own: the node's children (erl_child_setup, inet_gethost...) go with it.
        self._processes[node.name] = start_group(
            [str(RABBIT_BIN / "rabbitmq-server")],
            env=self._env(node),
            cwd=self.root,
            log=self.root / node.letter / "log" / "console.log",
        )

    def restart(self, node: RabbitNode) -> None:
        """Start a node that was killed again (it rejoins the cluster from its own data)."""
        self._start_node(node)
        self._await_node(node)

    def _await_node(self, node: RabbitNode, seconds: float = 120) -> None:
        """Wait until the node has booted (``await_startup`` fails until it is registered with epmd)."""
        process = self._processes[node.name]
        short = node.name.split("@")[0]
        deadline = time.monotonic() + seconds
        while short not in self._epmd_names():
            if process.poll() is not None:
                log = (self.root / node.letter / "log" / "console.log").read_text(errors="replace")
                raise RuntimeError(f"{node.name} exited ({process.returncode}):\n{log[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{node.name} did not start in {seconds} s")
            time.sleep(0.2)
        self.ctl(node, "await_startup", "--timeout", str(int(seconds)), timeout=seconds + 10)

    def _epmd_names(self) -> set[str]:
        result = subprocess.run(
            [EPMD, "-port", str(self.epmd_port), "-names"], env=self._env(), capture_output=True, text=True, check=False
        )
        return set(re.findall(r"^name (\S+) at port", result.stdout, re.MULTILINE))

    def kill(self, node: RabbitNode) -> None:
        """SIGKILL the node and its children, as a crash would."""
        kill_group(self._processes.pop(node.name))

    def stop(self) -> None:
        """Stop every process started here (nodes first, then epmd); remove the temporary folder."""
        stop_groups(self._processes.values(), grace=15)
        self._processes.clear()
        if self._epmd is not None:
            kill_group(self._epmd, timeout=5)
            self._epmd = None
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    # -- inspection ------------------------------------------------------------------------
    def ctl(self, node: RabbitNode, *args: str, tool: str = "rabbitmqctl", timeout: float = 60) -> str:
        """Run a RabbitMQ CLI tool against ``node``; its output (raises when it fails)."""
        result = subprocess.run(
            [str(RABBIT_BIN / tool), "-n", node.name, *args],
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} on {node.name} failed: {result.stderr or result.stdout}")
        return result.stdout

    def running(self) -> list[RabbitNode]:
        return [node for node in self.nodes if node.name in self._processes]

    def leader(self, queue: str, *, via: RabbitNode | None = None) -> RabbitNode:
        """The node leading the quorum queue ``queue``."""
        asked = via or self.running()[0]
        output = self.ctl(asked, "list_queues", "name", "leader", "--quiet", "--no-table-headers")
        for line in output.splitlines():
            fields = line.split()
            if len(fields) == 2 and fields[0] == queue:
                return self.node(fields[1])
        raise LookupError(f"no leader listed for {queue}: {output!r}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--base-port", type=int, default=int(os.environ.get("RABBIT_CLUSTER_BASE_PORT", "5681")))
    parser.add_argument("--epmd-port", type=int, default=int(os.environ.get("RABBIT_CLUSTER_EPMD_PORT", "4370")))
    args = parser.parse_args()
    if not (RABBIT_BIN / "rabbitmq-server").exists():
        print(f"RabbitMQ is not installed here ({RABBIT_BIN}): apt-get install rabbitmq-server", file=sys.stderr)
        return 1
    cluster = RabbitCluster(size=args.nodes, base_port=args.base_port, epmd_port=args.epmd_port)

    def _start() -> None:
        seconds = cluster.start()
        print(f"{len(cluster.nodes)} RabbitMQ nodes clustered in {seconds:.1f} s (data in {cluster.root})")
        for node in cluster.nodes:
            print(f"  {node.name}  {node.url}")
        print(f"AMQP_URL={cluster.amqp_url} SYNC_QUEUE_TYPE=quorum")

    return serve_until_interrupted(_start, cluster.stop, "nodes")


if __name__ == "__main__":
    sys.exit(main())
