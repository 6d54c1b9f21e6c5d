"""Rules every service's settings follow: a named environment, secrets and passwords that must be real
in production, and listening beyond loopback only in production.

Each rule returns its problems as sentences that name the variable and never its value: they are
printed when a service refuses to start, and a secret must not reach a terminal or a log.
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import NoReturn, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings

DEVELOPMENT_JWT_SECRET = "stockzen-development-only-jwt-secret-do-not-deploy"  # noqa: S105 (documented dev value)
"""The documented secret ``make run`` uses when ``JWT_SECRET`` is not set. Refused outside development."""

DEVELOPMENT_INTERNAL_SECRET = "stockzen-development-only-internal-secret-do-not-deploy"  # noqa: S105
"""The documented gateway-to-inventory secret for development. Refused outside development."""

DEVELOPMENT_PASSWORDS = frozenset(
    {
        # docker-compose.yml's documented development values.
        "stockzen-development-app-password",
        "stockzen-development-postgres-password",
        "stockzen-development-rabbitmq-password",
        # ... and its high-availability profile's.
        "stockzen-development-erlang-cookie",
        "stockzen-development-replication-password",
        "stockzen-development-patroni-api-password",
        # The defaults the images and tools ship with, and account names used as passwords.
        "guest",
        "admin",
        "postgres",
        "root",
        "stockzen",
        "stockzen_app",
        "rabbitmq",
        "grafana",
        "redis",
    }
)
"""Passwords production refuses whatever their length: the repository publishes them, or everyone knows them."""

_PLACEHOLDERS = frozenset(
    {"", "changeme", "change-me", "change_me", "secret", "password", "placeholder", "todo", "xxx"}
)
MIN_SECRET_LENGTH = 32
MIN_PASSWORD_LENGTH = 16
PUBLISH_ADDRESS = "STOCKZEN_PUBLISH_ADDRESS"
"""The variable naming the host address a container's ports are published on (compose sets it)."""

DEFAULT_BROKER_USERS = frozenset({"guest", ""})
"""RabbitMQ's built-in account (a URL without a user means it too): refused in production."""

_DEVELOPMENT_MARKERS = ("development", "test-only", "do-not-deploy")
_DEVELOPMENT_SECRETS = frozenset({DEVELOPMENT_JWT_SECRET, DEVELOPMENT_INTERNAL_SECRET})
_Settings = TypeVar("_Settings", bound=BaseSettings)


class Environment(StrEnum):
    """Where a service runs; only ``development`` and ``test`` accept the documented secrets."""

    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class PlaceholderSecretError(ValueError):
    """A secret is missing, a placeholder or a development value where a real one is required."""


