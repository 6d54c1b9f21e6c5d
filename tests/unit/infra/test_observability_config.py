"""infra/'s alert rules and dashboards: well-formed, and reading only series the services export.

The end-to-end proof (a real Prometheus scraping the running stack) is in
tests/e2e/test_observability.py; these checks are instant and name the file and panel at fault.
"""

from __future__ import annotations

import json
import re
from importlib.util import find_spec
from pathlib import Path

import pytest
import yaml

from tests.support.compose import load_compose
from tests.support.prometheus import (
    ALERT_RULES,
    INFRA,
    REPO,
    alert_rule_exprs,
    dashboard_exprs,
    dashboard_files,
    metric_names,
    names_used_by_infra,
    render_scrape_config,
)

_DECLARED = re.compile(r"\b(Counter|Gauge|Histogram|Summary)\(\s*\"([A-Za-z_:][\w:]*)\"")
_HTTP_NAMESPACE = re.compile(r"\bHttpMetrics\(\s*\"([A-Za-z_:][\w:]*)\"")
PROMETHEUS_OWN = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})


def _exposed(kind: str, name: str) -> set[str]:
    """The names a metric shows under in Prometheus (prometheus-client's naming)."""
    if kind == "Counter":
        return {name if name.endswith("_total") else f"{name}_total"}
    if kind == "Histogram":
        return {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    if kind == "Summary":
        return {name, f"{name}_sum", f"{name}_count"}
    return {name}


def _declared_in(paths: list[Path]) -> set[str]:
    names: set[str] = set()
    for path in paths:
        text = path.read_text()
        for kind, name in _DECLARED.findall(text):
            names |= _exposed(kind, name)
        for namespace in _HTTP_NAMESPACE.findall(text):
            # stockzen_platform.http.HttpMetrics builds its two names from the namespace.
            names |= _exposed("Counter", f"{namespace}_http_requests_total")
            names |= _exposed("Histogram", f"{namespace}_http_request_duration_seconds")
    return names


def declared_metric_names() -> set[str]:
    """Every series name our code and dramatiq's Prometheus middleware declare."""
    ours = [*REPO.glob("services/*/src/**/*.py"), *REPO.glob("libs/*/src/**/*.py")]
    spec = find_spec("dramatiq.middleware.prometheus")  # read, not imported: importing it makes a directory
    assert spec is not None
    assert spec.origin is not None
    return _declared_in([*ours, Path(spec.origin)])


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        ('up{job="sync-worker"} == 0', {"up"}),
        (
            'histogram_quantile(0.99, sum by (le) (rate(x_seconds_bucket{route="/api/sync",method="POST"}[5m]))) > 2',
            {"x_seconds_bucket"},
        ),
        ("sum(rate(a_total[$__rate_interval])) / sum(rate(b_total[${window}]))", {"a_total", "b_total"}),
        ('max by (queue) (q{queue!~".+\\\\.XQ"}) < 1e-9', {"q"}),
        ("sum without (instance) (rate(a_total[5m] offset 1h)) > bool 0", {"a_total"}),
        ("a_total * on (tenant) group_left (name) b_info unless c", {"a_total", "b_info", "c"}),
        ("sum(rate(a_total[5m])) by (le)", {"a_total"}),
        ('count_values("value", build_info) or vector(0) and Inf > NaN', {"build_info"}),
        ("max_over_time(rate(a_total[5m])[1h:1m])", {"a_total"}),
        ('label_replace(a, "dst", "$1", "src", "(.*)")', {"a"}),
    ],
)
def test_metric_names_are_read_off_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_every_series_infra_reads_is_declared_by_a_service() -> None:
    declared = declared_metric_names() | PROMETHEUS_OWN
    used = names_used_by_infra()
    assert used, "found no metric names in infra/: the extraction is broken"
    unknown = {name: sorted(where) for name, where in used.items() if name not in declared}
    assert not unknown, f"infra/ reads series nothing exports (typo, or a suffix missing?): {unknown}"


