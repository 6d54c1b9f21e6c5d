"""Rules every service's settings follow: a named environment, and secrets that must be real."""

from __future__ import annotations

from enum import StrEnum

from pydantic import SecretStr

DEVELOPMENT_JWT_SECRET = "stockzen-development-only-jwt-secret-do-not-deploy"  # noqa: S105 (documented dev value)
"""The documented secret ``make run`` uses when ``JWT_SECRET`` is not set. Refused outside development."""

DEVELOPMENT_INTERNAL_SECRET = "stockzen-development-only-internal-secret-do-not-deploy"  # noqa: S105
"""The documented gateway-to-inventory secret for development. Refused outside development."""

_PLACEHOLDERS = frozenset(
    {"", "changeme", "change-me", "change_me", "secret", "password", "placeholder", "todo", "xxx"}
)
MIN_SECRET_LENGTH = 32


class Environment(StrEnum):
    """Where a service runs; only ``development`` and ``test`` accept the documented secrets."""

    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class PlaceholderSecretError(ValueError):
    """A secret is missing, a placeholder or a development value where a real one is required."""


def require_real_secret(name: str, value: SecretStr, environment: Environment) -> SecretStr:
    """Refuse placeholder secrets everywhere, and development or short secrets outside development."""
    raw = value.get_secret_value()
    if raw.strip().lower() in _PLACEHOLDERS:
        raise PlaceholderSecretError(f"{name} is a placeholder; set a real secret")
    if environment is Environment.PRODUCTION:
        if raw in (DEVELOPMENT_JWT_SECRET, DEVELOPMENT_INTERNAL_SECRET) or "development" in raw:
            raise PlaceholderSecretError(f"{name} is the development secret; set a real one in production")
        if len(raw) < MIN_SECRET_LENGTH:
            raise PlaceholderSecretError(f"{name} must be at least {MIN_SECRET_LENGTH} characters")
    return value
