"""Inventory settings: one class, read from the environment, refusing placeholder secrets."""

from __future__ import annotations

from typing import Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from stockzen_platform.logging import LogFormat
from stockzen_platform.serving import HttpServerSettings
from stockzen_platform.settings import (
    Environment,
    listen_problems,
    refuse,
    secret_problems,
    url_credential_problems,
)


class InventorySettings(HttpServerSettings, BaseSettings):
    """Environment variables of the inventory service (see the README's configuration table).

    ``DATABASE_ADMIN_URL`` is read only by ``stockzen-inventory migrate``; serving never uses it. The
    HTTP server's own settings (read deadlines, connection cap) come from :class:`HttpServerSettings`.
    """

    model_config = SettingsConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True)

    environment: Environment = Field(default=Environment.DEVELOPMENT, alias="STOCKZEN_ENV")
    database_url: str = Field(default="postgresql://stockzen_app@127.0.0.1:5432/stockzen", alias="DATABASE_URL")
    database_admin_url: str = Field(default="postgresql://postgres@127.0.0.1:5432/postgres", alias="DATABASE_ADMIN_URL")
    internal_token_secret: SecretStr = Field(alias="INTERNAL_TOKEN_SECRET")
    host: str = Field(default="127.0.0.1", alias="INVENTORY_HOST")
    published_on: str | None = Field(default=None, alias="STOCKZEN_PUBLISH_ADDRESS")
    port: int = Field(default=8001, alias="INVENTORY_PORT")
    database_pool_size: int = Field(default=10, ge=1, le=200, alias="INVENTORY_DB_POOL_SIZE")
    # Each read's statement_timeout and longest wait for a connection; below the gateway's
    # INVENTORY_TIMEOUT_SECONDS, so the client hears why rather than just that inventory did not answer.
    read_time_limit_ms: int = Field(default=3000, ge=1, le=600_000, alias="INVENTORY_READ_STATEMENT_TIMEOUT_MS")
    # Client-side, on every statement (asyncpg's command_timeout, create_pool): a Postgres that stops
    # answering (a hung primary) fails a request with 503 after this long, and its connection is dropped,
    # rather than holding it forever. Above the read limit, which Postgres itself enforces first.
    database_statement_seconds: float = Field(default=30.0, gt=0, le=600, alias="INVENTORY_DB_COMMAND_TIMEOUT_SECONDS")
    log_level: str = Field(default="INFO", alias="LOG_LEVEL")
    log_format: LogFormat = Field(default=LogFormat.JSON, alias="LOG_FORMAT")

    @field_validator("published_on", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _safe_to_serve(self) -> Self:
        env = self.environment
        refuse(
            [
                *secret_problems("INTERNAL_TOKEN_SECRET", self.internal_token_secret, env),
                *url_credential_problems("DATABASE_URL", self.database_url, env),
                # Serving never reads it, so it may be absent; a given one is checked all the same.
                *url_credential_problems("DATABASE_ADMIN_URL", self.database_admin_url, env, password_required=False),
                *listen_problems("INVENTORY_HOST", self.host, env, self.published_on),
            ]
        )
        return self
