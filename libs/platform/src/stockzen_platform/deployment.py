"""``python -m stockzen_platform.deployment``: the compose stack's own settings, checked before it starts.

Postgres, RabbitMQ and Grafana are not our processes: they start with whatever password they are
given. In docker-compose.yml everything that holds data or a password waits for this one-shot check,
so in production the stack does not start with a development, default or placeholder password, nor
publish beyond loopback outside production. (Each of our services also checks its own settings.)

The high-availability topology (compose profile ``ha``) has secrets of its own: the RabbitMQ nodes'
shared Erlang cookie, Patroni's replication password and its REST API password. Its own one-shot
check (``ha-deployment-check``) is given them, and not Grafana's password (it runs no Grafana); the
single-node stack's check is given Grafana's and not them. The secrets only one stack uses are
checked when given, so neither stack needs values for services it does not run. (Compose gives
each check its stack's secrets always, with their development defaults when unset: refused here.)
"""

from __future__ import annotations

import sys
from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .settings import (
    DEFAULT_BROKER_USERS,
    PUBLISH_ADDRESS,
    Environment,
    listen_problems,
    load_settings,
    password_problems,
    refuse,
)


class DeploymentSettings(BaseSettings):
    """The passwords compose hands to the backing services and Grafana, and where it publishes ports."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True)

    environment: Environment = Field(default=Environment.DEVELOPMENT, alias="STOCKZEN_ENV")
    published_on: str = Field(default="127.0.0.1", alias="STOCKZEN_PUBLISH_ADDRESS")
    postgres_password: SecretStr | None = Field(default=None, alias="POSTGRES_PASSWORD")
    app_db_password: SecretStr | None = Field(default=None, alias="APP_DB_PASSWORD")
    rabbitmq_user: str = Field(default="stockzen", alias="RABBITMQ_USER")
    rabbitmq_password: SecretStr | None = Field(default=None, alias="RABBITMQ_PASSWORD")
    grafana_admin_password: SecretStr | None = Field(default=None, alias="GRAFANA_ADMIN_PASSWORD")
    # The ha profile's: None when not given (a stack without those services).
    rabbitmq_erlang_cookie: SecretStr | None = Field(default=None, alias="RABBITMQ_ERLANG_COOKIE")
    replication_password: SecretStr | None = Field(default=None, alias="POSTGRES_REPLICATION_PASSWORD")
    patroni_restapi_password: SecretStr | None = Field(default=None, alias="PATRONI_RESTAPI_PASSWORD")

    @model_validator(mode="after")
    def _safe_to_deploy(self) -> Self:
        env = self.environment
        broker_user = (
            ["RABBITMQ_USER: the user is a default account; production needs a user of its own"]
            if env is Environment.PRODUCTION and self.rabbitmq_user.strip().lower() in DEFAULT_BROKER_USERS
            else []
        )
        refuse(
            [
                *password_problems("POSTGRES_PASSWORD", _raw(self.postgres_password), env),
                *password_problems("APP_DB_PASSWORD", _raw(self.app_db_password), env),
                *broker_user,
                *password_problems("RABBITMQ_PASSWORD", _raw(self.rabbitmq_password), env),
                # Grafana is the single-node stack's only (the ha profile's check is not given it).
                *_given_password_problems("GRAFANA_ADMIN_PASSWORD", self.grafana_admin_password, env),
                # Whoever holds the cookie controls every RabbitMQ node (and its data) over Erlang
                # distribution; the replication user reads the whole database; the REST API's user
                # can fail over, restart and reconfigure Postgres.
                *_given_password_problems("RABBITMQ_ERLANG_COOKIE", self.rabbitmq_erlang_cookie, env),
                *_given_password_problems("POSTGRES_REPLICATION_PASSWORD", self.replication_password, env),
                *_given_password_problems("PATRONI_RESTAPI_PASSWORD", self.patroni_restapi_password, env),
                # Only the gateway is published on this address; the rest always on 127.0.0.1.
                *listen_problems(PUBLISH_ADDRESS, self.published_on, env, self.published_on),
            ]
        )
        return self


def _raw(secret: SecretStr | None) -> str | None:
    return None if secret is None else secret.get_secret_value()


def _given_password_problems(name: str, secret: SecretStr | None, environment: Environment) -> list[str]:
    """A secret of services only one of the stacks runs: checked when given, else not part of this stack."""
    return [] if secret is None else password_problems(name, _raw(secret), environment)


def main() -> int:
    """Exit 0 when the stack may start; else 2, naming each refused variable on standard error."""
    settings = load_settings(DeploymentSettings, "deployment check")
    print(f"deployment settings accepted (STOCKZEN_ENV={settings.environment.value})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
