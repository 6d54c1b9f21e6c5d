"""Prometheus for the tests: the metric names infra/ dashboards and alert rules read, a scrape
config for a test stack, and a real Prometheus server run around a test."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.processes import free_port

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
PROMETHEUS_CONFIG = INFRA / "prometheus" / "prometheus.yml"
ALERT_RULES = INFRA / "prometheus" / "alerts.yml"
ALERT_TESTS = INFRA / "prometheus" / "alerts_test.yml"
DASHBOARDS = INFRA / "grafana" / "dashboards"

# The scrape job of each service: the alert rules select on these (``up{job="sync-worker"}``).
GATEWAY_JOB, INVENTORY_JOB, WORKER_JOB = "gateway", "inventory", "sync-worker"

# Grafana's variables ($__rate_interval, ${var}, $var) stand for durations or label values.
_GRAFANA_VARIABLE = re.compile(r"\$__\w+|\$\{[^}]*\}|\$\w+")
_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_LABEL_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
# An identifier not glued to a number (1e-9, 5m) or another name; a following "(" makes it a call.
_IDENTIFIER = re.compile(r"(?<![\w:.])([A-Za-z_:][\w:]*)(\s*\()?")
_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or", "unless"}
    | {"inf", "nan"}
)


def with_grafana_variables_filled(expr: str) -> str:
    """A dashboard query with Grafana's ``$__rate_interval``-style variables replaced, as plain PromQL."""
    return _GRAFANA_VARIABLE.sub("1m", expr)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression (possibly with Grafana variables) selects.

    Names come out as Prometheus stores them: ``x_bucket`` for a histogram's buckets, ``x_total``
    for a counter. Function and aggregation names (anything called), keywords, label names and
    values, numbers and durations are not metric names.
    """
    text = with_grafana_variables_filled(expr)
    text = _STRING.sub('""', text)
    text = _LABEL_MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _LABEL_LIST.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name, call = match.groups()
        if call is None and name.lower() not in _KEYWORDS:
            names.add(name)
    return names


def alert_rule_exprs(path: Path = ALERT_RULES) -> dict[str, str]:
    """Every rule's expression in a Prometheus rules file, by alert (or recording rule) name."""
    document = yaml.safe_load(path.read_text())
    exprs: dict[str, str] = {}
    for group in document["groups"]:
        for rule in group["rules"]:
            exprs[rule.get("alert") or rule["record"]] = str(rule["expr"])
    return exprs


def dashboard_files(directory: Path = DASHBOARDS) -> list[Path]:
    """The Grafana dashboard JSON files under ``directory``."""
    return sorted(directory.glob("*.json"))


def dashboard_exprs(path: Path) -> dict[str, str]:
    """Every query expression of a Grafana dashboard, keyed ``"<panel title> / <refId>"``."""
    exprs: dict[str, str] = {}

    def walk(node: Any, title: str) -> None:
        if isinstance(node, dict):
            title = str(node.get("title", title))
            for target in node.get("targets", []):
                if isinstance(target, dict) and target.get("expr"):
                    exprs[f"{title} / {target.get('refId', '?')}"] = str(target["expr"])
            for key, value in node.items():
                if key != "targets":
                    walk(value, title)
        elif isinstance(node, list):
            for item in node:
                walk(item, title)

    walk(json.loads(path.read_text()), path.name)
    return exprs


def names_used_by_infra() -> dict[str, set[str]]:
    """Metric name -> where it is used, over the alert rules and every dashboard."""
    used: dict[str, set[str]] = {}
    sources = {f"alert {name}": expr for name, expr in alert_rule_exprs().items()}
    for dashboard in dashboard_files():
        sources.update({f"{dashboard.name}: {key}": expr for key, expr in dashboard_exprs(dashboard).items()})
    for where, expr in sources.items():
        for name in metric_names(expr):
            used.setdefault(name, set()).add(where)
    return used


def render_scrape_config(targets: Mapping[str, str], *, rule_files: list[Path], scrape_interval: str = "1s") -> str:
    """A Prometheus config scraping one ``host:port`` per job, evaluating ``rule_files`` as often."""
    config = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [target]}]} for job, target in targets.items()
        ],
    }
    return yaml.safe_dump(config, sort_keys=False)


def prometheus_binary() -> str:
    """The ``prometheus`` server on PATH (Debian's package: ``scripts/ensure_tools.sh`` installs it)."""
    found = shutil.which("prometheus")
    assert found, "prometheus is not installed: run `bash scripts/ensure_tools.sh` (make test does)"
    return found


def promtool_binary() -> str:
    """``promtool`` on PATH (Debian's prometheus package: ``scripts/ensure_tools.sh`` installs it)."""
    found = shutil.which("promtool")
    assert found, "promtool is not installed: run `bash scripts/ensure_tools.sh` (make test does)"
    return found


class PrometheusServer:
    """A Prometheus server of the test's own: a free port, a scratch TSDB, its own process group."""

    def __init__(self, config: Path, work_dir: Path) -> None:
        self.config = config
        self.port = free_port()
        self.storage = work_dir / "tsdb"
        self.log_path = work_dir / "prometheus.log"
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 30) -> str:
        """The end of the server's output, for failure messages."""
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def start(self, timeout: float = 30.0) -> None:
        """Start the server and wait until it reports ready."""
        with self.log_path.open("ab") as log:
            self._popen = subprocess.Popen(
                [
                    prometheus_binary(),
                    f"--config.file={self.config}",
                    f"--storage.tsdb.path={self.storage}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # so that stop() can signal everything it runs
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._popen.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self._popen.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/-/ready", timeout=1.0).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"prometheus did not become ready:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM the server's process group, SIGKILL it if it lingers."""
        if self._popen is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._popen.pid, signal.SIGTERM)
        try:
            self._popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._popen.pid, signal.SIGKILL)
            self._popen.wait(timeout=5)
        self._popen = None


@contextlib.contextmanager
def running_prometheus(targets: Mapping[str, str], work_dir: Path) -> Iterator[PrometheusServer]:
    """A Prometheus scraping ``targets`` every second and evaluating infra/'s alert rules."""
    work_dir.mkdir(parents=True, exist_ok=True)
    config = work_dir / "prometheus.yml"
    config.write_text(render_scrape_config(targets, rule_files=[ALERT_RULES]))
    server = PrometheusServer(config, work_dir)
    try:
        server.start()
        yield server
    finally:
        server.stop()
