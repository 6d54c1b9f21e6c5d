"""docker-compose.yml and the Dockerfiles, checked without a Docker engine (there is none in CI).

`docker compose config -q` runs too when the compose plugin is installed; everything else reads the
files: health checks, start order, paths that must exist, and settings the services accept.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from stockzen_gateway.config import GatewaySettings
from stockzen_inventory.config import InventorySettings
from stockzen_sync_worker.config import WorkerSettings
from tests.support.compose import COMPOSE, interpolate, load_compose, service_environment
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


def test_our_services_start_after_the_migrations_and_healthy_backing_services(compose: dict[str, Any]) -> None:
    services = _services(compose)
    for name in OUR_SERVICES:
        depends = _depends_on(services[name])
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        for backing in BACKING:
            assert depends[backing]["condition"] == "service_healthy", f"{name} -> {backing}"
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


@pytest.mark.parametrize(
    ("service", "settings_class"),
    [
        ("gateway", GatewaySettings),
        ("inventory", InventorySettings),
        ("migrate", InventorySettings),
        ("sync-worker", WorkerSettings),
    ],
)
def test_the_services_accept_their_compose_settings(
    compose: dict[str, Any], service: str, settings_class: type[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    environment = service_environment(_services(compose)[service], variables={})
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    settings = settings_class()
    assert settings.environment.value == "development"
    if service == "gateway":
        assert "DATABASE_URL" not in environment, "the gateway never touches Postgres: no credentials for it"
    else:
        assert environment["DATABASE_URL"].startswith("postgresql://stockzen_app:"), "connect as the restricted role"
    host = {"gateway": "GATEWAY_HOST", "inventory": "INVENTORY_HOST", "sync-worker": "WORKER_METRICS_HOST"}.get(service)
    if host:
        assert environment[host] == "0.0.0.0", f"{service} must listen on every interface in its container"  # noqa: S104


@pytest.mark.parametrize("service", ["gateway", "inventory"])
def test_production_refuses_the_development_defaults(
    compose: dict[str, Any], service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    environment = service_environment(_services(compose)[service], variables={"STOCKZEN_ENV": "production"})
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    settings_class: type[Any] = GatewaySettings if service == "gateway" else InventorySettings
    with pytest.raises(ValidationError, match="development secret"):
        settings_class()


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
