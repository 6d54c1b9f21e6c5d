"""The worker's own Prometheus series, served beside dramatiq's on the worker's metrics port.

The worker runs in several processes: prometheus-client's multiprocess mode (the directory
``WORKER_METRICS_DIR``, set before anything imports prometheus_client) adds them up.

Labelled series that dashboards and alerts read are created at zero when a worker process starts
(:func:`~stockzen_sync_worker.bootstrap.configure_worker_process` makes the one :class:`WorkerMetrics`
of the process): a series that first appears at 1 is invisible to ``rate()``/``increase()``.
Importing this module creates nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from stockzen_contracts import APPLY_SYNC_BATCH_ACTOR

DEDUPE_SOURCES = ("redis", "postgres")
"""The ``source`` values of ``stockzen_worker_dedupe_hits_total``: the fast path (Redis) and the durable record (Postgres)."""

TRANSIENT_DATABASE_ERRORS = (
    "ConnectionDoesNotExistError",
    "InterfaceError",
    "TooManyConnectionsError",
    "DeadlockDetectedError",
    "SerializationError",
    "QueryCanceledError",
)
"""The usual ``kind`` values (asyncpg exception class names) of ``stockzen_worker_database_errors_total``:
Postgres going away, running out of connections, or refusing a transaction that a retry can apply."""


class WorkerMetrics:
    """Every series the worker exports, created once per process (tests give each its own registry)."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.operations = Counter(
            "stockzen_worker_operations_total",
            "Operations answered by the worker, by entity, operation type, status and code",
            ["entity_type", "operation_type", "status", "code"],
            registry=registry,
        )
        self.dedupe_hits = Counter(
            "stockzen_worker_dedupe_hits_total",
            "Operations found already applied, by where",
            ["source"],
            registry=registry,
        )
        self.conflicts = Counter(
            "stockzen_worker_lww_conflicts_total",
            "Product writes that lost (part of) last-writer-wins",
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "stockzen_worker_batch_apply_seconds",
            "Time to apply one batch",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry,
        )
        self.database_errors = Counter(
            "stockzen_worker_database_errors_total", "Batches that failed on Postgres", ["kind"], registry=registry
        )
        self.batch_failures = Counter(
            "stockzen_worker_batch_failures_total",
            "Batches that failed and will be retried, by exception (Postgres, Redis or other)",
            ["kind"],
            registry=registry,
        )
        self.dead_lettered = Counter(
            "stockzen_worker_dead_lettered_total",
            "Messages sent to the dead-letter queue",
            ["actor_name"],
            registry=registry,
        )
        self.group_messages = Histogram(
            "stockzen_worker_group_commit_messages",
            "Messages applied in one group commit (one tenant's transaction)",
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64),
            registry=registry,
        )
        self.group_wait_seconds = Histogram(
            "stockzen_worker_group_commit_wait_seconds",
            "How long a message waited to be grouped: from reaching the group committer to its group's start",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=registry,
        )
        self.group_fallbacks = Counter(
            "stockzen_worker_group_commit_fallbacks_total",
            "Groups that failed as a whole and were applied one message at a time",
            registry=registry,
        )
        self._create_known_series()

    def group_started(self, size: int, waits: Sequence[float]) -> None:
        """A group commit of ``size`` messages starts (see :class:`~stockzen_sync_worker.grouping.GroupObserver`)."""
        self.group_messages.observe(size)
        for wait in waits:
            self.group_wait_seconds.observe(wait)

    def group_fell_back(self, size: int) -> None:
        """A group failed as a whole; its ``size`` messages are applied one at a time."""
        self.group_fallbacks.inc()

    def _create_known_series(self) -> None:
        for source in DEDUPE_SOURCES:
            self.dedupe_hits.labels(source)
        for kind in TRANSIENT_DATABASE_ERRORS:
            self.database_errors.labels(kind)
        self.dead_lettered.labels(APPLY_SYNC_BATCH_ACTOR)
