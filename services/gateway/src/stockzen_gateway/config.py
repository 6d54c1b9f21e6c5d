"""Gateway settings: one class, read from the environment, refusing placeholder secrets."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from stockzen_contracts import MAX_OPERATIONS_CEILING
from stockzen_platform.settings import Environment, require_real_secret


class GatewaySettings(BaseSettings):
    """Environment variables of the gateway (see the README's configuration table)."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    environment: Environment = Field(default=Environment.DEVELOPMENT, alias="STOCKZEN_ENV")
    host: str = Field(default="127.0.0.1", alias="GATEWAY_HOST")
    port: int = Field(default=8000, alias="GATEWAY_PORT")
    log_level: str = Field(default="INFO", alias="LOG_LEVEL")

    # Who the callers are.
    jwt_algorithm: Literal["HS256", "RS256"] = Field(default="HS256", alias="JWT_ALGORITHM")
    jwt_secret: SecretStr | None = Field(default=None, alias="JWT_SECRET")
    jwt_public_key: str | None = Field(default=None, alias="JWT_PUBLIC_KEY")
    jwt_audience: str | None = Field(default=None, alias="JWT_AUDIENCE")
    jwt_issuer: str | None = Field(default=None, alias="JWT_ISSUER")
    internal_token_secret: SecretStr = Field(alias="INTERNAL_TOKEN_SECRET")

    # Where things are.
    redis_url: str = Field(default="redis://127.0.0.1:6379/0", alias="REDIS_URL")
    redis_key_prefix: str = Field(default="sz:", alias="REDIS_KEY_PREFIX")
    redis_max_connections: int = Field(default=256, ge=8, alias="GATEWAY_REDIS_MAX_CONNECTIONS")
    amqp_url: str = Field(default="amqp://guest:guest@127.0.0.1:5672/", alias="AMQP_URL")
    sync_queue: str = Field(default="stockzen.sync", alias="SYNC_QUEUE")
    inventory_url: str = Field(default="http://127.0.0.1:8001", alias="INVENTORY_URL")
    inventory_timeout_seconds: float = Field(default=5.0, gt=0, le=60, alias="INVENTORY_TIMEOUT_SECONDS")

    # The envelope.
    max_body_bytes: int = Field(default=1_048_576, ge=1024, alias="SYNC_MAX_BODY_BYTES")
    max_operations: int = Field(default=500, ge=1, le=MAX_OPERATIONS_CEILING, alias="SYNC_MAX_OPERATIONS")

    # Waiting for the worker.
    result_timeout_seconds: float = Field(default=10.0, gt=0, le=60, alias="SYNC_RESULT_TIMEOUT_SECONDS")
    publish_timeout_seconds: float = Field(default=5.0, gt=0, le=60, alias="SYNC_PUBLISH_TIMEOUT_SECONDS")

    # Idempotency-Key: how long a completed request's response is kept for replays.
    idempotency_ttl_seconds: int = Field(default=86_400, ge=60, alias="IDEMPOTENCY_TTL_SECONDS")

    # Rate limits per (tenant, user): a token bucket of `burst` refilled at `per_minute`.
    sync_rate_per_minute: int = Field(default=120, ge=1, alias="SYNC_RATE_LIMIT_PER_MINUTE")
    sync_rate_burst: int = Field(default=20, ge=1, alias="SYNC_RATE_LIMIT_BURST")
    read_rate_per_minute: int = Field(default=1200, ge=1, alias="READ_RATE_LIMIT_PER_MINUTE")
    read_rate_burst: int = Field(default=100, ge=1, alias="READ_RATE_LIMIT_BURST")

    # Live updates and the browser app.
    stream_heartbeat_seconds: float = Field(default=15.0, gt=0, le=300, alias="STREAM_HEARTBEAT_SECONDS")
    # A stream outliving its token would keep announcing to a caller no longer allowed: end it, and
    # the client reconnects with its current token.
    stream_max_seconds: float = Field(default=600.0, gt=0, le=86_400, alias="STREAM_MAX_SECONDS")
    web_app_dir: Path | None = Field(default=None, alias="WEB_APP_DIR")

    queue_monitor_interval_seconds: float = Field(default=15.0, gt=0, alias="QUEUE_MONITOR_INTERVAL_SECONDS")

    @model_validator(mode="after")
    def _keys_are_real(self) -> Self:
        if self.jwt_algorithm == "HS256":
            if self.jwt_secret is None:
                raise ValueError("JWT_SECRET is required when JWT_ALGORITHM=HS256")
            require_real_secret("JWT_SECRET", self.jwt_secret, self.environment)
        elif not self.jwt_public_key:
            raise ValueError("JWT_PUBLIC_KEY is required when JWT_ALGORITHM=RS256")
        require_real_secret("INTERNAL_TOKEN_SECRET", self.internal_token_secret, self.environment)
        return self

    @property
    def jwt_verification_key(self) -> str:
        """The key user tokens are checked with: the HS256 secret or the RS256 public key."""
        if self.jwt_algorithm == "HS256":
            assert self.jwt_secret is not None  # guaranteed by _keys_are_real
            return self.jwt_secret.get_secret_value()
        assert self.jwt_public_key is not None
        return self.jwt_public_key
