#!/usr/bin/env python3
"""The whole high-availability topology on this machine, as processes, until Ctrl-C (``make cluster``).

- three RabbitMQ nodes (``scripts/rabbit_cluster.py``), the sync queue declared as quorum queues;
- etcd and two Postgres nodes under Patroni, a primary and a synchronous standby
  (``scripts/pg_cluster.py``), the services connecting with a multi-host ``DATABASE_URL`` and a
  10 s client-side limit on each statement (30 s by default), so a hung primary holds them briefly;
- two inventory services, two sync workers and two gateways, every one given all the broker nodes;
- HAProxy, the one address in front of the two gateways (``/healthz`` checks; a gateway that stops
  answering is taken out within a second or two, and the requests in flight on it are retried by
  the clients with the same ids).

Redis stays the machine's one Redis (a cache and a wakeup path, with a key prefix of this run's own;
``docs/scaling.md`` says what a deployment would use). Each server runs in a session of its own with
its log in the run's folder; Ctrl-C or SIGTERM stops them all, children included. The gateways run
with the development secrets, so ``make token`` mints tokens they accept. The workers ask the broker
for a 5 s heartbeat; a worker named in ``isolate`` (the chaos run's ``worker-a``) runs in a network
namespace of its own (``scripts/netns.py``), so that it can be partitioned from the broker.

Run it as ``python -m scripts.cluster`` from the repository, in the virtual environment. Used by
``chaos/run_cluster_chaos.py`` (``make chaos-cluster``) and ``tests/integration/infra/test_cluster.py``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from scripts import netns
from scripts.cluster_processes import (
    Cluster,
    answers,
    kill_group,
    refuse_taken_ports,
    serve_until_interrupted,
    signal_tree,
    start_group,
    stop_groups,
    wait_for,
)
from scripts.pg_cluster import PgCluster, tools_missing
from scripts.rabbit_cluster import RabbitCluster
from stockzen_platform.settings import DEVELOPMENT_INTERNAL_SECRET, DEVELOPMENT_JWT_SECRET

BIN = Path(sys.executable).parent
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
REPLICAS = ("a", "b")
SYNC_QUEUE = "stockzen.sync.ha"
#: The AMQP heartbeat the workers ask for (RabbitMQ offers 60 s): the broker gives a silent worker up
#: after two missed beats and redelivers its unacked messages, and the worker gives the broker up at its
#: next check (pika checks every heartbeat + 5 s), both 11-13 s after a partition here rather than minutes.
WORKER_HEARTBEAT_SECONDS = 5
# The services' client-side limit on each Postgres statement (WORKER_/INVENTORY_DB_COMMAND_TIMEOUT_SECONDS,
# 30 s by default): on a hung primary a statement is given up after this long, and its connection after
# as long again if the cancel request gets no answer. Short here, so that a chaos run stays short.
STATEMENT_SECONDS = 10


@dataclass(frozen=True)
class Ports:
    """Where everything listens (127.0.0.1 only). The defaults keep clear of ``make run``'s."""

    front: int = 8100
    rabbit: int = 5681  # and the next two; epmd below
    epmd: int = 4370
    postgres: int = 5441  # and the next one; Patroni's REST API at ``patroni_rest``
    patroni_rest: int = 8441
    etcd: int = 2479  # and its peer port, the next one
    inventory: int = 8101  # a, b
    gateway: int = 8111  # a, b
    gateway_metrics: int = 9281  # a, b
    worker_metrics: int = 9291  # a, b

    def ours(self) -> list[int]:
        """The ports of the services this script starts itself (the engines' scripts check theirs)."""
        pairs = (self.inventory, self.gateway, self.gateway_metrics, self.worker_metrics)
        return [self.front, *(base + i for base in pairs for i in range(len(REPLICAS)))]


@dataclass
class Service:
    """One of our services' processes, and how to tell it is up."""

    name: str
    command: list[str]
    env: dict[str, str]
    health_url: str
    process: subprocess.Popen[bytes] | None = None


