"""The gateway's Prometheus series (names are used by infra/ dashboards and alert rules).

Labelled series that dashboards and alerts read are created at zero when the process starts:
a series that first appears at 1 is invisible to ``rate()``/``increase()``, and a missing series
reads as "no data" rather than "nothing happened".
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from stockzen_platform.http import HttpMetrics

_WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)

RATE_LIMIT_SCOPES = ("sync", "read")
"""The ``scope`` values of ``stockzen_gateway_rate_limited_total`` (the gateway's rate limits)."""

IDEMPOTENCY_OUTCOMES = (
    "replayed",
    "idempotency_key_in_flight",
    "idempotency_key_reused",
    "idempotency_key_mismatch",
    "validation_error",
)
"""The ``outcome`` values of ``stockzen_gateway_idempotency_total``: a replay, or a refusal's code in lower case."""

PUBLISH_FAILURE_REASONS = (
    "TimeoutError",
    "PublishError",
    "DeliveryError",
    "ChannelInvalidStateError",
    "AMQPConnectionError",
    "ConnectionRefusedError",
)
"""The usual ``reason`` values (exception class names) of ``stockzen_gateway_publish_failures_total``."""

REDIS_USES = ("rate_limit", "wait_for_reply", "request", "announcements")
"""The ``use`` values of ``stockzen_gateway_redis_errors_total``."""

STREAM_REFUSAL_SCOPES = ("user", "tenant", "process")
"""The ``scope`` values of ``stockzen_gateway_live_streams_refused_total`` (which cap refused a stream)."""


class GatewayMetrics:
    """Every series the gateway exports, created once per process."""

    def __init__(self) -> None:
        self.http = HttpMetrics("stockzen_gateway")
        self.sync_operations = Counter(
            "stockzen_gateway_sync_operations_total",
            "Sync operations answered, by entity, operation type, status and code",
            ["entity_type", "operation_type", "status", "code"],
        )
        self.rate_limited = Counter("stockzen_gateway_rate_limited_total", "Requests refused with 429", ["scope"])
        self.request_keys = Counter(
            "stockzen_gateway_idempotency_total",
            "Idempotency-Key outcomes: replayed, or the refusal's code (in_flight 409, reused 422, mismatch 400)",
            ["outcome"],
        )
        self.publish_seconds = Histogram(
            "stockzen_gateway_publish_duration_seconds",
            "Time to publish a batch with confirmation",
            buckets=_WAIT_BUCKETS,
        )
        self.publish_failures = Counter(
            "stockzen_gateway_publish_failures_total", "Batches the broker did not take", ["reason"]
        )
        self.result_wait_seconds = Histogram(
            "stockzen_gateway_result_wait_seconds",
            "Time waiting for the worker's results",
            buckets=_WAIT_BUCKETS,
        )
        self.pending_answers = Counter(
            "stockzen_gateway_pending_answers_total", "Sync requests answered 202 with pending items"
        )
        self.redis_errors = Counter("stockzen_gateway_redis_errors_total", "Redis failures by use", ["use"])
        self.queue_messages = Gauge(
            "stockzen_queue_messages", "Messages waiting in a queue (polled by the gateway)", ["queue"]
        )
        self.queue_consumers = Gauge(
            "stockzen_queue_consumers", "Consumers attached to a queue (polled by the gateway)", ["queue"]
        )
        self.queue_polled_at = Gauge(
            "stockzen_queue_last_poll_timestamp_seconds",
            "When the gateway last read the queues' depth (stale gauges above mean the broker is out of reach)",
        )
        self.live_streams = Gauge("stockzen_gateway_live_streams", "Open live-update streams (GET /api/sync/stream)")
        self.live_streams_refused = Counter(
            "stockzen_gateway_live_streams_refused_total",
            "Live streams refused for a full cap: user, tenant (429) or process (503)",
            ["scope"],
        )
        self._create_known_series()

    def _create_known_series(self) -> None:
        for scope in RATE_LIMIT_SCOPES:
            self.rate_limited.labels(scope)
        for outcome in IDEMPOTENCY_OUTCOMES:
            self.request_keys.labels(outcome)
        for reason in PUBLISH_FAILURE_REASONS:
            self.publish_failures.labels(reason)
        for use in REDIS_USES:
            self.redis_errors.labels(use)
        for scope in STREAM_REFUSAL_SCOPES:
            self.live_streams_refused.labels(scope)


METRICS = GatewayMetrics()
