"""docker-compose.yml read as compose would: variables resolved, published ports, each service's
environment, and settings built from exactly that environment (never this process's)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import yaml
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from tests.support.prometheus import REPO

COMPOSE = REPO / "docker-compose.yml"
_VARIABLE = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")
_Settings = TypeVar("_Settings", bound=BaseSettings)


def production_variables() -> dict[str, str]:
    """What an operator sets to run the compose stack for real: fresh, strong values every call."""
    return {
        "STOCKZEN_ENV": "production",
        "STOCKZEN_PUBLISH_ADDRESS": "0.0.0.0",  # noqa: S104 (behind a TLS proxy on this host's network)
        "JWT_SECRET": secrets.token_urlsafe(48),
        "INTERNAL_TOKEN_SECRET": secrets.token_urlsafe(48),
        "JWT_AUDIENCE": "stockzen-api",
        "JWT_ISSUER": "https://id.example.test/",
        "POSTGRES_PASSWORD": secrets.token_urlsafe(24),
        "APP_DB_PASSWORD": secrets.token_urlsafe(24),
        "RABBITMQ_USER": "stockzen-sync",
        "RABBITMQ_PASSWORD": secrets.token_urlsafe(24),
        "GRAFANA_ADMIN_PASSWORD": secrets.token_urlsafe(24),
        # The ha profile's (docker-compose.yml): the RabbitMQ nodes' cookie, Patroni's passwords.
        "RABBITMQ_ERLANG_COOKIE": secrets.token_urlsafe(32),
        "POSTGRES_REPLICATION_PASSWORD": secrets.token_urlsafe(24),
        "PATRONI_RESTAPI_PASSWORD": secrets.token_urlsafe(24),
    }


def load_compose() -> dict[str, Any]:
    """The parsed compose file."""
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}``, for the tests' purposes."""

    def substitute(match: re.Match[str]) -> str:
        name, operator, argument = match.group(1), match.group(2), match.group(3)
        current = env.get(name)
        if operator in (":-", "-") and not current:
            return argument
        if operator in (":?", "?") and not current:
            raise KeyError(f"{name}: {argument}")
        return current or ""

    return _VARIABLE.sub(substitute, value)


def compose_default(variable: str) -> str | None:
    """The value compose fills in for ``variable`` when it is unset (``${VARIABLE:-default}``)."""
    match = re.search(rf"\$\{{{variable}:-([^}}]*)\}}", COMPOSE.read_text())
    return match.group(1) if match else None


def service_environment(service: Mapping[str, Any], variables: Mapping[str, str]) -> dict[str, str]:
    """A service's environment as its container sees it, for these compose variables."""
    return {key: interpolate(str(value), variables) for key, value in (service.get("environment") or {}).items()}


@dataclass(frozen=True)
class Published:
    """One port a service publishes on the host."""

    service: str
    host_ip: str  # "" means every interface
    host_port: str
    container_port: str


def published_ports(compose: Mapping[str, Any], variables: Mapping[str, str]) -> list[Published]:
    """Every port the stack publishes on the host, short and long syntax, with variables resolved."""
    found = []
    for name, service in compose["services"].items():
        for entry in service.get("ports") or []:
            if isinstance(entry, dict):
                resolved = {key: interpolate(str(value), variables) for key, value in entry.items()}
                found.append(
                    Published(name, resolved.get("host_ip", ""), resolved.get("published", ""), resolved["target"])
                )
                continue
            parts = interpolate(str(entry), variables).rsplit(":", 2)
            host_ip, host_port, target = ["", "", *parts][-3:] if len(parts) < 3 else parts
            found.append(Published(name, host_ip.strip("[]"), host_port, target))
    return found


def settings_from(settings_class: type[_Settings], env: Mapping[str, str]) -> _Settings:
    """``settings_class`` read from ``env`` alone, as the service would read its container's environment."""

    class FromThisEnvironmentOnly(settings_class):  # type: ignore[valid-type,misc]
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings,)

    settings: _Settings = FromThisEnvironmentOnly(**env)
    return settings
