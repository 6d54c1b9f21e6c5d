"""The worker's own Prometheus series, served beside dramatiq's on the worker's metrics port.

The worker runs in several processes: prometheus-client's multiprocess mode (the directory
``WORKER_METRICS_DIR``, set before anything imports prometheus_client) adds them up.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram


class WorkerMetrics:
    """Every series the worker exports, created once per process."""

    def __init__(self) -> None:
        self.operations = Counter(
            "stockzen_worker_operations_total",
            "Operations answered by the worker, by entity, operation type, status and code",
            ["entity_type", "operation_type", "status", "code"],
        )
        self.dedupe_hits = Counter(
            "stockzen_worker_dedupe_hits_total", "Operations found already applied, by where", ["source"]
        )
        self.conflicts = Counter(
            "stockzen_worker_lww_conflicts_total", "Product writes that lost (part of) last-writer-wins"
        )
        self.batch_seconds = Histogram(
            "stockzen_worker_batch_apply_seconds",
            "Time to apply one batch",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.database_errors = Counter(
            "stockzen_worker_database_errors_total", "Batches that failed on Postgres", ["kind"]
        )
        self.dead_lettered = Counter(
            "stockzen_worker_dead_lettered_total", "Messages sent to the dead-letter queue", ["actor_name"]
        )


METRICS = WorkerMetrics()
