"""The gateway's Prometheus series (names are used by infra/ dashboards and alert rules)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from stockzen_platform.http import HttpMetrics

_WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)


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
        self.idempotency = Counter(
            "stockzen_gateway_idempotency_total",
            "Idempotency-Key outcomes: replayed, in_flight (409), mismatch (422), key_mismatch (400)",
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


METRICS = GatewayMetrics()