class SettingsRefused(ValueError):
    """Settings a service must not start with; each problem names its variable, never its value."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(self.problems))


def refuse(problems: Iterable[str]) -> None:
    """Raise :class:`SettingsRefused` listing every problem at once, so one restart can fix them all."""
    found = [problem for problem in problems if problem]
    if found:
        raise SettingsRefused(found)


def secret_problems(name: str, value: SecretStr | None, environment: Environment) -> list[str]:
    """A signing secret: never a placeholder; in production neither a development value nor short."""
    raw = "" if value is None else value.get_secret_value()
    if raw.strip().lower() in _PLACEHOLDERS:
        return [f"{name} is a placeholder; set a real secret"]
    if environment is Environment.PRODUCTION:
        if _is_development_value(raw):
            return [f"{name} is the development secret; set a real one in production"]
        if len(raw) < MIN_SECRET_LENGTH:
            return [f"{name} must be at least {MIN_SECRET_LENGTH} characters"]
    return []


def require_real_secret(name: str, value: SecretStr, environment: Environment) -> SecretStr:
    """Refuse placeholder secrets everywhere, and development or short secrets outside development."""
    problems = secret_problems(name, value, environment)
    if problems:
        raise PlaceholderSecretError(problems[0])
    return value


def password_problems(name: str, password: str | None, environment: Environment) -> list[str]:
    """A password (Postgres, RabbitMQ, Grafana): in production, none missing, placeholder, published or short."""
    if environment is not Environment.PRODUCTION:
        return []
    raw = password or ""
    if raw.strip().lower() in _PLACEHOLDERS:
        return [f"{name}: the password is missing or a placeholder; production needs a real one"]
    if raw.lower() in DEVELOPMENT_PASSWORDS or _is_development_value(raw):
        return [f"{name}: the password is a development or default value; set a real one in production"]
    if len(raw) < MIN_PASSWORD_LENGTH:
        return [f"{name}: the password is shorter than {MIN_PASSWORD_LENGTH} characters; production needs a longer one"]
    return []


def url_credential_problems(
    name: str,
    url: str,
    environment: Environment,
    *,
    password_required: bool = True,
    refused_users: frozenset[str] = frozenset(),
) -> list[str]:
    """The credentials inside a connection URL (``scheme://user:password@host/...``, or libpq's
    ``?password=``): in production, a real password (when required or given) and no refused user."""
    if environment is not Environment.PRODUCTION:
        return []
    try:
        user, password = _url_credentials(url)
    except ValueError:
        return [f"{name} is not a valid URL"]
    problems = []
    if user.lower() in refused_users:
        problems.append(f"{name}: the user is a default account; production needs a user of its own")
    if password_required or password:
        problems.extend(password_problems(name, password, environment))
    return problems


def _url_credentials(url: str) -> tuple[str, str | None]:
    parts = urlsplit(url)
    if parts.password is not None:
        return unquote(parts.username or ""), unquote(parts.password)
    given = parse_qs(parts.query).get("password")
    return unquote(parts.username or ""), given[0] if given else None


def distinct_secrets_problems(names: tuple[str, str], values: tuple[SecretStr | None, SecretStr | None]) -> list[str]:
    """Two secrets with different jobs must differ: one leaked must not forge the other's tokens."""
    first, second = (value.get_secret_value() if value is not None else None for value in values)
    if first is not None and first == second:
        return [f"{names[0]} and {names[1]} must differ"]
    return []


def required_problems(environment: Environment, **values: str | None) -> list[str]:
    """Variables production cannot do without (``values`` by variable name)."""
    if environment is not Environment.PRODUCTION:
        return []
    return [f"{name} is required in production" for name, value in values.items() if not (value or "").strip()]


def _is_development_value(raw: str) -> bool:
    return raw in _DEVELOPMENT_SECRETS or any(marker in raw.lower() for marker in _DEVELOPMENT_MARKERS)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address, ``[v6]``, or ``localhost``) is reachable from this machine only."""
    bare = host.strip().strip("[]")
    if bare.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def listen_problems(name: str, host: str, environment: Environment, published_on: str | None) -> list[str]:
    """Outside production a service is reachable from this machine only.

    It listens on loopback; or, in a container, on the container's interfaces (other containers
    must reach it) when ``STOCKZEN_PUBLISH_ADDRESS`` says the host publishes its ports on loopback.
    Addresses are not secrets: the messages name them.
    """
    if environment is Environment.PRODUCTION:
        return []
    if published_on is not None and not is_loopback(published_on):
        return [
            f"{PUBLISH_ADDRESS}={published_on} publishes beyond loopback outside production; "
            "set STOCKZEN_ENV=production with real secrets, or publish on 127.0.0.1"
        ]
    if is_loopback(host) or published_on is not None:
        return []
    return [
        f"{name}={host} listens beyond loopback outside production; set STOCKZEN_ENV=production with real "
        f"secrets, or listen on 127.0.0.1 (in a container, set {PUBLISH_ADDRESS}=127.0.0.1)"
    ]


def load_settings(settings_class: type[_Settings], service: str) -> _Settings:
    """The service's settings from the environment, or exit 2 with every problem on standard error.

    What is printed names variables only: never an input value, which may be a secret.
    """
    try:
        return settings_class()
    except ValidationError as exc:
        _exit_refused(service, exc)


def _exit_refused(service: str, exc: ValidationError) -> NoReturn:
    lines: list[str] = []
    for error in exc.errors(include_input=False, include_url=False):
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, SettingsRefused):
            lines.extend(cause.problems)
        elif isinstance(cause, ValueError):
            lines.append(str(cause))
        else:
            where = ".".join(str(part) for part in error["loc"])
            lines.append(f"{where}: {error['msg']}" if where else error["msg"])
    print(f"{service}: refusing to start:", *(f"  - {line}" for line in lines), sep="\n", file=sys.stderr)
    raise SystemExit(2)
