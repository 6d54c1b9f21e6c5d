"""``stockzen-sync-worker``: run the dramatiq worker for the sync queue.

dramatiq runs in a session of its own and gets exactly one SIGTERM from here: a process-group
signal (what honcho sends) would reach its worker processes twice, and with the AsyncIO
middleware a doubly-signalled worker hangs. If this process dies, the kernel sends dramatiq
SIGTERM (PR_SET_PDEATHSIG), so no worker outlives its supervisor.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from types import FrameType

from stockzen_platform.settings import load_settings

from .config import WorkerSettings

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def dramatiq_command(settings: WorkerSettings) -> list[str]:
    """The dramatiq command line for these settings."""
    return [
        sys.executable,
        "-m",
        "dramatiq",
        "stockzen_sync_worker.bootstrap:configure_worker_process",
        "--processes",
        str(settings.processes),
        "--threads",
        str(settings.threads),
        "--queues",
        settings.sync_queue,
        "--worker-shutdown-timeout",
        str(int(settings.shutdown_grace_seconds * 1000)),
        "--skip-logging",
    ]


def metrics_environment(settings: WorkerSettings) -> dict[str, str]:
    """Point dramatiq's and our metrics at one fresh multiprocess directory before anything imports them."""
    shutil.rmtree(settings.metrics_dir, ignore_errors=True)  # dramatiq never clears old counters
    os.makedirs(settings.metrics_dir, exist_ok=True)
    return {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": settings.metrics_dir,
        "dramatiq_prom_db": settings.metrics_dir,
        "dramatiq_prom_host": settings.metrics_host,
        "dramatiq_prom_port": str(settings.metrics_port),
    }


def main() -> int:
    """Start dramatiq, forward one SIGTERM on SIGTERM/SIGINT, kill it if it overstays its grace."""
    settings = load_settings(WorkerSettings, "stockzen-sync-worker")
    child = subprocess.Popen(  # noqa: S603 (our own interpreter and arguments)
        dramatiq_command(settings),
        env=metrics_environment(settings),
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )
    stopping: list[float] = []

    def stop(signum: int, frame: FrameType | None) -> None:
        if not stopping:
            stopping.append(time.monotonic())
            child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while True:
        try:
            return child.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            if stopping and time.monotonic() - stopping[0] > settings.shutdown_grace_seconds:
                os.killpg(child.pid, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main())