class Topology(Cluster):
    """Start, fault and stop the whole topology. A context manager: leaving it stops it all."""

    def __init__(
        self,
        *,
        ports: Ports | None = None,
        root: Path | None = None,
        redis_url: str | None = None,
        isolate: tuple[str, ...] = (),
    ):
        """``isolate``: workers (``worker-a``...) to run each in a network namespace of its own
        (``scripts/netns.py``), so that :meth:`cut_from_broker` can partition them; where namespaces
        cannot be made they run as the others do, and :attr:`no_namespaces` says why."""
        if any(not name.startswith("worker-") for name in isolate):
            raise ValueError(f"only workers can be isolated, not {isolate}")
        self.ports = ports or Ports()
        self._own_root = root is None
        self.root = root or Path(tempfile.mkdtemp(prefix="stockzen-cluster-"))
        self.rabbit = RabbitCluster(base_port=self.ports.rabbit, epmd_port=self.ports.epmd, root=self.root / "rabbit")
        self.postgres = PgCluster(
            base_port=self.ports.postgres,
            rest_base_port=self.ports.patroni_rest,
            etcd_port=self.ports.etcd,
            root=self.root / "postgres",
        )
        self.redis_url = redis_url or "redis://127.0.0.1:6379/0"
        self.redis_prefix = f"cluster-{uuid.uuid4().hex[:8]}:"
        self.services: dict[str, Service] = {}
        self._front: subprocess.Popen[bytes] | None = None
        self.isolate = isolate
        self.no_namespaces = netns.unavailable() if isolate else None
        self.namespaces: dict[str, netns.Namespace] = {}
        self._forwarders: list[subprocess.Popen[bytes]] = []

    @property
    def front_url(self) -> str:
        """The one address the devices use."""
        return f"http://127.0.0.1:{self.ports.front}"

    @property
    def broker_logs(self) -> list[Path]:
        """Each RabbitMQ node's own log (connections opened and closed, and why)."""
        return [self.rabbit.root / node.letter / "log" / f"{node.name}.log" for node in self.rabbit.nodes]

    # -- starting ----------------------------------------------------------------------------
    def start(self) -> float:
        """Bring everything up (the two engines in parallel); seconds it took."""
        began = time.monotonic()
        refuse_taken_ports(self.ports.ours())
        # Patroni and etcd run as ``postgres`` when this runs as root: they must get through to their
        # own (private) folder inside this one, and see nothing else of it.
        self.root.chmod(0o711)
        (self.root / "logs").mkdir(mode=0o700, parents=True, exist_ok=True)
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            rabbit, postgres = pool.submit(self.rabbit.start), pool.submit(self._start_postgres)
            rabbit.result()
            postgres.result()
        self.services = self._plan()
        for name in self.isolate:
            self._isolate(self.services[name])
        for kind in ("inventory", "worker", "gateway"):  # the gateways need the inventories
            for service in self.services.values():
                if service.name.startswith(kind):
                    self.start_service(service.name)
        self._start_front()
        return time.monotonic() - began

    def _start_postgres(self) -> None:
        import asyncio  # only here: the RabbitMQ half needs no event loop

        self.postgres.start()
        asyncio.run(self.postgres.prepare_database())

    def _environment(self) -> dict[str, str]:
        return {
            "PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin",
            "STOCKZEN_ENV": "development",
            # As ``make run``: the documented development secrets (``make token`` signs with the first).
            "JWT_SECRET": DEVELOPMENT_JWT_SECRET,
            "INTERNAL_TOKEN_SECRET": DEVELOPMENT_INTERNAL_SECRET,
            "LOG_FORMAT": "json",
            "DATABASE_URL": self.postgres.database_url,
            "REDIS_URL": self.redis_url,
            "REDIS_KEY_PREFIX": self.redis_prefix,
            "AMQP_URL": self.rabbit.amqp_url,
            "SYNC_QUEUE": SYNC_QUEUE,
            "SYNC_QUEUE_TYPE": "quorum",
            "WORKER_PROCESSES": "1",
            "WORKER_DB_COMMAND_TIMEOUT_SECONDS": str(STATEMENT_SECONDS),
            "INVENTORY_DB_COMMAND_TIMEOUT_SECONDS": str(STATEMENT_SECONDS),
        }

    def _plan(self) -> dict[str, Service]:
        common, p = self._environment(), self.ports
        planned: list[Service] = []
        for i, letter in enumerate(REPLICAS):
            inventory = f"http://127.0.0.1:{p.inventory + i}"
            planned += [
                Service(
                    f"inventory-{letter}",
                    [str(BIN / "stockzen-inventory"), "serve"],
                    {**common, "INVENTORY_PORT": str(p.inventory + i)},
                    f"{inventory}/healthz",
                ),
                Service(
                    f"worker-{letter}",
                    [str(BIN / "stockzen-sync-worker")],
                    {
                        **common,
                        "AMQP_URL": _worker_amqp_url(self.rabbit.urls, f"worker-{letter}"),
                        "WORKER_METRICS_PORT": str(p.worker_metrics + i),
                        "WORKER_METRICS_DIR": str(self.root / f"worker-metrics-{letter}"),
                    },
                    f"http://127.0.0.1:{p.worker_metrics + i}/metrics",
                ),
                Service(
                    f"gateway-{letter}",
                    [str(BIN / "stockzen-gateway")],
                    {
                        **common,
                        "GATEWAY_PORT": str(p.gateway + i),
                        "GATEWAY_METRICS_PORT": str(p.gateway_metrics + i),
                        "INVENTORY_URL": inventory,
                    },
                    f"http://127.0.0.1:{p.gateway + i}/healthz",
                ),
            ]
        return {service.name: service for service in planned}

    def _isolate(self, service: Service) -> None:
        """Move a worker into a namespace of its own: the engines reached through a forwarder on the
        host's end of the pair, its metrics listener (its health URL) on the namespace's address.
        Without namespaces here, it stays as it is."""
        if self.no_namespaces is not None:
            return
        try:
            namespace = self.namespaces[service.name] = netns.Namespace().create()
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:  # e.g. no CAP_NET_ADMIN here
            self.no_namespaces = f"no network namespace could be made ({exc})"
            return
        host, inside = namespace.host_address, namespace.inside_address
        engines = [*(node.port for node in self.rabbit.nodes), *(node.port for node in self.postgres.nodes)]
        redis_port = urllib.parse.urlsplit(self.redis_url).port or 6379
        log = self.root / "logs" / f"forwarder-{service.name}.log"
        forwarded = [str(port) for port in (*engines, redis_port)]
        self._forwarders.append(
            start_group([sys.executable, netns.__file__, "forward", str(host), *forwarded], log=log)
        )
        wait_for(lambda: all(answers(int(port), host=str(host)) for port in forwarded), 10, "the forwarder")
        env = service.env
        for key in ("AMQP_URL", "DATABASE_URL", "REDIS_URL"):
            env[key] = netns.via(env[key], host)
        # Its listener on the namespace's address, which this machine reaches; published-on-loopback is
        # what a container's listener says, and what keeps the development settings' loopback check.
        env.update(WORKER_METRICS_HOST=str(inside), STOCKZEN_PUBLISH_ADDRESS="127.0.0.1")
        service.health_url = service.health_url.replace("127.0.0.1", str(inside))
        service.command = namespace.command(service.command)

    def start_service(self, name: str, *, seconds: float = 60) -> None:
        """Start (or start again) one of our services and wait until it answers."""
        service = self.services[name]
        log = self.root / "logs" / f"{name}.log"
        service.process = start_group(service.command, env=service.env, log=log)
        try:
            wait_for(lambda: _answers_http(service.health_url), seconds, name)
        except TimeoutError as exc:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:]) if log.exists() else ""
            raise RuntimeError(f"{exc}; the end of its log:\n{tail}") from None

    def _start_front(self) -> None:
        config = self.root / "haproxy.cfg"
        config.write_text(_haproxy_config(self.ports))
        self._front = start_group([HAPROXY, "-db", "-f", str(config)], log=self.root / "logs" / "haproxy.log")
        wait_for(lambda: _answers_http(f"{self.front_url}/healthz"), 20, "the front (HAProxy)")

    # -- faults --------------------------------------------------------------------------------
    def stop_service(self, name: str) -> None:
        """Stop one of our services the way an orchestrator would (SIGTERM, then SIGKILL)."""
        service = self.services[name]
        if service.process is not None:
            stop_groups([service.process])
            service.process = None

    def kill_service(self, name: str) -> None:
        """Kill one of our services, children included, as a crash would."""
        service = self.services[name]
        if service.process is not None:
            kill_group(service.process)
            service.process = None

    def freeze(self, name: str) -> None:
        """Stop a service and all its processes in their tracks (SIGSTOP): to its peers it says nothing
        more, but it is not gone. Every group under it: the worker runs dramatiq in a session of its own."""
        process = self.services[name].process
        if process is not None:
            signal_tree(process.pid, signal.SIGSTOP)

    def thaw(self, name: str) -> None:
        """Let a frozen service run again."""
        process = self.services[name].process
        if process is not None:
            signal_tree(process.pid, signal.SIGCONT)

    def cut_from_broker(self, name: str) -> bool:
        """Partition a service run in a namespace from every RabbitMQ node (TCP both ways dropped by a kernel
        rule; Postgres and Redis still reached); ``False`` if it runs without one (see :attr:`no_namespaces`)."""
        namespace = self.namespaces.get(name)
        if namespace is None:
            return False
        namespace.cut([node.port for node in self.rabbit.nodes])
        return True

    def heal(self, name: str) -> None:
        """End a partition made by :meth:`cut_from_broker`."""
        if name in self.namespaces:
            self.namespaces[name].heal()

    def machine(self, letter: str) -> list[str]:
        """What runs on machine ``letter`` in this layout: its RabbitMQ node, its Patroni node (with its
        Postgres) and its inventory, worker and gateway. etcd and the third RabbitMQ node (c) stand for
        a third, small machine: a deployment puts etcd's members on three (docs/scaling.md)."""
        return [
            self.rabbit.node(f"rabbit-{letter}@localhost").name,
            self.postgres.node(f"pg-{letter}").name,
            *(f"{kind}-{letter}" for kind in ("inventory", "worker", "gateway")),
        ]

    def lose_machine(self, letter: str) -> None:
        """Everything on machine ``letter`` dies at once (SIGKILL), as when its power goes."""
        for name in self.machine(letter)[2:]:
            self.kill_service(name)
        self.rabbit.kill(self.rabbit.node(f"rabbit-{letter}@localhost"))
        self.postgres.kill_node(self.postgres.node(f"pg-{letter}"))

    def restore_machine(self, letter: str) -> None:
        """Machine ``letter`` boots again: its engines first, then our services."""
        self.postgres.start_node(self.postgres.node(f"pg-{letter}"))
        self.rabbit.restart(self.rabbit.node(f"rabbit-{letter}@localhost"))
        for name in self.machine(letter)[2:]:
            self.start_service(name)

    # -- stopping ------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop everything this topology started (ours first, then the engines); its folder goes too."""
        ours = [s.process for s in self.services.values() if s.process is not None]
        for process in ours:
            signal_tree(process.pid, signal.SIGCONT)  # a frozen service must be able to hear SIGTERM
        stop_groups([*ours, *([self._front] if self._front else []), *self._forwarders])
        for service in self.services.values():
            service.process = None
        self._front = None
        self._forwarders.clear()
        for namespace in self.namespaces.values():  # its processes are gone: the pair and the rules go too
            namespace.remove()
        self.namespaces.clear()
        errors: list[BaseException] = []
        for engine in (self.postgres, self.rabbit):
            try:
                engine.stop()
            except Exception as exc:  # stop the other engine anyway, then say what failed
                errors.append(exc)
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)
        if errors:
            raise errors[0]


