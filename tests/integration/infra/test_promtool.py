"""promtool on infra/: the compose Prometheus config, the alert rules, their unit tests, and the
PromQL of every dashboard panel (Debian's prometheus package; `scripts/ensure_tools.sh` installs it)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.support.prometheus import (
    ALERT_RULES,
    ALERT_TESTS,
    PROMETHEUS_CONFIG,
    dashboard_exprs,
    dashboard_files,
    promtool_binary,
    render_scrape_config,
    with_grafana_variables_filled,
)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run promtool; the result carries its output for the failure message."""
    return subprocess.run([promtool_binary(), *args], capture_output=True, text=True, timeout=60, check=False)


def test_promtool_accepts_the_compose_prometheus_config() -> None:
    done = promtool("check", "config", str(PROMETHEUS_CONFIG))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 rule files found" in done.stdout + done.stderr  # it followed rule_files to alerts.yml


def test_promtool_accepts_the_alert_rules() -> None:
    done = promtool("check", "rules", str(ALERT_RULES))
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_alert_rules_pass_their_unit_tests() -> None:
    done = promtool("test", "rules", str(ALERT_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    # promtool has no "check this expression"; a recording rule per query makes it parse them all.
    rules: list[dict[str, Any]] = []
    for dashboard in dashboard_files():
        for where, expr in dashboard_exprs(dashboard).items():
            concrete = with_grafana_variables_filled(expr)
            rules.append({"record": f"dashboard:query_{len(rules)}", "expr": concrete, "labels": {"where": where}})
    assert rules
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    done = promtool("check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_accepts_the_config_rendered_for_a_test_stack(tmp_path: Path) -> None:
    path = tmp_path / "prometheus.yml"
    path.write_text(
        render_scrape_config(
            {"gateway": "127.0.0.1:8000", "inventory": "127.0.0.1:8001", "sync-worker": "127.0.0.1:9191"},
            rule_files=[ALERT_RULES],
        )
    )
    done = promtool("check", "config", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