def test_dashboards_and_alerts_cover_what_operators_asked_for() -> None:
    used = set(names_used_by_infra())
    for needed in (
        "stockzen_gateway_http_requests_total",  # throughput and error ratio
        "stockzen_gateway_http_request_duration_seconds_bucket",  # latency percentiles
        "stockzen_gateway_sync_operations_total",  # results by code
        "stockzen_queue_messages",  # queue depth and dead letters
        "stockzen_queue_consumers",  # consumer missing
        "stockzen_worker_lww_conflicts_total",
        "stockzen_worker_dedupe_hits_total",
        "stockzen_worker_database_errors_total",
        "stockzen_gateway_rate_limited_total",
        "dramatiq_messages_total",
        "stockzen_inventory_feed_rows_total",
        "up",
    ):
        assert needed in used, f"no dashboard panel or alert reads {needed}"
    alerts = alert_rule_exprs()
    for alert in (
        "StockZenSyncErrorRatioHigh",
        "StockZenSyncLatencyP99High",
        "StockZenSyncQueueBacklog",
        "StockZenSyncQueueHasNoConsumer",
        "StockZenDeadLetterQueueNotEmpty",
        "StockZenWorkerDown",
        "StockZenRateLimitStorm",
    ):
        assert alert in alerts


def test_every_alert_says_how_bad_and_what_happened() -> None:
    document = yaml.safe_load(ALERT_RULES.read_text())
    for group in document["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
            assert rule["annotations"]["summary"], rule["alert"]
            assert rule["annotations"]["description"], rule["alert"]


def test_dashboards_use_the_provisioned_datasource() -> None:
    provisioned = yaml.safe_load((INFRA / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uids = {source["uid"] for source in provisioned["datasources"]}
    dashboards = dashboard_files()
    assert dashboards, "no dashboard under infra/grafana/dashboards"
    provider = yaml.safe_load((INFRA / "grafana/provisioning/dashboards/stockzen.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/etc/stockzen/dashboards"  # where compose mounts them
    for path in dashboards:
        dashboard = json.loads(path.read_text())
        assert dashboard["uid"], path
        assert dashboard["title"], path
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        for panel in dashboard["panels"]:
            if panel["type"] != "row":
                assert panel["datasource"]["uid"] in uids, f"{path.name}: {panel['title']}"
                assert panel["targets"], f"{path.name}: {panel['title']} has no query"
        assert dashboard_exprs(path)


def test_the_scrape_config_for_a_test_stack() -> None:
    rendered = yaml.safe_load(
        render_scrape_config({"gateway": "127.0.0.1:8000", "sync-worker": "127.0.0.1:9191"}, rule_files=[ALERT_RULES])
    )
    assert rendered["global"]["scrape_interval"] == "1s"
    assert rendered["rule_files"] == [str(ALERT_RULES)]
    assert [(job["job_name"], job["static_configs"][0]["targets"]) for job in rendered["scrape_configs"]] == [
        ("gateway", ["127.0.0.1:8000"]),
        ("sync-worker", ["127.0.0.1:9191"]),
    ]


def test_the_compose_prometheus_scrapes_every_service_under_the_jobs_alerts_name() -> None:
    config = yaml.safe_load((INFRA / "prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    # The gateway's metrics listener, which compose gives it (never its public port).
    gateway_env = load_compose()["services"]["gateway"]["environment"]
    assert jobs["gateway"] == [f"gateway:{gateway_env['GATEWAY_METRICS_PORT']}"]
    assert gateway_env["GATEWAY_METRICS_PORT"] != gateway_env["GATEWAY_PORT"]
    assert jobs["inventory"] == ["inventory:8001"]
    assert jobs["sync-worker"] == ["sync-worker:9191"]
    assert jobs["rabbitmq"] == ["rabbitmq:15692"]
    assert config["rule_files"] == ["alerts.yml"]
    for job in ("gateway", "inventory", "sync-worker"):
        assert f'job="{job}"' in ALERT_RULES.read_text(), f"no alert watches the {job} job"
