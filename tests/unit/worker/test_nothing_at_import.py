"""Importing the sync worker changes nothing: no broker, no logging, no loop policy, no metrics, no socket.

Everything happens in :func:`stockzen_sync_worker.bootstrap.configure_worker_process`, which dramatiq
calls in each worker process. The modules are imported in a fresh interpreter, so that nothing this
test run imported before can hide (or cause) a change.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PROBE = r"""
import asyncio, importlib, json, logging, os, pkgutil, sys

import dramatiq.broker
import prometheus_client

import stockzen_sync_worker


def sockets():
    found = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            found += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except FileNotFoundError:  # the directory listing's own descriptor, closed since
            pass
    return found


handlers, policy, open_sockets = list(logging.getLogger().handlers), asyncio.get_event_loop_policy(), sockets()
modules = [m.name for m in pkgutil.walk_packages(stockzen_sync_worker.__path__, "stockzen_sync_worker.")]
for name in modules:
    importlib.import_module(name)
print(json.dumps({
    "modules": modules,
    "broker": repr(dramatiq.broker.global_broker),
    "new_log_handlers": [repr(h) for h in logging.getLogger().handlers if h not in handlers],
    "loop_policy_changed": asyncio.get_event_loop_policy() is not policy,
    "new_sockets": sockets() - open_sockets,
    "worker_series": sorted(m.name for m in prometheus_client.REGISTRY.collect() if m.name.startswith("stockzen")),
}))
"""


def test_importing_every_worker_module_sets_up_nothing(tmp_path: Path) -> None:
    metrics_dir = tmp_path / "dramatiq-prometheus"
    env = {name: value for name, value in os.environ.items() if name != "PROMETHEUS_MULTIPROC_DIR"}
    env["dramatiq_prom_db"] = str(metrics_dir)
    probe = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    seen = json.loads(probe.stdout.splitlines()[-1])

    assert "stockzen_sync_worker.entrypoints.actors" in seen["modules"]
    assert "stockzen_sync_worker.bootstrap" in seen["modules"]
    assert seen["broker"] == "None"  # dramatiq.get_broker() would make one: read what is set instead
    assert seen["new_log_handlers"] == []
    assert not seen["loop_policy_changed"]
    assert seen["new_sockets"] == 0
    assert seen["worker_series"] == []  # the worker's metrics exist once a process is configured
    assert not metrics_dir.exists()  # dramatiq's exporter makes its directory when imported
