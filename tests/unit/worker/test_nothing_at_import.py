"""Importing the sync worker sets up nothing; ``configure_worker_process`` sets up all of it, still unconnected.

dramatiq calls :func:`stockzen_sync_worker.bootstrap.configure_worker_process` in each worker process.
Each check runs in a fresh interpreter, so that nothing this test run did before can hide (or cause)
a change.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

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
if sys.argv[1] == "configure":
    importlib.import_module("stockzen_sync_worker.bootstrap").configure_worker_process()
broker = dramatiq.broker.global_broker
print(json.dumps({
    "modules": modules,
    "broker": type(broker).__name__,
    "actors": {name: broker.get_actor(name).queue_name for name in broker.get_declared_actors()} if broker else {},
    "middleware": [type(m).__name__ for m in broker.middleware] if broker else [],
    "new_log_handlers": [repr(h) for h in logging.getLogger().handlers if h not in handlers],
    "loop_policy": type(asyncio.get_event_loop_policy()).__module__ if asyncio.get_event_loop_policy() is not policy else None,
    "new_sockets": sockets() - open_sockets,
    "worker_series": sorted(m.name for m in prometheus_client.REGISTRY.collect() if m.name.startswith("stockzen")),
}))
"""


def _probe(action: str, tmp_path: Path) -> dict[str, Any]:
    env = {name: value for name, value in os.environ.items() if name != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(dramatiq_prom_db=str(tmp_path / "dramatiq-prometheus"), SYNC_QUEUE="probe.sync", LOG_FORMAT="json")
    probe = subprocess.run([sys.executable, "-c", PROBE, action], env=env, capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    seen: dict[str, Any] = json.loads(probe.stdout.splitlines()[-1])
    return seen


def test_importing_every_worker_module_sets_up_nothing(tmp_path: Path) -> None:
    seen = _probe("import", tmp_path)
    assert "stockzen_sync_worker.entrypoints.actors" in seen["modules"]
    assert "stockzen_sync_worker.bootstrap" in seen["modules"]
    assert seen["broker"] == "NoneType"  # dramatiq.get_broker() would make one: read what is set instead
    assert seen["new_log_handlers"] == []
    assert seen["loop_policy"] is None
    assert seen["new_sockets"] == 0
    assert seen["worker_series"] == []  # the worker's metrics exist once a process is configured
    assert not (tmp_path / "dramatiq-prometheus").exists()  # dramatiq's exporter makes it when imported


def test_configuring_a_worker_process_sets_up_everything_and_connects_nothing_yet(tmp_path: Path) -> None:
    seen = _probe("configure", tmp_path)
    assert seen["broker"] == "SyncQueueBroker"  # dramatiq's RabbitmqBroker, declaring SYNC_QUEUE_TYPE queues
    assert seen["actors"] == {"apply_sync_batch": "probe.sync"}
    middleware = seen["middleware"]
    assert {"AsyncIO", "CurrentMessage", "Prometheus", "RuntimeShutdown"} <= set(middleware)
    assert middleware.index("DeadLetterMetrics") < middleware.index("Retries")  # sees Retries' verdict
    assert len(seen["new_log_handlers"]) == 1
    assert seen["loop_policy"] == "uvloop"
    assert seen["new_sockets"] == 0  # RabbitMQ, Postgres and Redis are reached on first use
    assert "stockzen_worker_operations" in seen["worker_series"]
