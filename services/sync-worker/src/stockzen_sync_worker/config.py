"""Sync worker settings: one class, read from the environment."""

from __future__ import annotations

from datetime import timedelta
from typing import Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from stockzen_platform.amqp import QueueType, broker_urls
from stockzen_platform.settings import (
    DEFAULT_BROKER_USERS,
    Environment,
    listen_problems,
    refuse,
    url_credential_problems,
)


class WorkerSettings(BaseSettings):
    """Environment variables of the sync worker (see the README's configuration table)."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True)

    environment: Environment = Field(default=Environment.DEVELOPMENT, alias="STOCKZEN_ENV")
    log_level: str = Field(default="INFO", alias="LOG_LEVEL")
    database_url: str = Field(default="postgresql://stockzen_app@127.0.0.1:5432/stockzen", alias="DATABASE_URL")
    database_pool_size: int = Field(default=10, ge=1, le=100, alias="WORKER_DB_POOL_SIZE")
    # Client-side, on every statement (asyncpg's command_timeout, create_pool): one left unanswered this
    # long fails the batch with TimeoutError (retried, never acknowledged) and its connection is dropped
    # if Postgres does not answer the cancel either: a hung primary holds a batch this long, not forever.
    database_statement_seconds: float = Field(default=30.0, gt=0, le=600, alias="WORKER_DB_COMMAND_TIMEOUT_SECONDS")
    redis_url: str = Field(default="redis://127.0.0.1:6379/0", alias="REDIS_URL")
    redis_key_prefix: str = Field(default="sz:", alias="REDIS_KEY_PREFIX")
    amqp_url: str = Field(default="amqp://guest:guest@127.0.0.1:5672/", alias="AMQP_URL")
    sync_queue: str = Field(default="stockzen.sync", pattern=r"^[a-zA-Z_][a-zA-Z0-9._-]*$", alias="SYNC_QUEUE")
    # classic: one node's queues (make run); quorum: replicated on a RabbitMQ cluster (stockzen_platform.amqp).
    sync_queue_type: QueueType = Field(default=QueueType.CLASSIC, alias="SYNC_QUEUE_TYPE")

    processes: int = Field(default=1, ge=1, le=64, alias="WORKER_PROCESSES")
    threads: int = Field(default=8, ge=1, le=256, alias="WORKER_THREADS")
    metrics_host: str = Field(default="127.0.0.1", alias="WORKER_METRICS_HOST")
    published_on: str | None = Field(default=None, alias="STOCKZEN_PUBLISH_ADDRESS")
    metrics_port: int = Field(default=9191, alias="WORKER_METRICS_PORT")
    metrics_dir: str = Field(default="/tmp/stockzen-worker-metrics", alias="WORKER_METRICS_DIR")  # noqa: S108
    shutdown_grace_seconds: float = Field(default=4.0, gt=0, alias="WORKER_SHUTDOWN_GRACE_SECONDS")

    # A batch that failed for a transient reason (Postgres or Redis away) is retried without end,
    # its backoff capped at SYNC_MAX_BACKOFF_MS; one that keeps failing otherwise (a bug) is retried
    # SYNC_MAX_RETRIES times, then dead-lettered to <queue>.XQ. Retries wait in <queue>.DQ, so they
    # never block the messages behind.
    max_retries: int = Field(default=8, ge=0, le=50, alias="SYNC_MAX_RETRIES")
    min_backoff_ms: int = Field(default=500, ge=10, alias="SYNC_MIN_BACKOFF_MS")
    max_backoff_ms: int = Field(default=60_000, ge=10, alias="SYNC_MAX_BACKOFF_MS")
    time_limit_ms: int = Field(default=60_000, ge=1000, alias="SYNC_TIME_LIMIT_MS")

    # Group commit: the messages of one tenant in flight in a worker process are applied in one
    # transaction (those that arrive while it runs go in the next); a group that fails is applied
    # one message at a time. GROUP_COMMIT_MAX_WAIT_MS > 0 also holds a group that is not full
    # that long after its first message for more (0: natural batching only).
    group_commit: bool = Field(default=True, alias="GROUP_COMMIT")
    group_commit_max_messages: int = Field(default=32, ge=1, le=1000, alias="GROUP_COMMIT_MAX_MESSAGES")
    group_commit_max_wait_ms: float = Field(default=0, ge=0, le=1000, alias="GROUP_COMMIT_MAX_WAIT_MS")

    result_ttl_seconds: int = Field(default=86_400, ge=60, alias="RESULT_CACHE_TTL_SECONDS")
    tombstone_retention_days: float = Field(default=30, gt=0, alias="TOMBSTONE_RETENTION_DAYS")

    @field_validator("published_on", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _sane(self) -> Self:
        if self.min_backoff_ms > self.max_backoff_ms:
            raise ValueError("SYNC_MIN_BACKOFF_MS must not exceed SYNC_MAX_BACKOFF_MS")
        env = self.environment
        # The worker's secrets are the credentials inside its URLs.
        refuse(
            [
                *url_credential_problems("DATABASE_URL", self.database_url, env),
                *(
                    problem
                    for url in self.amqp_urls
                    for problem in url_credential_problems("AMQP_URL", url, env, refused_users=DEFAULT_BROKER_USERS)
                ),
                *url_credential_problems("REDIS_URL", self.redis_url, env, password_required=False),
                *listen_problems("WORKER_METRICS_HOST", self.metrics_host, env, self.published_on),
            ]
        )
        return self

    @property
    def amqp_urls(self) -> list[str]:
        """The broker's addresses (AMQP_URL may list a cluster's nodes, comma-separated)."""
        return broker_urls(self.amqp_url)

    @property
    def tombstone_retention(self) -> timedelta:
        """How long a deleted product's tombstone is kept for clients to pull."""
        return timedelta(days=self.tombstone_retention_days)
