"""Deployment that cannot fail open: what compose publishes, where the services may listen, and the
secrets production refuses, each proved from outside (the compose file as compose resolves it, the real
entry points as processes, the running stack's Redis keys).

That the services listen on loopback by default: ``test_edge.py::test_services_listen_on_loopback_unless_told_otherwise``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from stockzen_gateway.config import GatewaySettings
from stockzen_inventory.config import InventorySettings
from stockzen_platform.deployment import DeploymentSettings
from stockzen_platform.settings import DEVELOPMENT_JWT_SECRET, is_loopback
from stockzen_sync_worker.config import WorkerSettings
from tests.support.compose import (
    compose_default,
    load_compose,
    production_variables,
    published_ports,
    service_environment,
    settings_from,
)
from tests.support.ops import create_product, movement
from tests.support.retry import get_within_limits, sync_until_final
from tests.support.services import ServiceUrls
from tests.support.stack import Stack

# compose service -> (settings it reads, the real entry point's arguments after `python -m`)
ENTRY_POINTS: dict[str, tuple[type[Any], list[str]]] = {
    "deployment-check": (DeploymentSettings, ["stockzen_platform.deployment"]),
    "migrate": (InventorySettings, ["stockzen_inventory", "migrate"]),
    "inventory": (InventorySettings, ["stockzen_inventory", "serve"]),
    "sync-worker": (WorkerSettings, ["stockzen_sync_worker"]),
    "gateway": (GatewaySettings, ["stockzen_gateway"]),
    # The ha profile's (docker-compose.yml): its own check, and a copy of each of our services.
    "ha-deployment-check": (DeploymentSettings, ["stockzen_platform.deployment"]),
    "ha-migrate": (InventorySettings, ["stockzen_inventory", "migrate"]),
    "ha-inventory-a": (InventorySettings, ["stockzen_inventory", "serve"]),
    "ha-sync-worker-a": (WorkerSettings, ["stockzen_sync_worker"]),
    "ha-gateway-a": (GatewaySettings, ["stockzen_gateway"]),
}
# What compose may publish beyond loopback, in production only: each stack's one public address.
PUBLIC = {"gateway", "ha-front"}
# The secrets one stack uses and the other does not (docker-compose.yml's profile `ha`).
HA_ONLY_SECRETS = ("RABBITMQ_ERLANG_COOKIE", "POSTGRES_REPLICATION_PASSWORD", "PATRONI_RESTAPI_PASSWORD")
SINGLE_NODE_ONLY_SECRETS = ("GRAFANA_ADMIN_PASSWORD",)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


def _refusals(compose: Mapping[str, Any], variables: Mapping[str, str]) -> dict[str, str]:
    """What would refuse to start, by compose service, for these variables (settings read in-process)."""
    refused = {}
    for name, (settings_class, _) in ENTRY_POINTS.items():
        try:
            settings_from(settings_class, service_environment(compose["services"][name], variables))
        except (ValueError, KeyError) as exc:  # ValidationError is a ValueError; KeyError: ${X:?}
            refused[name] = str(exc)
    return refused


def _beyond_loopback(compose: Mapping[str, Any], variables: Mapping[str, str]) -> list[str]:
    return [
        f"{port.service} on {port.host_ip or '*'}:{port.host_port}"
        for port in published_ports(compose, variables)
        if not is_loopback(port.host_ip)
    ]


def test_compose_publishes_on_loopback_only_without_production_settings(compose: dict[str, Any]) -> None:
    published = published_ports(compose, {})
    assert {port.service for port in published} >= {"gateway", "grafana", "prometheus", "rabbitmq", "ha-front"}
    assert _beyond_loopback(compose, {}) == []
    assert _refusals(compose, {}) == {}, "development must still start with no settings at all"


def test_compose_publishes_beyond_loopback_only_with_every_production_secret(compose: dict[str, Any]) -> None:
    real = production_variables()
    assert _refusals(compose, real) == {}, "a real production configuration must start"
    assert _beyond_loopback(compose, real) == ["gateway on 0.0.0.0:8000", "ha-front on 0.0.0.0:8080"]
    # Anything less than production with every secret real: something beyond loopback refuses to start.
    short_of_it: dict[str, dict[str, str]] = {
        "the address without production": {"STOCKZEN_PUBLISH_ADDRESS": "0.0.0.0"},  # noqa: S104
        "production without secrets": {"STOCKZEN_ENV": "production", "STOCKZEN_PUBLISH_ADDRESS": "0.0.0.0"},  # noqa: S104
        "real secrets, development": {**real, "STOCKZEN_ENV": "development"},
    }
    # (RABBITMQ_USER's default, `stockzen`, is an account of its own: not a secret, not refused.)
    for variable in real.keys() - {"STOCKZEN_ENV", "STOCKZEN_PUBLISH_ADDRESS", "RABBITMQ_USER"}:
        short_of_it[f"{variable} left to its development default"] = {k: v for k, v in real.items() if k != variable}
    for case, variables in short_of_it.items():
        assert _beyond_loopback(compose, variables), case
        refused = _refusals(compose, variables).keys()
        # Each stack stops at its check or its gateway; a secret one stack does not use stops only the other.
        if not any(variable in case for variable in SINGLE_NODE_ONLY_SECRETS):
            assert refused & {"ha-deployment-check", "ha-gateway-a"}, f"{case}: the ha stack would start: {refused}"
        if not any(variable in case for variable in HA_ONLY_SECRETS):
            assert refused & {"deployment-check", "gateway"}, f"{case}: the stack would start: {refused}"


def test_grafana_prometheus_rabbitmq_and_the_databases_never_leave_loopback(compose: dict[str, Any]) -> None:
    for variables in ({}, production_variables()):
        for port in published_ports(compose, variables):
            if port.service not in PUBLIC:
                assert is_loopback(port.host_ip), port
    services = compose["services"]
    ha_internal = [name for name in services if name.startswith("ha-") and name not in ("ha-front", "ha-rabbit-a")]
    for internal in (
        "postgres",
        "redis",
        "inventory",
        "sync-worker",
        "postgres-exporter",
        "redis-exporter",
        *ha_internal,
    ):
        assert not services[internal].get("ports"), f"{internal} must not be published"
    assert all("network_mode" not in service for service in services.values()), "host networking skips publishing"


def test_everything_holding_data_or_a_password_waits_for_the_deployment_check(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("postgres", "redis", "rabbitmq", "grafana"):
        condition = services[name]["depends_on"]["deployment-check"]["condition"]
        assert condition == "service_completed_successfully", name
    for name in ("ha-pg-a", "ha-pg-b", "ha-etcd", "ha-redis", "ha-rabbit-a", "ha-rabbit-b", "ha-rabbit-c"):
        condition = services[name]["depends_on"]["ha-deployment-check"]["condition"]
        assert condition == "service_completed_successfully", name
    check = services["deployment-check"]
    assert check["entrypoint"] == ["python", "-m", "stockzen_platform.deployment"]
    # It sees the very values the backing services and Grafana are given.
    env = service_environment(check, {})
    assert env["GRAFANA_ADMIN_PASSWORD"] == service_environment(services["grafana"], {})["GF_SECURITY_ADMIN_PASSWORD"]
    assert env["POSTGRES_PASSWORD"] == service_environment(services["postgres"], {})["POSTGRES_PASSWORD"]
    assert env["RABBITMQ_PASSWORD"] == service_environment(services["rabbitmq"], {})["RABBITMQ_DEFAULT_PASS"]
    assert env["RABBITMQ_USER"] == service_environment(services["rabbitmq"], {})["RABBITMQ_DEFAULT_USER"]
    ha_check = service_environment(services["ha-deployment-check"], {})
    for node in ("ha-rabbit-a", "ha-rabbit-b", "ha-rabbit-c"):
        given = service_environment(services[node], {})
        assert ha_check["RABBITMQ_ERLANG_COOKIE"] == given["RABBITMQ_ERLANG_COOKIE"]
        assert (ha_check["RABBITMQ_USER"], ha_check["RABBITMQ_PASSWORD"]) == (
            given["RABBITMQ_DEFAULT_USER"],
            given["RABBITMQ_DEFAULT_PASS"],
        )
    for node in ("ha-pg-a", "ha-pg-b"):
        given = service_environment(services[node], {})
        assert ha_check["POSTGRES_PASSWORD"] == given["PATRONI_SUPERUSER_PASSWORD"]
        assert ha_check["POSTGRES_REPLICATION_PASSWORD"] == given["PATRONI_REPLICATION_PASSWORD"]
        assert ha_check["PATRONI_RESTAPI_PASSWORD"] == given["PATRONI_RESTAPI_PASSWORD"]


def test_compose_redis_has_a_memory_ceiling_and_evicts_rather_than_refuses(compose: dict[str, Any]) -> None:
    command = [str(part) for part in compose["services"]["redis"]["command"]]
    options = dict(zip(command[1::2], command[2::2], strict=False))
    assert options.get("--maxmemory", "0") not in ("0", ""), "Redis must have a memory ceiling"
    # Full, a noeviction (or volatile-*, once no key has a TTL) Redis refuses writes, and a refused
    # write turns the rate limiter off. Every key is a cache entry or a hint (next test), so any may go.
    assert options.get("--maxmemory-policy") in ("allkeys-lru", "allkeys-lfu")


async def test_every_redis_key_the_stack_writes_expires(
    stack: Stack, gateway: httpx.AsyncClient, tenant_id: uuid.UUID, database: ServiceUrls
) -> None:
    product = uuid.uuid4()
    ops = [create_product(tenant_id, product), movement(tenant_id, product)]
    gateway.headers["Idempotency-Key"] = str(uuid.uuid4())
    response = await sync_until_final(gateway, ops)
    assert response.status_code == 200, response.text
    del gateway.headers["Idempotency-Key"]
    assert (await get_within_limits(gateway, "/api/products")).status_code == 200
    client = aioredis.Redis.from_url(database.redis_url)
    try:
        families, permanent = set(), []
        async for raw in client.scan_iter(match=f"{database.redis_prefix}*", count=500):
            # Some keys hold raw ids (the result cache's), so match the tenant as text or as bytes.
            if str(tenant_id).encode() in raw or tenant_id.bytes in raw:
                families.add(raw.removeprefix(database.redis_prefix.encode()).split(b":", 1)[0].decode())
            if await client.ttl(raw) == -1:
                permanent.append(raw)
    finally:
        await client.aclose()
    # Request keys and their byte counts, results, the checkpoint, the rate buckets (docs/security.md
    # lists them; reply lists are gone once read, and the per-process wake lists name no tenant).
    assert {"idem", "checkpoint", "rate"} <= families, families
    assert len(families) >= 5, families
    assert permanent == [], "every key must expire: Redis is a cache and a wakeup path, never the truth"


@dataclass
class Run:
    """One entry point run to its refusal."""

    case: str
    returncode: int
    output: str


def _run_all(cases: Mapping[str, tuple[str, Mapping[str, str]]]) -> list[Run]:
    """Start every case's entry point at once (they are slow to import), in exactly its environment."""
    started = {}
    for case, (service, env) in cases.items():
        command = [sys.executable, "-m", *ENTRY_POINTS[service][1]]
        started[case] = subprocess.Popen(
            command,
            env={"PATH": os.environ.get("PATH", ""), **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    runs = []
    for case, process in started.items():
        try:
            output, _ = process.communicate(timeout=90)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        runs.append(Run(case, process.returncode, output))
    return runs


def _expect_refused(runs: list[Run], named: Mapping[str, list[str]], never_printed: Mapping[str, list[str]]) -> None:
    for run in runs:
        assert run.returncode == 2, f"{run.case}: exit {run.returncode}\n{run.output}"
        assert "refusing to start" in run.output, f"{run.case}:\n{run.output}"
        for variable in named[run.case]:
            assert variable in run.output, f"{run.case}: {variable} not named\n{run.output}"
        for value in never_printed[run.case]:
            assert value not in run.output, f"{run.case}: a secret value was printed"


# compose variable -> values production refuses (None: left unset, so compose's development default).
# Every rule's placeholders, short values and URL forms: tests/unit/platform/test_settings_rules.py.
BAD_VALUES: dict[str, list[str | None]] = {
    "JWT_SECRET": [None, "changeme"],
    "INTERNAL_TOKEN_SECRET": [None],
    "APP_DB_PASSWORD": [None],
    "POSTGRES_PASSWORD": [None],
    "RABBITMQ_USER": ["guest"],
    "RABBITMQ_PASSWORD": [None, "guest"],
    "GRAFANA_ADMIN_PASSWORD": [None, "changeme"],
    "RABBITMQ_ERLANG_COOKIE": [None],
    "POSTGRES_REPLICATION_PASSWORD": [None],
    "PATRONI_RESTAPI_PASSWORD": [None, "changeme"],
}
# compose variable -> the services that receive it, and the variable each names when refusing
RECEIVERS: dict[str, dict[str, str]] = {
    "JWT_SECRET": {"gateway": "JWT_SECRET"},
    "INTERNAL_TOKEN_SECRET": {"gateway": "INTERNAL_TOKEN_SECRET", "inventory": "INTERNAL_TOKEN_SECRET"},
    "APP_DB_PASSWORD": {
        "deployment-check": "APP_DB_PASSWORD",
        "inventory": "DATABASE_URL",
        "sync-worker": "DATABASE_URL",
    },
    "POSTGRES_PASSWORD": {"deployment-check": "POSTGRES_PASSWORD", "migrate": "DATABASE_ADMIN_URL"},
    "RABBITMQ_USER": {"deployment-check": "RABBITMQ_USER", "gateway": "AMQP_URL", "sync-worker": "AMQP_URL"},
    "RABBITMQ_PASSWORD": {"deployment-check": "RABBITMQ_PASSWORD", "gateway": "AMQP_URL", "sync-worker": "AMQP_URL"},
    "GRAFANA_ADMIN_PASSWORD": {"deployment-check": "GRAFANA_ADMIN_PASSWORD"},
    "RABBITMQ_ERLANG_COOKIE": {"ha-deployment-check": "RABBITMQ_ERLANG_COOKIE"},
    "POSTGRES_REPLICATION_PASSWORD": {"ha-deployment-check": "POSTGRES_REPLICATION_PASSWORD"},
    "PATRONI_RESTAPI_PASSWORD": {"ha-deployment-check": "PATRONI_RESTAPI_PASSWORD"},
}


@pytest.mark.slow
def test_production_refuses_every_development_or_placeholder_secret(compose: dict[str, Any]) -> None:
    real = production_variables()
    real_secrets = [value for name, value in real.items() if name.endswith(("_SECRET", "_PASSWORD"))]
    cases, named, never_printed = {}, {}, {}
    for variable, values in BAD_VALUES.items():
        for value in values:
            variables = {k: v for k, v in real.items() if k != variable}
            if value is not None:
                variables[variable] = value
            bad = compose_default(variable) if value is None else value
            for service, refused_variable in RECEIVERS[variable].items():
                case = f"{service} with {variable}={'<development default>' if value is None else repr(value)}"
                cases[case] = (service, service_environment(compose["services"][service], variables))
                named[case] = [refused_variable]
                never_printed[case] = [*real_secrets, *([bad] if bad else [])]
    _expect_refused(_run_all(cases), named, never_printed)


def test_production_refuses_equal_jwt_and_internal_secrets(compose: dict[str, Any]) -> None:
    variables = production_variables()
    variables["INTERNAL_TOKEN_SECRET"] = variables["JWT_SECRET"]
    env = service_environment(compose["services"]["gateway"], variables)
    runs = _run_all({"equal secrets": ("gateway", env)})
    _expect_refused(
        runs,
        {"equal secrets": ["JWT_SECRET and INTERNAL_TOKEN_SECRET must differ"]},
        {"equal secrets": [variables["JWT_SECRET"]]},
    )


def test_production_requires_a_jwt_audience_and_issuer(compose: dict[str, Any]) -> None:
    variables = {k: v for k, v in production_variables().items() if k not in ("JWT_AUDIENCE", "JWT_ISSUER")}
    env = service_environment(compose["services"]["gateway"], variables)
    runs = _run_all({"no audience, no issuer": ("gateway", env)})
    _expect_refused(
        runs,
        {"no audience, no issuer": ["JWT_AUDIENCE is required", "JWT_ISSUER is required"]},
        {"no audience, no issuer": [variables["JWT_SECRET"], variables["INTERNAL_TOKEN_SECRET"]]},
    )


@pytest.mark.slow
def test_outside_production_nothing_listens_or_is_published_beyond_loopback() -> None:
    development = {
        "STOCKZEN_ENV": "development",
        "JWT_SECRET": DEVELOPMENT_JWT_SECRET,
        "INTERNAL_TOKEN_SECRET": "stockzen-development-only-internal-secret-do-not-deploy",
    }
    every_interface = "0.0.0.0"  # noqa: S104
    cases = {
        "gateway on every interface": (
            "gateway",
            {**development, "GATEWAY_HOST": every_interface, "GATEWAY_METRICS_HOST": every_interface},
        ),
        "inventory on every interface": ("inventory", {**development, "INVENTORY_HOST": every_interface}),
        "worker metrics on every interface": ("sync-worker", {**development, "WORKER_METRICS_HOST": every_interface}),
        "gateway published beyond loopback": (
            "gateway",
            {**development, "GATEWAY_HOST": every_interface, "STOCKZEN_PUBLISH_ADDRESS": every_interface},
        ),
        "stack published beyond loopback": ("deployment-check", {"STOCKZEN_PUBLISH_ADDRESS": every_interface}),
        "ha stack published beyond loopback": ("ha-deployment-check", {"STOCKZEN_PUBLISH_ADDRESS": every_interface}),
    }
    named = {
        "gateway on every interface": ["GATEWAY_HOST", "GATEWAY_METRICS_HOST"],
        "inventory on every interface": ["INVENTORY_HOST"],
        "worker metrics on every interface": ["WORKER_METRICS_HOST"],
        "gateway published beyond loopback": ["STOCKZEN_PUBLISH_ADDRESS"],
        "stack published beyond loopback": ["STOCKZEN_PUBLISH_ADDRESS"],
        "ha stack published beyond loopback": ["STOCKZEN_PUBLISH_ADDRESS"],
    }
    _expect_refused(_run_all(cases), named, {case: [] for case in cases})
