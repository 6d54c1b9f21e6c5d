#!/usr/bin/env python3
"""A Postgres primary and a synchronous standby under Patroni, with etcd, until Ctrl-C (``make cluster-postgres``).

One etcd (client port 2479, peer port 2480) holds the cluster's state; two Patroni nodes, ``pg-a``
(Postgres on 5441, Patroni's REST API on 8441) and ``pg-b`` (5442, 8442), each with its own data
folder under one temporary folder, elect a leader through it. ``pg-a`` is started first, so it
bootstraps and leads; ``pg-b`` clones it and becomes its synchronous standby. Then the roles and the
database the services need are created and the migrations applied on the primary, exactly as
``stockzen-inventory migrate`` does, and the services' multi-host ``DATABASE_URL`` is printed.

The settings, and why (``docs/scaling.md``, "Postgres: what is built"):

- ``synchronous_mode: true``: Patroni names the standby in ``synchronous_standby_names`` and
  ``synchronous_commit`` is ``on``, so a commit is acknowledged only once the standby has the WAL on
  disk, and Patroni promotes only a node that was synchronous: an acknowledged commit survives the
  primary's loss.
- ``synchronous_mode_strict: false``: when the *standby* is lost, Patroni empties
  ``synchronous_standby_names`` and the primary keeps accepting writes alone (availability over
  durability for that window: a second loss before the standby is back would lose those commits).
  Strict mode would instead block every commit until a standby returns, turning a standby's death
  into an outage of the write path.
- ``primary_start_timeout: 0``: a crashed primary is failed over at once rather than restarted in
  place (the default waits up to 300 s for it); ``ttl: 10``, ``loop_wait: 1``, ``retry_timeout: 4``:
  failover within seconds (Patroni requires ``loop_wait + 2 * retry_timeout <= ttl``).
- ``use_pg_rewind`` (with data checksums): the old primary rejoins as a standby of the new one.

Authentication, loopback only: the application role ``stockzen_app`` is trusted from 127.0.0.1 (as the
development ``DATABASE_URL`` has no password); the superuser and the replication role have passwords
made for this run. Postgres refuses to run as root: run as root, Patroni and etcd run as ``postgres``.

:meth:`PgCluster.crash_postgres` kills a node's Postgres as a crash would; :meth:`PgCluster.freeze` stops
the node whole (Patroni and Postgres), as a paused VM or a hung disk would; :meth:`PgCluster.reset`
then resets it as a watchdog would (:meth:`PgCluster.thaw`, resuming it, is not safe with Patroni 3.0.2).

Run it as ``python -m scripts.pg_cluster`` from the repository, in the virtual environment (the
migrations are the inventory service's). Used by ``tests/integration/infra/test_pg_failover.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scripts.cluster_processes import (
    Cluster,
    RunAs,
    kill_group,
    refuse_taken_ports,
    serve_until_interrupted,
    signal_group,
    start_group,
    stop_groups,
    wait_for,
)

PG_BIN = Path(os.environ.get("PG_BIN_DIR", "/usr/lib/postgresql/15/bin"))
PATRONI = shutil.which("patroni") or "/usr/bin/patroni"
ETCD = shutil.which("etcd") or "/usr/bin/etcd"
NODE_LETTERS = "ab"
SCOPE = "stockzen"
DATABASE = "stockzen"
APP_ROLE = "stockzen_app"
SUPERUSER = "postgres"
REPLICATION_ROLE = "replicator"
RUNNING_STATES = {"running", "streaming"}  # Patroni 3.0.4 and later say "streaming" for a replica

# Patroni's dynamic configuration, written to etcd at bootstrap (see the module docstring for why).
DCS_SETTINGS: dict[str, Any] = {
    "ttl": 10,
    "loop_wait": 1,
    "retry_timeout": 4,
    "primary_start_timeout": 0,
    "synchronous_mode": True,
    "synchronous_mode_strict": False,
    # etcd unreachable (one etcd here): the primary keeps its role while the other node's Patroni still
    # confirms it, rather than demote itself and stop every write.
    "failsafe_mode": True,
    "postgresql": {
        "use_pg_rewind": True,
        "use_slots": True,
        "parameters": {
            "synchronous_commit": "on",
            "wal_level": "replica",
            "hot_standby": "on",
            "wal_log_hints": "on",
            "max_wal_senders": 5,
            "max_replication_slots": 5,
            "max_connections": 100,
        },
    },
}


def tools_missing() -> list[str]:
    """The programs this cluster needs that are not installed (``scripts/ensure_tools.sh --cluster``)."""
    wanted = {"patroni": Path(PATRONI), "etcd": Path(ETCD), "postgres": PG_BIN / "postgres"}
    return [name for name, path in wanted.items() if not path.exists()]


@dataclass(frozen=True)
class PgNode:
    """One Patroni node: its name, its Postgres port and its REST API port."""

    name: str
    port: int
    rest_port: int

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"


class PgCluster(Cluster):
    """Start, prepare, inspect, crash, freeze and stop the cluster. A context manager: leaving it stops it all."""

    def __init__(
        self,
        *,
        base_port: int = 5441,
        rest_base_port: int = 8441,
        etcd_port: int = 2479,
        root: Path | None = None,
    ):
        self.nodes = [
            PgNode(f"pg-{letter}", base_port + index, rest_base_port + index)
            for index, letter in enumerate(NODE_LETTERS)
        ]
        self.etcd_port = etcd_port
        self.etcd_peer_port = etcd_port + 1
        self._own_root = root is None
        self.root = root or Path(tempfile.mkdtemp(prefix="stockzen-pg-cluster-"))
        # Made for this run only: they never leave the cluster's own (private) folder and this process.
        self._superuser_password = secrets.token_urlsafe(18)
        self._replication_password = secrets.token_urlsafe(18)
        self._run_as = _unprivileged_account()
        self._patronis: dict[str, subprocess.Popen[bytes]] = {}
        self._etcd: subprocess.Popen[bytes] | None = None

    # -- addresses -------------------------------------------------------------------------
    @property
    def database_url(self) -> str:
        """The services' ``DATABASE_URL``: every node, and only a read-write one will do."""
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)
        return f"postgresql://{APP_ROLE}@{hosts}/{DATABASE}?target_session_attrs=read-write"

    def admin_url(self, node: PgNode, database: str = "postgres") -> str:
        """The superuser's URL for one node (what ``DATABASE_ADMIN_URL`` would be)."""
        return f"postgresql://{SUPERUSER}:{self._superuser_password}@127.0.0.1:{node.port}/{database}"

    def node(self, name: str) -> PgNode:
        return next(node for node in self.nodes if node.name == name)

    def data_dir(self, node: PgNode) -> Path:
        return self.root / node.name / "data"

    # -- life cycle ------------------------------------------------------------------------
    def start(self) -> float:
        """Start etcd, then ``pg-a`` (it bootstraps and leads), then ``pg-b`` (its synchronous standby)."""
        started = time.monotonic()
        refuse_taken_ports(
            [self.etcd_port, self.etcd_peer_port, *(n.port for n in self.nodes), *(n.rest_port for n in self.nodes)]
        )
        self._prepare_folders()
        self._start_etcd()
        first, *others = self.nodes
        self._start_patroni(first)
        self.await_role(first, {"leader"}, seconds=90)
        for node in others:
            self._start_patroni(node)
        for node in others:
            self.await_role(node, {"sync_standby"}, seconds=120)
        return time.monotonic() - started

    def _prepare_folders(self) -> None:
        for folder in [self.root, self.root / "etcd", *(self.root / node.name for node in self.nodes)]:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            if self._run_as is not None:
                os.chown(folder, self._run_as.uid, self._run_as.gid)
        for node in self.nodes:
            config = self.root / node.name / "patroni.yml"
            config.write_text(json.dumps(self._patroni_config(node), indent=2))  # JSON is YAML
            config.chmod(0o600)
            if self._run_as is not None:
                os.chown(config, self._run_as.uid, self._run_as.gid)

    def _env(self, home: Path) -> dict[str, str]:
        """The caller's environment without what would steer the tools elsewhere (a virtualenv's
        Python for Patroni's interpreter, libpq's PG* defaults, a packaged etcd's ETCD_* settings)."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("PG", "PYTHON", "ETCD_", "PATRONI_")) and key not in {"VIRTUAL_ENV", "HOME"}
        }
        env["HOME"] = str(home)
        return env

    def _start_etcd(self) -> None:
        client = f"http://127.0.0.1:{self.etcd_port}"
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        self._etcd = start_group(
            [
                ETCD,
                "--name=stockzen-etcd",
                f"--data-dir={self.root / 'etcd' / 'data'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=stockzen-etcd={peer}",
                "--initial-cluster-state=new",
                f"--initial-cluster-token=stockzen-{secrets.token_hex(4)}",
            ],
            env=self._env(self.root / "etcd"),
            cwd=self.root / "etcd",
            log=self.root / "etcd" / "etcd.log",
            run_as=self._run_as,
        )
        wait_for(lambda: _get_json(f"{client}/health").get("health") == "true", 30, "etcd")

    def _start_patroni(self, node: PgNode) -> None:
        home = self.root / node.name
        self._patronis[node.name] = start_group(
            [PATRONI, str(home / "patroni.yml")],
            env=self._env(home),
            cwd=home,
            log=home / "patroni.log",
            run_as=self._run_as,
        )

    def _patroni_config(self, node: PgNode) -> dict[str, Any]:
        home = self.root / node.name
        return {
            "scope": SCOPE,
            "namespace": "/stockzen-pg/",
            "name": node.name,
            "restapi": {"listen": f"127.0.0.1:{node.rest_port}", "connect_address": f"127.0.0.1:{node.rest_port}"},
            "etcd3": {"hosts": [f"127.0.0.1:{self.etcd_port}"]},
            "bootstrap": {
                "dcs": DCS_SETTINGS,
                "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}, "data-checksums"],
            },
            "postgresql": {
                "listen": f"127.0.0.1:{node.port}",
                "connect_address": f"127.0.0.1:{node.port}",
                "data_dir": str(self.data_dir(node)),
                "bin_dir": str(PG_BIN),
                "pgpass": str(home / "pgpass"),
                "authentication": {
                    "superuser": {"username": SUPERUSER, "password": self._superuser_password},
                    "replication": {"username": REPLICATION_ROLE, "password": self._replication_password},
                },
                # The socket in the node's private folder: not the machine's Postgres's, not reachable by others.
                "parameters": {"unix_socket_directories": str(home)},
                "pg_hba": [
                    "local all all trust",
                    f"host all {APP_ROLE} 127.0.0.1/32 trust",
                    "host all all 127.0.0.1/32 scram-sha-256",
                    f"host replication {REPLICATION_ROLE} 127.0.0.1/32 scram-sha-256",
                ],
                # If the old primary cannot be rewound, it is cloned afresh: with synchronous mode
                # nothing it acknowledged is missing from the new primary.
                "remove_data_directory_on_rewind_failure": True,
                "remove_data_directory_on_diverged_timelines": True,
            },
        }

    async def prepare_database(self) -> list[str]:
        """Create the roles and the database, apply the migrations on the leader; the versions applied."""
        from stockzen_inventory.adapters.migrations import migrate, prepare_database

        admin_url = self.admin_url(self.leader())
        await prepare_database(admin_url, self.database_url)
        return await migrate(admin_url, self.database_url)

    def stop(self) -> None:
        """Stop the Patroni nodes (each stops its Postgres), then etcd; whatever is left is killed."""
        for node in self.nodes:
            self.thaw(node)  # a frozen node must be able to hear SIGTERM
        stop_groups(self._patronis.values(), grace=30)
        self._patronis.clear()
        for node in self.nodes:
            self._signal_postgres(node, signal.SIGKILL)  # Postgres is not in Patroni's process group
        if self._etcd is not None:
            stop_groups([self._etcd], grace=10)
            self._etcd = None
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    # -- crashes ---------------------------------------------------------------------------
    def postmaster_pid(self, node: PgNode) -> int | None:
        """The pid of ``node``'s running postmaster, if it is running (checked, not just read from the file)."""
        try:
            pid = int((self.data_dir(node) / "postmaster.pid").read_text().split()[0])
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            return None
        # A stale pid file may name a pid since reused by something else: it must be this node's postgres.
        return pid if str(self.data_dir(node)).encode() in command else None

    def crash_postgres(self, node: PgNode) -> int:
        """SIGKILL ``node``'s postmaster and its children at once, as a crash would; the postmaster's pid."""
        pid = self.postmaster_pid(node)
        if pid is None:
            raise RuntimeError(f"{node.name} has no running postmaster")
        self._signal_postgres(node, signal.SIGKILL)
        return pid

    def kill_node(self, node: PgNode) -> None:
        """SIGKILL ``node``'s Patroni and its Postgres together, as the loss of its machine would."""
        process = self._patronis.pop(node.name, None)
        if process is not None:
            kill_group(process)
        self._signal_postgres(node, signal.SIGKILL)

    def start_node(self, node: PgNode) -> None:
        """Start a lost node's Patroni again: it rejoins from its data folder (rewound, or cloned afresh)."""
        self._start_patroni(node)

    def kill_etcd(self) -> None:
        """SIGKILL etcd (the cluster's one member): Patroni's DCS is gone until :meth:`start_etcd`."""
        if self._etcd is not None:
            kill_group(self._etcd)
            self._etcd = None

    def start_etcd(self) -> None:
        """Start etcd again on its data folder (the flags of a new cluster are ignored on existing data)."""
        self._start_etcd()

    def _signal_postgres(self, node: PgNode, signum: signal.Signals) -> None:
        """Signal ``node``'s postmaster and its children (not a process group: each child calls setsid())."""
        pid = self.postmaster_pid(node)
        if pid is not None:
            for member in [pid, *_children(pid)]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(member, signum)

    # -- hangs ----------------------------------------------------------------------------
    def freeze(self, node: PgNode) -> None:
        """Stop ``node`` in its tracks, as a paused VM or a hung disk would: its Patroni (its whole
        group) and its postmaster with every child get SIGSTOP. Its sockets stay open and the kernel
        still accepts connections and acknowledges what is sent, but nothing answers: Patroni stops
        renewing the leader key (the standby takes over once it expires, ``ttl``), and a client waits
        on its statement until a limit of its own (``create_pool``'s ``statement_seconds``) ends it."""
        process = self._patronis.get(node.name)
        if process is not None:
            signal_group(process.pid, signal.SIGSTOP)
        pid = self.postmaster_pid(node)
        if pid is None:
            return
        # The postmaster first, so it forks no child after the children are listed.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
        for child in _children(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGSTOP)

    def thaw(self, node: PgNode) -> None:
        """Let a frozen ``node`` run on (SIGCONT to its Postgres, then its Patroni), as a resumed VM.

        Not safe with Debian 12's Patroni (3.0.2): resumed, it acts on the cluster view it had before the
        freeze. It may write the leader key unconditionally, taking it from the standby promoted
        meanwhile, which then demotes itself and is rewound onto the old primary's timeline, its
        acknowledged commits gone (Patroni 3.0.3 writes the key only if it still holds it or nobody does,
        patroni/patroni#2689); and it empties ``synchronous_standby_names`` on a Postgres that is still
        read-write, releasing commits that the promoted standby never got. :meth:`reset` is what the
        tests use.
        """
        self._signal_postgres(node, signal.SIGCONT)
        process = self._patronis.get(node.name)
        if process is not None:
            signal_group(process.pid, signal.SIGCONT)

    def reset(self, node: PgNode) -> None:
        """Reset a frozen ``node``, as a watchdog or a hypervisor resets a hung machine: its Patroni and its
        Postgres are killed where they stand and Patroni is started afresh. It finds the leader key taken
        by the promoted standby and starts Postgres as its standby, rewinding what the old primary wrote
        that nobody acknowledged; its Postgres never runs read-write again, so it acknowledges nothing.
        """
        self.kill_node(node)
        self.start_node(node)

    # -- inspection ------------------------------------------------------------------------
    def members(self) -> list[dict[str, Any]]:
        """The cluster's members as Patroni reports them (``GET /cluster`` on the first node answering)."""
        for node in self.nodes:
            answer = _get_json(f"{node.rest_url}/cluster")
            if "members" in answer:
                members: list[dict[str, Any]] = answer["members"]
                return members
        return []

    def role(self, node: PgNode) -> tuple[str | None, str | None]:
        """``node``'s role (leader, sync_standby, replica) and state (running, streaming...), if listed."""
        for member in self.members():
            if member.get("name") == node.name:
                return member.get("role"), member.get("state")
        return None, None

    def leader(self) -> PgNode:
        for member in self.members():
            if member.get("role") == "leader":
                return self.node(str(member["name"]))
        raise LookupError("the cluster has no leader")

    def await_role(self, node: PgNode, roles: set[str], *, seconds: float) -> float:
        """Wait until ``node`` runs in one of ``roles``; the seconds waited."""
        started = time.monotonic()

        def arrived() -> bool:
            process = self._patronis.get(node.name)
            if process is not None and process.poll() is not None:
                log = (self.root / node.name / "patroni.log").read_text(errors="replace")
                raise RuntimeError(f"Patroni {node.name} exited ({process.returncode}):\n{log[-3000:]}")
            role, state = self.role(node)
            return role in roles and state in RUNNING_STATES

        wait_for(arrived, seconds, f"{node.name} as {'/'.join(sorted(roles))}", every=0.2)
        return time.monotonic() - started


