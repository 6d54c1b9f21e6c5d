"""Process handling shared by the local cluster scripts (``rabbit_cluster.py``, ``pg_cluster.py``).

Every server a cluster script starts runs in a process group (a session) of its own, so that
stopping it reaches its children too (Erlang's helpers, Patroni's Postgres backends...) and
nothing else: only the groups started here are ever signalled, never processes found by name.

Standard library only: the RabbitMQ script runs before the virtual environment exists.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Self


@dataclass(frozen=True)
class RunAs:
    """The account a server runs as (Postgres refuses to run as root)."""

    uid: int
    gid: int


class Cluster:
    """A set of servers started together by :meth:`start` and stopped together by :meth:`stop`.

    A context manager: leaving it stops them all, and so does a :meth:`start` that fails half-way
    (whatever it had started is stopped before the error goes on).
    """

    def start(self) -> float:
        """Start every server; the seconds it took."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop every process started here, even after a failed start."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def answers(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on ``host``:``port``."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def refuse_taken_ports(ports: Iterable[int]) -> None:
    """Raise if any port already answers: a cluster left running would be mistaken for this one."""
    for port in ports:
        if answers(port):
            raise RuntimeError(f"port {port} is taken: another cluster running? (stop it first)")


def wait_for(condition: Callable[[], bool], seconds: float, what: str, *, every: float = 0.1) -> None:
    """Poll ``condition`` until it holds; :class:`TimeoutError` naming ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every)
    raise TimeoutError(f"{what} did not come up in {seconds} s")


def start_group(
    command: list[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    log: Path | None = None,
    run_as: RunAs | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``command`` in a new session (its own process group), output appended to ``log``."""
    output = log.open("ab") if log is not None else None
    try:
        return subprocess.Popen(
            command,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=output if output is not None else subprocess.DEVNULL,
            stderr=subprocess.STDOUT if output is not None else subprocess.DEVNULL,
            user=run_as.uid if run_as else None,
            group=run_as.gid if run_as else None,
            extra_groups=[] if run_as else None,
        )
    finally:
        if output is not None:
            output.close()  # the child holds its own copy


def signal_group(pgid: int, signum: signal.Signals) -> None:
    """Send ``signum`` to a process group; a group already gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def descendant_groups(pid: int, processes: Mapping[int, tuple[int, int]]) -> list[int]:
    """The process groups of ``pid`` and of every process under it, given ``processes`` (pid: (parent, group)).

    A child may run in a session of its own (the sync worker starts dramatiq so), out of reach of a
    signal to its parent's group."""
    children: dict[int, list[int]] = {}
    for child, (parent, _group) in processes.items():
        children.setdefault(parent, []).append(child)
    groups: set[int] = set()
    todo = [pid]
    while todo:
        current = todo.pop()
        if current in processes:
            groups.add(processes[current][1])
        todo += children.get(current, [])
    return sorted(groups)


def running_processes() -> dict[int, tuple[int, int]]:
    """Every process of this machine's: pid: (parent pid, process group), from ``/proc/<pid>/stat``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                fields = stat[stat.rindex(")") + 2 :].split()  # the name, in parentheses, may hold spaces
                found[int(entry.name)] = (int(fields[1]), int(fields[2]))
    return found


def signal_tree(pid: int, signum: signal.Signals) -> None:
    """Send ``signum`` to the group of ``pid`` and to every group of its descendants'."""
    for group in descendant_groups(pid, running_processes()) or [pid]:
        signal_group(group, signum)


def kill_group(process: subprocess.Popen[bytes], *, timeout: float = 10) -> None:
    """SIGKILL the process's group and every group under it, as a crash would, and reap the process.
    (A child in a session of its own, as the sync worker's dramatiq, would otherwise be left running,
    or be told to stop gracefully by the kernel when its parent dies.)"""
    signal_tree(process.pid, signal.SIGKILL)
    process.wait(timeout=timeout)


def stop_groups(processes: Iterable[subprocess.Popen[bytes]], *, grace: float = 15) -> None:
    """SIGTERM every group, give them ``grace`` seconds together, then SIGKILL whatever is left."""
    processes = list(processes)
    for process in processes:
        signal_group(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        signal_group(process.pid, signal.SIGKILL)  # whatever of the group is left
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)


def serve_until_interrupted(start: Callable[[], None], stop: Callable[[], None], what: str) -> int:
    """Run ``start``, then wait for Ctrl-C or SIGTERM; ``stop`` always runs, even if ``start`` failed."""

    def _interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _interrupt)
    # Explicitly: a process started in the background by a shell inherits SIGINT ignored, and Python
    # then installs no KeyboardInterrupt for it.
    signal.signal(signal.SIGINT, _interrupt)
    try:
        start()
        print("Ctrl-C stops them all.", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print(f"stopping the {what}", flush=True)
    finally:
        stop()
    return 0
