"""docker-compose.yml and the Dockerfiles, checked without a Docker engine (there is none in CI).

`docker compose config -q` runs too when the compose plugin is installed; everything else reads the
files: health checks, start order, paths that must exist, and settings the services accept.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from pydantic import ValidationError

from stockzen_gateway.config import GatewaySettings
from stockzen_inventory.config import InventorySettings
from stockzen_platform.amqp import QueueType, broker_urls
from stockzen_platform.deployment import DeploymentSettings
from stockzen_sync_worker.config import WorkerSettings
from tests.support.compose import (
    COMPOSE,
    interpolate,
    load_compose,
    production_variables,
    published_ports,
    service_environment,
    settings_from,
)
from tests.support.prometheus import REPO

OUR_SERVICES = {
    # compose service -> (workspace package, console script, Dockerfile, service directory)
    "gateway": ("stockzen-gateway", "stockzen-gateway", "Dockerfile", "services/gateway"),
    "inventory": ("stockzen-inventory", "stockzen-inventory", "Dockerfile", "services/inventory"),
    "sync-worker": ("stockzen-sync-worker", "stockzen-sync-worker", "Dockerfile", "services/sync-worker"),
}
_BUILD_ARG = re.compile(r"\$\{?(\w+)\}?")


def render(dockerfile: str, args: Mapping[str, str]) -> str:
    """The Dockerfile's text with its build arguments substituted (what the build sees)."""
    return _BUILD_ARG.sub(lambda match: args.get(match.group(1), match.group(0)), dockerfile)


BACKING = ("postgres", "redis", "rabbitmq")
# The ha profile (high availability): two of each of our services, and their backing services.
HA_OURS = tuple(f"ha-{name}-{replica}" for name in OUR_SERVICES for replica in "ab")
HA_RABBITMQ = ("ha-rabbit-a", "ha-rabbit-b", "ha-rabbit-c")
HA_POSTGRES = ("ha-pg-a", "ha-pg-b")
HA_BACKING = (*HA_POSTGRES, "ha-redis", *HA_RABBITMQ)
HA_STACK = ("ha-deployment-check", *HA_BACKING, "ha-etcd", "ha-migrate", *HA_OURS, "ha-front")
SETTINGS_CLASSES: dict[str, type[Any]] = {
    "gateway": GatewaySettings,
    "inventory": InventorySettings,
    "migrate": InventorySettings,
    "sync-worker": WorkerSettings,
}


def kind(service: str) -> str:
    """Which of the single-node stack's services ``service`` is a copy of (ha-gateway-b: gateway)."""
    return re.sub(r"-[ab]$", "", service.removeprefix("ha-")) if service.startswith("ha-") else service


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


def _services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = compose["services"]
    return services