def _worker_amqp_url(urls: list[str], name: str) -> str:
    """The brokers' URLs for a worker: its heartbeat, and its name on its connections (in the broker's log,
    which otherwise shows only the client's address)."""
    query = urllib.parse.urlencode(
        {"heartbeat": WORKER_HEARTBEAT_SECONDS, "client_properties": repr({"connection_name": name})}
    )
    return ",".join(f"{url}?{query}" for url in urls)


def _answers_http(url: str) -> bool:
    with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as answer:
        return bool(200 <= answer.status < 300)
    return False


def _haproxy_config(ports: Ports) -> str:
    """Round robin over the gateways; a gateway failing two checks 500 ms apart is out, and a request
    whose connection it refused is sent to the other (``option redispatch``, ``retry-on``)."""
    servers = "\n".join(
        f"    server gateway-{letter} 127.0.0.1:{ports.gateway + i} check inter 500ms fall 2 rise 2"
        for i, letter in enumerate(REPLICAS)
    )
    return f"""global
    maxconn 4096

defaults
    mode http
    timeout connect 2s
    timeout client 120s
    timeout server 120s
    retries 2
    option redispatch
    retry-on conn-failure empty-response

frontend devices
    bind 127.0.0.1:{ports.front}
    default_backend gateways

backend gateways
    balance roundrobin
    option httpchk GET /healthz
{servers}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--front-port", type=int, default=Ports.front)
    args = parser.parse_args()
    missing = [*tools_missing(), *([] if Path(HAPROXY).exists() else ["haproxy"])]
    if missing:
        print(f"not installed here: {', '.join(missing)} (bash scripts/ensure_tools.sh --cluster)", file=sys.stderr)
        return 1
    topology = Topology(ports=Ports(front=args.front_port))

    def _start() -> None:
        seconds = topology.start()
        print(f"the whole topology is up in {seconds:.1f} s (logs in {topology.root / 'logs'})")
        print(f"  devices use        {topology.front_url}  (HAProxy over gateway-a, gateway-b)")
        print(f"  RabbitMQ (quorum)  {topology.rabbit.amqp_url}")
        print(f"  Postgres (Patroni) {topology.postgres.database_url}")
        for service in topology.services.values():
            print(f"  {service.name:<12} {service.health_url}")
        print("  a token: make token")

    return serve_until_interrupted(_start, topology.stop, "cluster")


if __name__ == "__main__":
    if not answers(6379):
        print("Redis is not answering on 127.0.0.1:6379 (python scripts/ensure_services.py)", file=sys.stderr)
        sys.exit(1)
    sys.exit(main())
