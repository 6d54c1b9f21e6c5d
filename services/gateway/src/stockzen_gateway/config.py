"""Gateway settings: one class, read from the environment, refusing placeholder secrets."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from stockzen_contracts import MAX_OPERATIONS_CEILING
from stockzen_platform.amqp import QueueType, broker_urls
from stockzen_platform.logging import LogFormat
from stockzen_platform.serving import HttpServerSettings
from stockzen_platform.settings import (
    DEFAULT_BROKER_USERS,
    Environment,
    distinct_secrets_problems,
    listen_problems,
    refuse,
    required_problems,
    secret_problems,
    url_credential_problems,
)

from .domain.live_streams import StreamLimits
from .domain.rate_limits import RateLimit, RateLimits, with_tenant_ceiling


class GatewaySettings(HttpServerSettings, BaseSettings):
    """Environment variables of the gateway (see the README's configuration table); the HTTP server's
    own (read deadlines, connection cap) come from :class:`HttpServerSettings`."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True)

    environment: Environment = Field(default=Environment.DEVELOPMENT, alias="STOCKZEN_ENV")
    host: str = Field(default="127.0.0.1", alias="GATEWAY_HOST")
    published_on: str | None = Field(default=None, alias="STOCKZEN_PUBLISH_ADDRESS")
    port: int = Field(default=8000, alias="GATEWAY_PORT")
    log_level: str = Field(default="INFO", alias="LOG_LEVEL")
    log_format: LogFormat = Field(default=LogFormat.JSON, alias="LOG_FORMAT")

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
    # Short commands, and requests waiting for results: up to half of it, one each; past that they share one.
    redis_max_connections: int = Field(default=256, ge=8, alias="GATEWAY_REDIS_MAX_CONNECTIONS")
    # The rate limiter's own pool, so nothing else can take its connections; past them it refuses (503).
    redis_limiter_connections: int = Field(default=32, ge=1, alias="GATEWAY_REDIS_LIMITER_CONNECTIONS")
    amqp_url: str = Field(default="amqp://guest:guest@127.0.0.1:5672/", alias="AMQP_URL")
    sync_queue: str = Field(default="stockzen.sync", alias="SYNC_QUEUE")
    # Declared by the gateway as the worker declares them (the same arguments, or RabbitMQ refuses).
    sync_queue_type: QueueType = Field(default=QueueType.CLASSIC, alias="SYNC_QUEUE_TYPE")
    inventory_url: str = Field(default="http://127.0.0.1:8001", alias="INVENTORY_URL")
    inventory_timeout_seconds: float = Field(default=5.0, gt=0, le=60, alias="INVENTORY_TIMEOUT_SECONDS")

    # The envelope.
    max_body_bytes: int = Field(default=1_048_576, ge=1024, alias="SYNC_MAX_BODY_BYTES")
    max_operations: int = Field(default=500, ge=1, le=MAX_OPERATIONS_CEILING, alias="SYNC_MAX_OPERATIONS")

    # Waiting for the worker.
    result_timeout_seconds: float = Field(default=10.0, gt=0, le=60, alias="SYNC_RESULT_TIMEOUT_SECONDS")
    publish_timeout_seconds: float = Field(default=5.0, gt=0, le=60, alias="SYNC_PUBLISH_TIMEOUT_SECONDS")

    # Request keys (the Idempotency-Key header): how long a completed request's response is kept for replays.
    request_key_ttl_seconds: int = Field(default=86_400, ge=60, alias="IDEMPOTENCY_TTL_SECONDS")
    # What one tenant's kept answers may hold in Redis over that time; past it, answers are not kept
    # (a retry then runs again, and the worker's dedupe still applies nothing twice).
    request_key_tenant_budget_bytes: int = Field(
        default=32 * 1024 * 1024, ge=0, alias="IDEMPOTENCY_TENANT_BUDGET_BYTES"
    )

    # Rate limits per (tenant, user): a token bucket of `burst` refilled at `per_minute`.
    sync_rate_per_minute: int = Field(default=120, ge=1, alias="SYNC_RATE_LIMIT_PER_MINUTE")
    sync_rate_burst: int = Field(default=20, ge=1, alias="SYNC_RATE_LIMIT_BURST")
    read_rate_per_minute: int = Field(default=1200, ge=1, alias="READ_RATE_LIMIT_PER_MINUTE")
    read_rate_burst: int = Field(default=100, ge=1, alias="READ_RATE_LIMIT_BURST")
    # A ceiling per tenant beside them, shared by all its users; unset: 25 users' worth of the above.
    sync_tenant_rate_per_minute: int | None = Field(default=None, ge=1, alias="SYNC_TENANT_RATE_LIMIT_PER_MINUTE")
    sync_tenant_rate_burst: int | None = Field(default=None, ge=1, alias="SYNC_TENANT_RATE_LIMIT_BURST")
    read_tenant_rate_per_minute: int | None = Field(default=None, ge=1, alias="READ_TENANT_RATE_LIMIT_PER_MINUTE")
    read_tenant_rate_burst: int | None = Field(default=None, ge=1, alias="READ_TENANT_RATE_LIMIT_BURST")

    # Live updates and the browser app.
    stream_heartbeat_seconds: float = Field(default=15.0, gt=0, le=300, alias="STREAM_HEARTBEAT_SECONDS")
    # A stream outliving its token would keep announcing to a caller no longer allowed: end it, and
    # the client reconnects with its current token.
    stream_max_seconds: float = Field(default=600.0, gt=0, le=86_400, alias="STREAM_MAX_SECONDS")
    # Open streams at once, counted per gateway process (domain/live_streams.py says why). Keep the
    # process cap below HTTP_MAX_CONNECTIONS, so streams never take every connection.
    stream_max_per_user: int = Field(default=10, ge=1, alias="STREAM_MAX_PER_USER")
    stream_max_per_tenant: int = Field(default=200, ge=1, alias="STREAM_MAX_PER_TENANT")
    stream_max_per_process: int = Field(default=1000, ge=1, alias="STREAM_MAX_PER_PROCESS")
    web_app_dir: Path | None = Field(default=None, alias="WEB_APP_DIR")

    queue_monitor_interval_seconds: float = Field(default=15.0, gt=0, alias="QUEUE_MONITOR_INTERVAL_SECONDS")
    # /metrics has a listener of its own, on loopback unless told otherwise: never on the public port.
    metrics_host: str = Field(default="127.0.0.1", alias="GATEWAY_METRICS_HOST")
    metrics_port: int = Field(default=9190, ge=1, le=65535, alias="GATEWAY_METRICS_PORT")

    @field_validator("jwt_audience", "jwt_issuer", "jwt_public_key", "published_on", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # compose passes an unset variable on as "" (``${JWT_AUDIENCE:-}``): that means "not set".
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _safe_to_serve(self) -> Self:
        env = self.environment
        refuse(
            [
                *self._user_token_key_problems(),
                *secret_problems("INTERNAL_TOKEN_SECRET", self.internal_token_secret, env),
                *required_problems(env, JWT_AUDIENCE=self.jwt_audience, JWT_ISSUER=self.jwt_issuer),
                *(
                    problem
                    for url in self.amqp_urls
                    for problem in url_credential_problems("AMQP_URL", url, env, refused_users=DEFAULT_BROKER_USERS)
                ),
                *url_credential_problems("REDIS_URL", self.redis_url, env, password_required=False),
                *listen_problems("GATEWAY_HOST", self.host, env, self.published_on),
                *listen_problems("GATEWAY_METRICS_HOST", self.metrics_host, env, self.published_on),
            ]
        )
        return self

    def _user_token_key_problems(self) -> list[str]:
        if self.jwt_algorithm == "RS256":
            return [] if self.jwt_public_key else ["JWT_PUBLIC_KEY is required when JWT_ALGORITHM=RS256"]
        if self.jwt_secret is None:
            return ["JWT_SECRET is required when JWT_ALGORITHM=HS256"]
        # One leaked secret must not sign the other kind of token: a user token is not an internal one.
        return [
            *secret_problems("JWT_SECRET", self.jwt_secret, self.environment),
            *distinct_secrets_problems(
                ("JWT_SECRET", "INTERNAL_TOKEN_SECRET"), (self.jwt_secret, self.internal_token_secret)
            ),
        ]

    @property
    def amqp_urls(self) -> list[str]:
        """The broker's addresses (AMQP_URL may list a cluster's nodes, comma-separated)."""
        return broker_urls(self.amqp_url)

    @property
    def stream_limits(self) -> StreamLimits:
        """The live-stream caps these settings describe (the rule is in ``domain/live_streams.py``)."""
        return StreamLimits(self.stream_max_per_user, self.stream_max_per_tenant, self.stream_max_per_process)

    @property
    def rate_limits(self) -> RateLimits:
        """The per-caller buckets and tenant ceilings these settings describe (the rule is in
        ``domain/rate_limits.py``)."""
        sync = RateLimit("sync", self.sync_rate_per_minute, self.sync_rate_burst)
        read = RateLimit("read", self.read_rate_per_minute, self.read_rate_burst)
        return RateLimits(
            sync=with_tenant_ceiling(sync, self.sync_tenant_rate_per_minute, self.sync_tenant_rate_burst),
            read=with_tenant_ceiling(read, self.read_tenant_rate_per_minute, self.read_tenant_rate_burst),
        )

    @property
    def jwt_verification_key(self) -> str:
        """The key user tokens are checked with: the HS256 secret or the RS256 public key."""
        if self.jwt_algorithm == "HS256":
            assert self.jwt_secret is not None  # guaranteed by _keys_are_real
            return self.jwt_secret.get_secret_value()
        assert self.jwt_public_key is not None
        return self.jwt_public_key