def _unprivileged_account() -> RunAs | None:
    """Who runs Postgres: the caller, unless the caller is root (then ``postgres``, as Debian's packages do)."""
    if os.geteuid() != 0:
        return None
    account = pwd.getpwnam("postgres")
    return RunAs(account.pw_uid, account.pw_gid)


def _children(pid: int) -> list[int]:
    """The pids whose parent is ``pid`` (from /proc: this is Linux-only, as the cluster is)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # /proc/<pid>/stat: "pid (comm) state ppid ...", and comm may hold spaces: split after ')'.
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if parent == pid:
            found.append(int(entry.name))
    return found


def _get_json(url: str) -> dict[str, Any]:
    """GET ``url``'s JSON object; an empty one if nothing answers (yet)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            answer = json.load(response)
    except (OSError, ValueError, urllib.error.URLError):
        return {}
    return answer if isinstance(answer, dict) else {}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--base-port", type=int, default=int(os.environ.get("PG_CLUSTER_BASE_PORT", "5441")))
    parser.add_argument("--rest-port", type=int, default=int(os.environ.get("PG_CLUSTER_REST_PORT", "8441")))
    parser.add_argument("--etcd-port", type=int, default=int(os.environ.get("PG_CLUSTER_ETCD_PORT", "2479")))
    args = parser.parse_args()
    missing = tools_missing()
    if missing:
        print(f"not installed here: {', '.join(missing)} (bash scripts/ensure_tools.sh --cluster)", file=sys.stderr)
        return 1
    cluster = PgCluster(base_port=args.base_port, rest_base_port=args.rest_port, etcd_port=args.etcd_port)

    def _start() -> None:
        seconds = cluster.start()
        applied = asyncio.run(cluster.prepare_database())
        print(f"Postgres primary + synchronous standby up in {seconds:.1f} s (data in {cluster.root})")
        for node in cluster.nodes:
            role, state = cluster.role(node)
            print(f"  {node.name}  127.0.0.1:{node.port}  REST {node.rest_url}  {role} ({state})")
        print(f"migrations applied: {', '.join(applied) or 'none pending'}")
        print(f"DATABASE_URL={cluster.database_url}")

    return serve_until_interrupted(_start, cluster.stop, "Postgres cluster")


if __name__ == "__main__":
    sys.exit(main())
