"""The settings rules of ``stockzen_platform.settings``, and each service's settings built on them:
what production refuses, what development keeps, and that no refusal shows a value."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from stockzen_gateway.config import GatewaySettings
from stockzen_inventory.config import InventorySettings
from stockzen_platform.deployment import DeploymentSettings
from stockzen_platform.settings import (
    DEFAULT_BROKER_USERS,
    DEVELOPMENT_INTERNAL_SECRET,
    DEVELOPMENT_JWT_SECRET,
    DEVELOPMENT_PASSWORDS,
    Environment,
    SettingsRefused,
    distinct_secrets_problems,
    is_loopback,
    listen_problems,
    load_settings,
    password_problems,
    refuse,
    required_problems,
    secret_problems,
    url_credential_problems,
)
from stockzen_sync_worker.config import WorkerSettings
from tests.support.compose import settings_from

PROD, DEV, TEST = Environment.PRODUCTION, Environment.DEVELOPMENT, Environment.TEST
STRONG = "a-real-secret-that-is-long-enough-0123456789"


def _password() -> str:
    return secrets.token_urlsafe(24)


@pytest.mark.parametrize("value", ["", "  ", "changeme", "CHANGEME", "secret", "placeholder", "todo"])
@pytest.mark.parametrize("environment", list(Environment))
def test_placeholder_secrets_are_refused_in_every_environment(value: str, environment: Environment) -> None:
    assert secret_problems("JWT_SECRET", SecretStr(value), environment) == [
        "JWT_SECRET is a placeholder; set a real secret"
    ]
    assert secret_problems("JWT_SECRET", None, environment) != []


@pytest.mark.parametrize(
    "value",
    [
        DEVELOPMENT_JWT_SECRET,
        DEVELOPMENT_INTERNAL_SECRET,
        "our-DEVELOPMENT-key-0123456789abcdef0123456789",
        "stockzen-test-only-jwt-secret-0123456789abcdef",
    ],
)
def test_production_refuses_development_and_test_secrets_which_development_keeps(value: str) -> None:
    assert secret_problems("JWT_SECRET", SecretStr(value), PROD) == [
        "JWT_SECRET is the development secret; set a real one in production"
    ]
    assert secret_problems("JWT_SECRET", SecretStr(value), DEV) == []
    assert secret_problems("JWT_SECRET", SecretStr(value), TEST) == []


def test_production_wants_secrets_of_32_characters() -> None:
    assert secret_problems("S", SecretStr("x" * 31), PROD) == ["S must be at least 32 characters"]
    assert secret_problems("S", SecretStr("x" * 32), PROD) == []


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        (None, "missing or a placeholder"),
        ("", "missing or a placeholder"),
        ("changeme", "missing or a placeholder"),
        *((known, "development or default") for known in sorted(DEVELOPMENT_PASSWORDS)),
        ("Admin", "development or default"),
        ("my-development-password-long", "development or default"),
        (DEVELOPMENT_JWT_SECRET, "development or default"),
        ("fifteen-chars!!", "shorter than 16 characters"),
    ],
)
def test_production_refuses_missing_published_default_and_short_passwords(password: str | None, problem: str) -> None:
    (found,) = password_problems("GRAFANA_ADMIN_PASSWORD", password, PROD)
    assert found.startswith("GRAFANA_ADMIN_PASSWORD: ")
    assert problem in found
    assert password_problems("GRAFANA_ADMIN_PASSWORD", password, DEV) == []
    assert password_problems("GRAFANA_ADMIN_PASSWORD", _password(), PROD) == []


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("postgresql://stockzen_app@db:5432/stockzen", "missing"),
        ("postgresql://stockzen_app:@db:5432/stockzen", "missing"),
        ("postgresql://stockzen_app:stockzen-development-app-password@db:5432/stockzen", "development"),
        # Percent-encoded, or in libpq's query form: the same password.
        ("postgresql://stockzen_app:stockzen%2Ddevelopment%2Dapp%2Dpassword@db/stockzen", "development"),
        ("postgresql://stockzen_app@db/stockzen?password=stockzen-development-app-password", "development"),
        ("postgresql://stockzen_app:short@db1:5432,db2:5432/stockzen", "shorter"),
    ],
)
def test_production_reads_the_password_out_of_a_database_url(url: str, problem: str) -> None:
    (found,) = url_credential_problems("DATABASE_URL", url, PROD)
    assert found.startswith("DATABASE_URL: ")
    assert problem in found
    assert url_credential_problems("DATABASE_URL", url, DEV) == []


def test_a_real_password_in_a_url_is_accepted_and_never_echoed() -> None:
    password = _password()
    assert url_credential_problems("DATABASE_URL", f"postgresql://stockzen_app:{password}@db/stockzen", PROD) == []
    for problem in url_credential_problems(
        "AMQP_URL", f"amqp://guest:{password}@mq/", PROD, refused_users=DEFAULT_BROKER_USERS
    ):
        assert password not in problem


@pytest.mark.parametrize(
    "url",
    ["amqp://guest:guest@mq:5672/", "amqp://GUEST:a-long-real-password-here@mq/", "amqp://mq:5672/"],
)
def test_production_refuses_the_brokers_default_account(url: str) -> None:
    problems = url_credential_problems("AMQP_URL", url, PROD, refused_users=DEFAULT_BROKER_USERS)
    assert "AMQP_URL: the user is a default account; production needs a user of its own" in problems


def test_an_optional_url_password_is_checked_only_when_given() -> None:
    assert url_credential_problems("REDIS_URL", "redis://redis:6379/0", PROD, password_required=False) == []
    (found,) = url_credential_problems("REDIS_URL", "redis://:redis@redis:6379/0", PROD, password_required=False)
    assert "development or default" in found


def test_equal_secrets_are_refused_and_named_not_shown() -> None:
    same = SecretStr(STRONG)
    assert distinct_secrets_problems(("JWT_SECRET", "INTERNAL_TOKEN_SECRET"), (same, SecretStr(STRONG))) == [
        "JWT_SECRET and INTERNAL_TOKEN_SECRET must differ"
    ]
    assert distinct_secrets_problems(("A", "B"), (same, SecretStr(STRONG + "x"))) == []
    assert distinct_secrets_problems(("A", "B"), (None, None)) == []


def test_required_in_production_only() -> None:
    assert required_problems(PROD, JWT_AUDIENCE=None, JWT_ISSUER=" ") == [
        "JWT_AUDIENCE is required in production",
        "JWT_ISSUER is required in production",
    ]
    assert required_problems(PROD, JWT_AUDIENCE="api", JWT_ISSUER="https://id") == []
    assert required_problems(DEV, JWT_AUDIENCE=None) == []


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.2.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),  # noqa: S104
        ("::", False),
        ("10.0.0.5", False),
        ("", False),
        ("gateway.example.com", False),
    ],
)
def test_what_counts_as_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_outside_production_services_listen_on_loopback_or_behind_a_loopback_publish() -> None:
    anywhere = "0.0.0.0"  # noqa: S104
    for environment in (DEV, TEST):
        assert listen_problems("GATEWAY_HOST", "127.0.0.1", environment, None) == []
        (found,) = listen_problems("GATEWAY_HOST", anywhere, environment, None)
        assert found.startswith("GATEWAY_HOST=0.0.0.0 listens beyond loopback outside production")
        # In a container: every interface of the container, its ports published on the host's loopback.
        assert listen_problems("GATEWAY_HOST", anywhere, environment, "127.0.0.1") == []
        (found,) = listen_problems("GATEWAY_HOST", anywhere, environment, anywhere)
        assert found.startswith("STOCKZEN_PUBLISH_ADDRESS=0.0.0.0 publishes beyond loopback outside production")
    assert listen_problems("GATEWAY_HOST", anywhere, PROD, anywhere) == []


def test_refuse_lists_every_problem() -> None:
    refuse([])
    with pytest.raises(SettingsRefused) as caught:
        refuse(["A is wrong", "B is wrong"])
    assert caught.value.problems == ("A is wrong", "B is wrong")


def _production_gateway(**overrides: str) -> dict[str, str]:
    return {
        "STOCKZEN_ENV": "production",
        "JWT_SECRET": secrets.token_urlsafe(40),
        "INTERNAL_TOKEN_SECRET": secrets.token_urlsafe(40),
        "JWT_AUDIENCE": "stockzen-api",
        "JWT_ISSUER": "https://id.example.test/",
        "AMQP_URL": f"amqp://stockzen-sync:{_password()}@mq:5672/",
        **overrides,
    }


def test_the_gateway_in_production() -> None:
    env = _production_gateway()
    assert settings_from(GatewaySettings, env).jwt_audience == "stockzen-api"
    with pytest.raises(ValidationError) as caught:
        settings_from(GatewaySettings, {**env, "INTERNAL_TOKEN_SECRET": env["JWT_SECRET"], "JWT_AUDIENCE": ""})
    text = str(caught.value)
    assert "JWT_SECRET and INTERNAL_TOKEN_SECRET must differ" in text
    assert "JWT_AUDIENCE is required in production" in text
    assert env["JWT_SECRET"] not in text, "a refusal must never show a secret"
    # RS256: no shared secret to compare, a public key instead.
    rs256 = {**env, "JWT_ALGORITHM": "RS256", "JWT_PUBLIC_KEY": "-----BEGIN PUBLIC KEY-----..."}
    assert settings_from(GatewaySettings, rs256).jwt_algorithm == "RS256"


def test_compose_passes_an_unset_audience_as_empty_which_development_takes_as_unset() -> None:
    dev = {"JWT_SECRET": DEVELOPMENT_JWT_SECRET, "INTERNAL_TOKEN_SECRET": DEVELOPMENT_INTERNAL_SECRET}
    settings = settings_from(GatewaySettings, {**dev, "JWT_AUDIENCE": "", "JWT_ISSUER": "", "JWT_PUBLIC_KEY": ""})
    assert (settings.jwt_audience, settings.jwt_issuer, settings.jwt_public_key) == (None, None, None)


def test_inventory_and_worker_in_production() -> None:
    database_url = f"postgresql://stockzen_app:{_password()}@db:5432/stockzen"
    inventory = {"STOCKZEN_ENV": "production", "INTERNAL_TOKEN_SECRET": STRONG, "DATABASE_URL": database_url}
    settings_from(InventorySettings, inventory)
    admin_url = "postgresql://postgres:stockzen-development-postgres-password@db/postgres"
    with pytest.raises(ValidationError, match="DATABASE_ADMIN_URL: the password is a development"):
        settings_from(InventorySettings, {**inventory, "DATABASE_ADMIN_URL": admin_url})
    worker = {"STOCKZEN_ENV": "production", "DATABASE_URL": database_url, "AMQP_URL": f"amqp://sync:{_password()}@mq/"}
    settings_from(WorkerSettings, worker)
    with pytest.raises(ValidationError, match=r"WORKER_METRICS_HOST=0\.0\.0\.0 listens beyond loopback"):
        settings_from(WorkerSettings, {"WORKER_METRICS_HOST": "0.0.0.0"})  # noqa: S104


@pytest.mark.parametrize(
    ("settings_class", "name"),
    [
        (InventorySettings, "INVENTORY_DB_COMMAND_TIMEOUT_SECONDS"),
        (WorkerSettings, "WORKER_DB_COMMAND_TIMEOUT_SECONDS"),
    ],
)
def test_the_client_side_statement_limit_is_30_seconds_unless_set_and_never_zero(
    settings_class: type[InventorySettings | WorkerSettings], name: str
) -> None:
    env = {"INTERNAL_TOKEN_SECRET": STRONG}  # inventory's one required setting; the worker ignores it
    assert settings_from(settings_class, env).database_statement_seconds == 30
    assert settings_from(settings_class, {**env, name: "2.5"}).database_statement_seconds == 2.5
    for refused in ("0", "-1", "601"):
        with pytest.raises(ValidationError, match=name):
            settings_from(settings_class, {**env, name: refused})


def test_the_deployment_check() -> None:
    real = {
        "STOCKZEN_ENV": "production",
        "STOCKZEN_PUBLISH_ADDRESS": "0.0.0.0",  # noqa: S104
        "POSTGRES_PASSWORD": _password(),
        "APP_DB_PASSWORD": _password(),
        "RABBITMQ_USER": "stockzen-sync",
        "RABBITMQ_PASSWORD": _password(),
        "GRAFANA_ADMIN_PASSWORD": _password(),
    }
    settings_from(DeploymentSettings, real)
    settings_from(DeploymentSettings, {})  # development with nothing set
    for variable, bad in [("GRAFANA_ADMIN_PASSWORD", "admin"), ("RABBITMQ_USER", "guest"), ("POSTGRES_PASSWORD", "")]:
        with pytest.raises(ValidationError, match=f"{variable}: "):
            settings_from(DeploymentSettings, {**real, variable: bad})
    with pytest.raises(ValidationError, match=r"STOCKZEN_PUBLISH_ADDRESS=0\.0\.0\.0 publishes beyond loopback"):
        settings_from(DeploymentSettings, {**real, "STOCKZEN_ENV": "development"})


def test_the_deployment_check_of_the_ha_profile_checks_its_secrets_when_given() -> None:
    real = {
        "STOCKZEN_ENV": "production",
        "POSTGRES_PASSWORD": _password(),
        "APP_DB_PASSWORD": _password(),
        "RABBITMQ_USER": "stockzen-sync",
        "RABBITMQ_PASSWORD": _password(),
        "GRAFANA_ADMIN_PASSWORD": _password(),
    }
    ha = {
        "RABBITMQ_ERLANG_COOKIE": _password(),
        "POSTGRES_REPLICATION_PASSWORD": _password(),
        "PATRONI_RESTAPI_PASSWORD": _password(),
    }
    settings_from(DeploymentSettings, real)  # the single-node stack's check: not given, not needed
    settings_from(DeploymentSettings, {**real, **ha})
    without_grafana = {k: v for k, v in real.items() if k != "GRAFANA_ADMIN_PASSWORD"}
    settings_from(DeploymentSettings, {**without_grafana, **ha})  # the ha profile's: it runs no Grafana
    for variable in ha:
        for bad in ("", "changeme", "short", f"stockzen-development-{variable.lower()}"):
            with pytest.raises(ValidationError, match=f"{variable}: the password"):
                settings_from(DeploymentSettings, {**real, **ha, variable: bad})
    development = {variable: f"stockzen-development-{variable.lower()}" for variable in ha}
    settings_from(DeploymentSettings, development)  # development takes its documented values


def test_load_settings_exits_naming_variables_only(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = DEVELOPMENT_JWT_SECRET
    for name, value in {
        "STOCKZEN_ENV": "production",
        "JWT_SECRET": secret,
        "INTERNAL_TOKEN_SECRET": STRONG,
        "GATEWAY_PORT": "not-a-port",
    }.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exited:
        load_settings(GatewaySettings, "stockzen-gateway")
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("stockzen-gateway: refusing to start:\n")
    assert "  - GATEWAY_PORT: Input should be a valid integer" in err
    assert secret not in err
    assert STRONG not in err
    assert "not-a-port" not in err


def test_settings_errors_hide_their_input_everywhere() -> None:
    env: dict[str, Any] = {"STOCKZEN_ENV": "production", "JWT_SECRET": STRONG, "INTERNAL_TOKEN_SECRET": STRONG}
    with pytest.raises(ValidationError) as caught:
        settings_from(GatewaySettings, env)
    assert STRONG not in str(caught.value)
