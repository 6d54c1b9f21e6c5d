"""Running the services as real processes for end-to-end tests, and stopping every one of them.

Each service starts in a session of its own; stopping signals the whole group, and for the
worker also dramatiq's own session (its supervisor gives dramatiq a session of its own too).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port nothing listens on right now, below the kernel's ephemeral range.

    A port the kernel hands out (bind to 0) can be taken again by any outgoing connection before
    the service binds it; ports below the ephemeral range are never handed out that way.
    """
    low, _ = (int(p) for p in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    for _ in range(200):
        port = random.randrange(20000, min(low, 32768))
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in _status(pid)


def _status(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return "zombie"


def _killpg(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


@dataclass
class ServiceProcess:
    """One service started by a test."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    health_url: str
    sessions: set[int] = field(default_factory=set)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, lines: int = 40) -> str:
        """The end of the service's output, for failure messages."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _note_sessions(self) -> None:
        # The worker supervisor's child (dramatiq) leads a session of its own.
        self.sessions.add(self.pid)
        for child in _children(self.pid):
            with contextlib.suppress(OSError):
                self.sessions.add(os.getsid(child))

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Wait until the health endpoint answers 200 (or fail with the service's output)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.health_url, timeout=1.0).status_code == 200:
                    self._note_sessions()
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not become healthy:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL everything the service runs (a crash, not a shutdown)."""
        self._note_sessions()
        for session in self.sessions:
            _killpg(session, signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self, grace: float = 8.0) -> None:
        """Ask politely (one SIGTERM to the service), then SIGKILL whatever is left of its sessions."""
        self._note_sessions()
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=grace)
        for session in self.sessions:
            _killpg(session, signal.SIGKILL)
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=5)
        leftovers = _members_after_kill(self.sessions)
        assert not leftovers, f"{self.name} left processes behind: {leftovers}"


def _members_after_kill(sessions: set[int], timeout: float = 5.0) -> list[int]:
    """What is still alive in ``sessions`` once SIGKILL had time to act: a killed process may take a
    moment to exit (on a busy machine, or when an earlier :meth:`ServiceProcess.kill` orphaned it)."""
    deadline = time.monotonic() + timeout
    while True:
        leftovers = [pid for session in sessions for pid in _session_members(session)]
        if not leftovers or time.monotonic() > deadline:
            return leftovers
        time.sleep(0.05)


def _session_members(session: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.getsid(int(entry.name)) == session and _alive(int(entry.name)):
                    members.append(int(entry.name))
    return members


def start_service(name: str, args: list[str], env: Mapping[str, str], log_dir: Path, health_url: str) -> ServiceProcess:
    """Start a service in a session of its own, its output going to ``log_dir/name.log``."""
    log_path = log_dir / f"{name}.log"
    with log_path.open("ab") as log_file:
        popen = subprocess.Popen(
            [sys.executable, "-m", *args],
            env={**os.environ, **env},
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return ServiceProcess(name, popen, log_path, health_url)
