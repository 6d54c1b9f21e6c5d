"""Inventory settings: one class, read from the environment, refusing placeholder secrets."""

from __future__ import annotations

from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from stockzen_platform.logging import LogFormat
from stockzen_platform.settings import Environment, require_real_secret


class InventorySettings(BaseSettings):
    """Environment variables of the inventory service (see the README's configuration table).

    ``DATABASE_ADMIN_URL`` is read only by ``stockzen-inventory migrate``; serving never uses it.
    """

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    environment: Environment = Field(default=Environment.DEVELOPMENT, alias="STOCKZEN_ENV")
    database_url: str = Field(default="postgresql://stockzen_app@127.0.0.1:5432/stockzen", alias="DATABASE_URL")
    database_admin_url: str = Field(default="postgresql://postgres@127.0.0.1:5432/postgres", alias="DATABASE_ADMIN_URL")
    internal_token_secret: SecretStr = Field(alias="INTERNAL_TOKEN_SECRET")
    host: str = Field(default="127.0.0.1", alias="INVENTORY_HOST")
    port: int = Field(default=8001, alias="INVENTORY_PORT")
    database_pool_size: int = Field(default=10, ge=1, le=200, alias="INVENTORY_DB_POOL_SIZE")
    log_level: str = Field(default="INFO", alias="LOG_LEVEL")
    log_format: LogFormat = Field(default=LogFormat.JSON, alias="LOG_FORMAT")

    @model_validator(mode="after")
    def _secrets_are_real(self) -> Self:
        require_real_secret("INTERNAL_TOKEN_SECRET", self.internal_token_secret, self.environment)
        return self