def _depends_on(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    depends = service.get("depends_on", {})
    assert isinstance(depends, dict), "depends_on must be the long form, with a condition per dependency"
    return depends


def _bind_sources(service: dict[str, Any]) -> Iterator[str]:
    for volume in service.get("volumes", []):
        source = volume.get("source", "") if isinstance(volume, dict) else volume.split(":", 1)[0]
        if isinstance(volume, dict) and volume.get("type") != "bind":
            continue
        if source.startswith((".", "/")):
            yield source


def _named_volumes(service: dict[str, Any]) -> Iterator[str]:
    for volume in service.get("volumes", []):
        source = volume.get("source", "") if isinstance(volume, dict) else volume.split(":", 1)[0]
        if source and not source.startswith((".", "/", "$", "~")):
            yield source


def test_compose_has_the_whole_stack(compose: dict[str, Any]) -> None:
    services = _services(compose)
    for name in (*BACKING, "migrate", *OUR_SERVICES, "prometheus", "grafana", "postgres-exporter", "redis-exporter"):
        assert name in services, f"docker-compose.yml has no {name}"
    assert services["rabbitmq"]["image"].startswith("rabbitmq:3.10-management")


def test_every_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    for name, service in _services(compose).items():
        check = service.get("healthcheck")
        assert check, f"{name} has no healthcheck"
        assert not check.get("disable"), f"{name} disables its healthcheck"
        test = check["test"]
        assert test[0] in ("CMD", "CMD-SHELL"), f"{name}: healthcheck test {test!r}"
        assert len(test) > 1, f"{name}: healthcheck test {test!r}"


def test_every_dependency_waits_for_a_condition(compose: dict[str, Any]) -> None:
    services = _services(compose)
    allowed = {"service_started", "service_healthy", "service_completed_successfully"}
    for name, service in services.items():
        for dependency, spec in _depends_on(service).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            assert spec.get("condition") in allowed, f"{name} -> {dependency}: {spec}"


def _assert_start_after(services: dict[str, Any], ours: Iterable[str], migrate: str, backing: Iterable[str]) -> None:
    """Each of ``ours`` waits for ``migrate`` to complete and for every ``backing`` service to be healthy."""
    for name in ours:
        depends = _depends_on(services[name])
        assert depends[migrate]["condition"] == "service_completed_successfully", name
        for service in backing:
            assert depends[service]["condition"] == "service_healthy", f"{name} -> {service}"


def test_our_services_start_after_the_migrations_and_healthy_backing_services(compose: dict[str, Any]) -> None:
    services = _services(compose)
    _assert_start_after(services, OUR_SERVICES, "migrate", BACKING)
    assert _depends_on(services["migrate"])["postgres"]["condition"] == "service_healthy"
    assert _depends_on(services["grafana"])["prometheus"]["condition"] == "service_healthy"


def test_every_build_and_bind_mount_path_exists(compose: dict[str, Any]) -> None:
    declared_volumes = set((compose.get("volumes") or {}).keys())
    for name, service in _services(compose).items():
        assert "image" in service or "build" in service, f"{name} has neither image nor build"
        build = service.get("build")
        if build is not None:
            context = REPO / (build if isinstance(build, str) else build.get("context", "."))
            assert context.is_dir(), f"{name}: build context {context} is missing"
            dockerfile = context / (build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile")
            assert dockerfile.is_file(), f"{name}: {dockerfile} is missing"
        for source in _bind_sources(service):
            assert (REPO / source).exists(), f"{name} mounts {source}, which does not exist"
        for volume in _named_volumes(service):
            assert volume in declared_volumes, f"{name} uses volume {volume}, not declared under volumes:"


def test_the_images_of_our_services(compose: dict[str, Any]) -> None:
    services = _services(compose)
    uv_version = re.search(r"^UV_VERSION := (\S+)$", (REPO / "Makefile").read_text(), re.MULTILINE)
    assert uv_version is not None
    for name, (package, script, dockerfile, directory) in OUR_SERVICES.items():
        build = services[name]["build"]
        assert (build["context"], build["dockerfile"]) == (".", dockerfile), name  # the workspace is the context
        text = render((REPO / dockerfile).read_text(), build.get("args", {}))
        assert "FROM python:3.11-slim" in text
        assert f"pip install --no-cache-dir uv=={uv_version.group(1)}" in text, (
            f"{dockerfile}: uv not pinned as in the Makefile"
        )
        assert f"uv sync --frozen --no-dev --no-editable --package {package}" in text, f"{name}: {dockerfile}"
        assert re.search(r"^USER (?!root)\S+$", text, re.MULTILINE), f"{dockerfile} runs as root"
        linked = f"ln -s /app/.venv/bin/{script} /usr/local/bin/stockzen-service" in text
        assert f'ENTRYPOINT ["{script}"]' in text or (linked and 'ENTRYPOINT ["stockzen-service"]' in text), name
        if "target" in build:
            assert re.search(rf"^FROM \S+ AS {build['target']}$", text, re.MULTILINE), (
                f"{name}: no stage {build['target']}"
            )
        pyproject = tomllib.loads((REPO / directory / "pyproject.toml").read_text())
        assert pyproject["project"]["name"] == package
        assert script in pyproject["project"]["scripts"], f"{package} has no console script {script}"
    gateway_image = render((REPO / "Dockerfile").read_text(), {"SERVICE": "gateway"})
    assert "COPY --from=web /web/dist /app/web" in gateway_image.split("AS gateway", 1)[1]  # the browser app
    migrate = services["migrate"]
    assert migrate["build"] == services["inventory"]["build"]
    assert migrate["command"] == ["migrate"]
    assert migrate["healthcheck"]["test"] == ["CMD", "stockzen-inventory", "migrate", "--check"]
    ignored = (REPO / ".dockerignore").read_text().split()
    assert "**/.venv" in ignored
    assert "**/.git" in ignored


@pytest.mark.parametrize("service", [*SETTINGS_CLASSES, "ha-migrate", *HA_OURS])
def test_the_services_accept_their_compose_settings(
    compose: dict[str, Any], service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    environment = service_environment(_services(compose)[service], variables={})
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    settings = SETTINGS_CLASSES[kind(service)]()
    assert settings.environment.value == "development"
    if kind(service) == "gateway":
        assert "DATABASE_URL" not in environment, "the gateway never touches Postgres: no credentials for it"
    else:
        assert environment["DATABASE_URL"].startswith("postgresql://stockzen_app:"), "connect as the restricted role"
    host = {"gateway": "GATEWAY_HOST", "inventory": "INVENTORY_HOST", "sync-worker": "WORKER_METRICS_HOST"}.get(
        kind(service)
    )
    if host:
        assert environment[host] == "0.0.0.0", f"{service} must listen on every interface in its container"  # noqa: S104
    if service.startswith("ha-") and "AMQP_URL" in environment:
        assert settings.sync_queue_type is QueueType.QUORUM
        assert len(settings.amqp_urls) == len(HA_RABBITMQ)


@pytest.mark.parametrize("service", ["gateway", "inventory", "ha-gateway-a", "ha-inventory-a"])
def test_production_refuses_the_development_defaults(
    compose: dict[str, Any], service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    environment = service_environment(_services(compose)[service], variables={"STOCKZEN_ENV": "production"})
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError, match="development secret"):
        SETTINGS_CLASSES[kind(service)]()


# ---- The ha profile: the high-availability topology (docs/scaling.md). ----


def _depends_closure(services: dict[str, dict[str, Any]], start: str) -> set[str]:
    found, pending = set(), [start]
    while pending:
        name = pending.pop()
        if name not in found:
            found.add(name)
            pending.extend(_depends_on(services[name]))
    return found


def _mounted(service: dict[str, Any], target: str) -> str:
    """The host path bind-mounted at ``target`` in ``service``'s container."""
    for volume in service.get("volumes", []):
        source, mounted_at = str(volume).split(":")[:2]
        if mounted_at == target:
            return source
    raise AssertionError(f"nothing is mounted at {target}")


def test_the_ha_profile_is_the_ha_services_and_starts_alone(compose: dict[str, Any]) -> None:
    services = _services(compose)
    ha = {name for name in services if name.startswith("ha-")}
    assert ha == set(HA_STACK)
    for name, service in services.items():
        # Services without a profile always start: the single-node stack must not pull in the ha one.
        assert service.get("profiles") == (["ha"] if name in ha else None), name
        assert all(dependency.startswith("ha-") == (name in ha) for dependency in _depends_on(service)), name
    # `docker compose --profile ha up ha-front` (the top of the file): its dependencies are the rest.
    assert _depends_closure(services, "ha-front") == ha
    assert "docker compose --profile ha up --build ha-front" in COMPOSE.read_text()


def test_two_of_each_of_our_services_differing_only_by_name(compose: dict[str, Any]) -> None:
    services = _services(compose)
    for name in OUR_SERVICES:
        first, second = services[f"ha-{name}-a"], services[f"ha-{name}-b"]
        assert first == second, name
        assert first["build"] == services[name]["build"], f"ha-{name}: the same image as {name}"
        assert first["healthcheck"] == services[name]["healthcheck"], name
        copies = [other for other in HA_STACK if services[other].get("image") == services[name]["image"]]
        assert [other for other in copies if services[other].get("command") == services[name].get("command")] == [
            f"ha-{name}-a",
            f"ha-{name}-b",
        ]
    # The gateways reach either inventory by the name the two share.
    gateway = service_environment(services["ha-gateway-a"], {})
    assert gateway["INVENTORY_URL"] == "http://ha-inventory:8001"
    for replica in ("ha-inventory-a", "ha-inventory-b"):
        assert services[replica]["networks"]["default"]["aliases"] == ["ha-inventory"]


def test_the_ha_services_start_after_the_migrations_and_healthy_backing_services(compose: dict[str, Any]) -> None:
    services = _services(compose)
    _assert_start_after(services, HA_OURS, "ha-migrate", HA_BACKING)
    for gateway in ("ha-gateway-a", "ha-gateway-b"):
        for inventory in ("ha-inventory-a", "ha-inventory-b"):
            assert _depends_on(services[gateway])[inventory]["condition"] == "service_healthy"
    migrate = services["ha-migrate"]
    assert {name: spec["condition"] for name, spec in _depends_on(migrate).items()} == dict.fromkeys(
        HA_POSTGRES, "service_healthy"
    )
    assert (migrate["build"], migrate["command"], migrate["healthcheck"]) == (
        services["migrate"]["build"],
        services["migrate"]["command"],
        services["migrate"]["healthcheck"],
    )
    for name in (*HA_BACKING, "ha-etcd"):
        condition = _depends_on(services[name])["ha-deployment-check"]["condition"]
        assert condition == "service_completed_successfully", name


def test_three_rabbitmq_nodes_form_one_cluster_with_one_cookie(compose: dict[str, Any]) -> None:
    services = _services(compose)
    nodes = [name for name in HA_STACK if str(services[name].get("image", "")).startswith("rabbitmq:")]
    assert nodes == list(HA_RABBITMQ)
    config = {}
    for name in nodes:
        node = services[name]
        assert node["image"] == services["rabbitmq"]["image"] == "rabbitmq:3.10-management"
        # The node's name is rabbit@<hostname>, and its peers reach it by that name (the service's).
        assert node["hostname"] == name
        source = _mounted(node, "/etc/rabbitmq/rabbitmq.conf")
        assert source == "./infra/rabbitmq/ha/rabbitmq.conf", name
        assert _mounted(node, "/etc/rabbitmq/enabled_plugins") == _mounted(
            services["rabbitmq"], "/etc/rabbitmq/enabled_plugins"
        )
        assert node["healthcheck"]["test"] == ["CMD", "rabbitmq-diagnostics", "-q", "check_running"]
    for line in (REPO / "infra/rabbitmq/ha/rabbitmq.conf").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, value = (part.strip() for part in line.split("=", 1))
            config[key] = value
    assert config["cluster_formation.peer_discovery_backend"] == "classic_config"
    listed = {value for key, value in config.items() if key.startswith("cluster_formation.classic_config.nodes.")}
    assert listed == {f"rabbit@{name}" for name in nodes}
    assert config["cluster_partition_handling"] == "pause_minority"
    # One cookie, as compose gives it, set or not; the same one the deployment check sees.
    for variables in ({}, production_variables()):
        cookies = {service_environment(services[name], variables)["RABBITMQ_ERLANG_COOKIE"] for name in nodes}
        check = service_environment(services["ha-deployment-check"], variables)
        assert cookies == {check["RABBITMQ_ERLANG_COOKIE"]}
        assert all(cookies)
    # The first node boots alone; the others join it (blank nodes booted together could each start one).
    for name in nodes[1:]:
        assert _depends_on(services[name])[nodes[0]]["condition"] == "service_healthy"
    # Their own data: a volume each.
    assert len({_mounted(services[name], "/var/lib/rabbitmq") for name in nodes}) == len(nodes)


def test_every_ha_service_uses_quorum_queues_on_all_three_nodes(compose: dict[str, Any]) -> None:
    services = _services(compose)
    users = {
        (
            service_environment(services[name], {})["RABBITMQ_DEFAULT_USER"],
            service_environment(services[name], {})["RABBITMQ_DEFAULT_PASS"],
        )
        for name in HA_RABBITMQ
    }
    brokered = [name for name in HA_STACK if "AMQP_URL" in (services[name].get("environment") or {})]
    assert sorted(brokered) == sorted(f"ha-{name}-{replica}" for name in ("gateway", "sync-worker") for replica in "ab")
    for name in brokered:
        environment = service_environment(services[name], {})
        assert environment["SYNC_QUEUE_TYPE"] == QueueType.QUORUM.value, name
        urls = [urlsplit(url) for url in broker_urls(environment["AMQP_URL"])]
        assert [(url.scheme, url.hostname, url.port) for url in urls] == [
            ("amqp", node, 5672) for node in HA_RABBITMQ
        ], name
        assert {(url.username, url.password) for url in urls} == users, f"{name}: the nodes' own user"


def test_patroni_runs_two_postgres_nodes_of_one_cluster_in_synchronous_mode(compose: dict[str, Any]) -> None:
    services = _services(compose)
    patroni = yaml.safe_load((REPO / "infra/patroni/patroni.yml").read_text())
    dcs = patroni["bootstrap"]["dcs"]
    assert dcs["synchronous_mode"] is True
    assert dcs["postgresql"]["parameters"]["synchronous_commit"] == "on"
    assert dcs.get("synchronous_mode_strict", False) is False
    environments = {name: service_environment(services[name], {}) for name in HA_POSTGRES}
    assert len({env["PATRONI_SCOPE"] for env in environments.values()}) == 1, "two nodes of one cluster"
    assert "scope" not in patroni, "the scope is set once, for both nodes, in docker-compose.yml"
    for name, env in environments.items():
        node = services[name]
        assert env["PATRONI_NAME"] == name
        assert env["PATRONI_RESTAPI_CONNECT_ADDRESS"] == f"{name}:8008"
        assert env["PATRONI_POSTGRESQL_CONNECT_ADDRESS"] == f"{name}:5432"
        assert env["PATRONI_ETCD3_HOSTS"] == "ha-etcd:2379"
        assert _mounted(node, "/etc/patroni/patroni.yml") == "./infra/patroni/patroni.yml"
        assert node["build"] == {"context": "infra/patroni"}
        assert _depends_on(node)["ha-etcd"]["condition"] == "service_healthy"
        assert "8008/health" in " ".join(node["healthcheck"]["test"])
        # The superuser is the one the migrations and the deployment check know; the replication
        # user is the one pg_hba lets replicate.
        assert env["PATRONI_SUPERUSER_USERNAME"] == "postgres"
        check = service_environment(services["ha-deployment-check"], {})
        assert env["PATRONI_SUPERUSER_PASSWORD"] == check["POSTGRES_PASSWORD"]
        assert env["PATRONI_REPLICATION_PASSWORD"] == check["POSTGRES_REPLICATION_PASSWORD"]
        assert env["PATRONI_RESTAPI_PASSWORD"] == check["PATRONI_RESTAPI_PASSWORD"]
        replication = f"host replication {env['PATRONI_REPLICATION_USERNAME']} all scram-sha-256"
        assert replication in patroni["postgresql"]["pg_hba"]
    assert all("trust" not in rule for rule in patroni["postgresql"]["pg_hba"])
    assert len({_mounted(services[name], "/var/lib/postgresql/data") for name in HA_POSTGRES}) == 2
    dockerfile = (REPO / "infra/patroni/Dockerfile").read_text()
    assert re.search(r"^FROM postgres:15(-\w+)?$", dockerfile, re.MULTILINE)
    assert "apt-get install -y --no-install-recommends patroni python3-etcd" in dockerfile
    assert re.search(r"^USER postgres$", dockerfile, re.MULTILINE)
    assert patroni["postgresql"]["bin_dir"] == "/usr/lib/postgresql/15/bin", "the image's Postgres"
    assert services["ha-etcd"]["image"].startswith("quay.io/coreos/etcd:v3.5.")


def test_every_ha_database_url_names_both_nodes_and_asks_for_the_primary(compose: dict[str, Any]) -> None:
    services = _services(compose)
    checked = []
    for name in HA_STACK:
        environment = service_environment(services[name], {})
        for variable in ("DATABASE_URL", "DATABASE_ADMIN_URL"):
            if variable not in environment:
                continue
            url = urlsplit(environment[variable])
            hosts = url.netloc.rpartition("@")[2].split(",")
            assert hosts == [f"{node}:5432" for node in HA_POSTGRES], f"{name} {variable}"
            assert parse_qs(url.query) == {"target_session_attrs": ["read-write"]}, f"{name} {variable}"
            checked.append(name)
    assert set(checked) == {
        "ha-migrate",
        *(f"ha-{name}-{replica}" for name in ("inventory", "sync-worker") for replica in "ab"),
    }


def test_the_front_names_both_gateways_and_checks_their_health(compose: dict[str, Any]) -> None:
    services = _services(compose)
    front = services["ha-front"]
    assert front["image"].startswith("haproxy:2.")
    config = (REPO / _mounted(front, "/usr/local/etc/haproxy/haproxy.cfg")).read_text()
    lines = [line.strip() for line in config.splitlines() if line.strip() and not line.strip().startswith("#")]
    gateway_port = service_environment(services["ha-gateway-a"], {})["GATEWAY_PORT"]
    servers = [line.split()[1:3] for line in lines if line.startswith("server ")]
    assert servers == [[name, f"{name}:{gateway_port}"] for name in ("ha-gateway-a", "ha-gateway-b")]
    checked = any(line.startswith("default-server") and " check" in line for line in lines) or all(
        " check" in line for line in lines if line.startswith("server ")
    )
    assert checked, "the front must health-check the gateways"
    assert "option httpchk" in lines
    assert "http-check send meth GET uri /healthz" in lines
    assert "http-check expect status 200" in lines
    (bind,) = [line for line in lines if line.startswith("bind ")]
    # Published as the gateway is: on 127.0.0.1 unless production says otherwise, and the only ha
    # service that may leave this machine.
    published = {port.service: port for port in published_ports(compose, {})}
    assert bind == f"bind :{published['ha-front'].container_port}"
    assert published["ha-front"].host_ip == published["gateway"].host_ip == "127.0.0.1"
    assert published["ha-front"].host_port != published["gateway"].host_port, "both stacks can run at once"
    public = {port.service for port in published_ports(compose, production_variables()) if port.host_ip != "127.0.0.1"}
    assert public == {"gateway", "ha-front"}
    for name in (*HA_OURS, *HA_POSTGRES, "ha-redis", "ha-etcd", "ha-rabbit-b", "ha-rabbit-c"):
        assert not services[name].get("ports"), f"{name} must not be published"


def test_production_refuses_the_ha_profiles_development_secrets(compose: dict[str, Any]) -> None:
    services = _services(compose)
    check, ha_check = services["deployment-check"], services["ha-deployment-check"]
    assert (ha_check["entrypoint"], ha_check["build"]) == (check["entrypoint"], check["build"])
    ha_secrets = ("RABBITMQ_ERLANG_COOKIE", "POSTGRES_REPLICATION_PASSWORD", "PATRONI_RESTAPI_PASSWORD")
    # Each check sees its own stack's secrets: the ha profile runs no Grafana.
    assert set(ha_check["environment"]) == set(check["environment"]) - {"GRAFANA_ADMIN_PASSWORD"} | set(ha_secrets)
    real = production_variables()
    settings_from(DeploymentSettings, service_environment(ha_check, real))
    # The single-node stack's check is not given them: it needs no values for the ha profile.
    single_node = {k: v for k, v in real.items() if k not in ha_secrets}
    settings_from(DeploymentSettings, service_environment(check, single_node))
    for secret in ha_secrets:
        # Left unset, compose gives the development default: refused, by name.
        variables = {k: v for k, v in real.items() if k != secret}
        with pytest.raises(ValidationError, match=f"{secret}: the password is a development"):
            settings_from(DeploymentSettings, service_environment(ha_check, variables))


def test_every_variable_has_one_default() -> None:
    defaults: dict[str, set[str]] = {}
    for name, default in re.findall(r"\$\{(\w+):-([^}]*)\}", COMPOSE.read_text()):
        defaults.setdefault(name, set()).add(default)
    assert {name: values for name, values in defaults.items() if len(values) > 1} == {}


class _NoDuplicateKeys(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys; compose refuses the file. Refuse it here too."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        keys = [key.value for key, _ in node.value if key.tag != "tag:yaml.org,2002:merge"]
        repeated = sorted({key for key in keys if keys.count(key) > 1})
        assert not repeated, f"{repeated} given twice at {node.start_mark}"
        return super().construct_mapping(node, deep=deep)


def test_no_key_is_given_twice() -> None:
    yaml.load(COMPOSE.read_text(), _NoDuplicateKeys)  # noqa: S506 (a SafeLoader)


def test_interpolation_helper() -> None:
    assert interpolate("a${X:-dflt}b", {}) == "adfltb"
    assert interpolate("${X:-dflt}", {"X": "set"}) == "set"
    with pytest.raises(KeyError):
        interpolate("${X:?set X}", {})


def _compose_plugin() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return (
            subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=20, check=False).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(
    not _compose_plugin(), reason="the docker compose plugin is not installed (file checks above still ran)"
)
def test_docker_compose_config_accepts_the_file() -> None:
    done = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
