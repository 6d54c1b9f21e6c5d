"""A Postgres primary and its synchronous standby under Patroni (scripts/pg_cluster.py): every commit
the application role was told succeeded survives the primary's crash, the services' multi-host
``DATABASE_URL`` finds the promoted standby, and the old primary comes back as the synchronous standby.

Writers commit through the services' own pool (``create_pool``) and ``tenant_transaction`` as
``stockzen_app`` while the primary's postmaster and backends are SIGKILLed, so commits are in flight at
the crash. Its Patroni sees Postgres gone and, with ``primary_start_timeout: 0``, lets the standby take
over at once. The failover time is measured from the kill until a write through the multi-host URL is
acknowledged by the new primary. Deselected by default (marker ``cluster``): ``make test-cluster``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg
import pytest

from scripts.pg_cluster import DATABASE, PgCluster, PgNode, tools_missing
from stockzen_platform.postgres import create_pool, tenant_transaction

MISSING = tools_missing()
pytestmark = [
    pytest.mark.cluster,
    pytest.mark.slow,
    pytest.mark.skipif(
        bool(MISSING), reason=f"not installed: {', '.join(MISSING)} (bash scripts/ensure_tools.sh --cluster)"
    ),
]

WRITERS = 4
ATTEMPT_SECONDS = 5.0
HOST_SECONDS = 1.0  # the pool's connect limit per host (create_pool)
FAILOVER_LIMIT_SECONDS = 60.0
# What a write may meet while the primary is gone: a dropped connection, a refused one, the standby
# still read-only (asyncpg's target_session_attrs check), a server starting up, a slow attempt.
FAILOVER_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)


@pytest.fixture(scope="module")
async def cluster() -> AsyncIterator[PgCluster]:
    # Ports of their own, so a `make cluster-postgres` left running does not stop the test.
    started = time.monotonic()
    with PgCluster(base_port=5541, rest_base_port=8541, etcd_port=2579) as cluster:
        applied = await cluster.prepare_database()
        print(f"primary + synchronous standby up, migrations {', '.join(applied)}: {time.monotonic() - started:.1f} s")
        yield cluster


@dataclass
class Writers:
    """Concurrent writers through one pool, each commit recorded once it is acknowledged."""

    pool: asyncpg.Pool
    acknowledged: list[tuple[float, int, uuid.UUID]] = field(default_factory=list)  # (when, server port, row)
    failures: list[str] = field(default_factory=list)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    async def write(self) -> tuple[int, uuid.UUID]:
        """Commit one row (a tenant) as the application role; the port of the server that committed it."""
        tenant = uuid.uuid4()
        async with tenant_transaction(self.pool, tenant, acquire_timeout=ATTEMPT_SECONDS) as connection:
            await connection.execute("INSERT INTO tenants (tenant_id) VALUES ($1)", tenant)
            port: int = await connection.fetchval("SELECT inet_server_port()")
        return port, tenant

    async def run(self) -> None:
        while not self.stopping.is_set():
            try:
                port, tenant = await asyncio.wait_for(self.write(), ATTEMPT_SECONDS)
            except FAILOVER_ERRORS as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(0.05)
                continue
            self.acknowledged.append((time.monotonic(), port, tenant))

    def first_acknowledged_by(self, port: int, after: float) -> float | None:
        return next((when for when, on, _ in self.acknowledged if on == port and when > after), None)


async def _rows_on(cluster: PgCluster, node: PgNode, rows: list[uuid.UUID]) -> set[uuid.UUID]:
    """Which of ``rows`` ``node`` holds (as the superuser: row-level security would hide them)."""
    connection = await asyncpg.connect(cluster.admin_url(node, DATABASE))
    try:
        found = await connection.fetch("SELECT tenant_id FROM tenants WHERE tenant_id = ANY($1::uuid[])", rows)
    finally:
        await connection.close()
    return {row["tenant_id"] for row in found}


async def _await_rows_on(cluster: PgCluster, node: PgNode, rows: list[uuid.UUID], *, seconds: float) -> None:
    """Wait until ``node`` has replayed ``rows`` (synchronous_commit=on waits for the standby's flush,
    so replay, which makes rows visible there, may trail the acknowledgement by moments)."""
    deadline = time.monotonic() + seconds
    while True:
        missing = set(rows) - await _rows_on(cluster, node, rows)
        if not missing or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert not missing, f"{len(missing)} committed rows never reached {node.name}"


async def _await_role(cluster: PgCluster, node: PgNode, role: str, *, seconds: float) -> None:
    """Wait until Patroni reports ``node`` running as ``role`` (leader, sync_standby)."""
    deadline = time.monotonic() + seconds
    while cluster.role(node) not in {(role, "running"), (role, "streaming")}:
        assert time.monotonic() < deadline, f"{node.name} is not {role}: {cluster.members()}"
        await asyncio.sleep(0.2)


async def test_every_acknowledged_commit_survives_the_primarys_crash_and_the_old_primary_rejoins(
    cluster: PgCluster,
) -> None:
    primary = cluster.leader()
    standby = next(node for node in cluster.nodes if node != primary)
    await _await_role(cluster, standby, "sync_standby", seconds=60)

    pool = await create_pool(cluster.database_url, max_size=WRITERS, host_seconds=HOST_SECONDS)
    writers = Writers(pool)
    tasks = [asyncio.create_task(writers.run()) for _ in range(WRITERS)]
    try:
        # Synchronous: the primary names the standby, and what it acknowledged is on the standby.
        await asyncio.sleep(1.0)
        assert writers.acknowledged, f"no write succeeded before the crash: {writers.failures[-3:]}"
        assert {port for _, port, _ in writers.acknowledged} == {primary.port}
        admin = await asyncpg.connect(cluster.admin_url(primary))
        try:
            sync_state = await admin.fetchval("SELECT sync_state FROM pg_stat_replication")
        finally:
            await admin.close()
        assert sync_state == "sync"
        await _await_rows_on(cluster, standby, [row for _, _, row in writers.acknowledged], seconds=5)

        crashed_at = time.monotonic()
        cluster.crash_postgres(primary)
        while (recovered_at := writers.first_acknowledged_by(standby.port, crashed_at)) is None:
            assert time.monotonic() - crashed_at < FAILOVER_LIMIT_SECONDS, (
                f"no write succeeded: {writers.failures[-3:]}"
            )
            await asyncio.sleep(0.02)
        failover_seconds = recovered_at - crashed_at
        await asyncio.sleep(1.0)  # writes keep succeeding on the new primary
    finally:
        writers.stopping.set()
        await asyncio.gather(*tasks)
    try:
        await _await_role(cluster, standby, "leader", seconds=10)
        acknowledged = [row for _, _, row in writers.acknowledged]
        on_new_primary = await _rows_on(cluster, standby, acknowledged)
        assert set(acknowledged) - on_new_primary == set(), "an acknowledged commit was lost"
        after = [when for when, _, _ in writers.acknowledged if when > recovered_at]
        assert len(after) > 1, "writes keep succeeding on the new primary"

        # The old primary comes back (rewound if need be) as the synchronous standby of the new one.
        rejoin_started = time.monotonic()
        await _await_role(cluster, primary, "sync_standby", seconds=90)
        rejoin_seconds = time.monotonic() - rejoin_started
        port, row = await writers.write()
        assert port == standby.port
        await _await_rows_on(cluster, primary, [row], seconds=10)
    finally:
        await pool.close()
    print(
        f"failover {failover_seconds:.2f} s (kill of {primary.name} to the first write acknowledged by "
        f"{standby.name}); {len(acknowledged)} acknowledged commits, none lost; {len(writers.failures)} failed "
        f"attempts meanwhile; {primary.name} back as sync_standby {rejoin_seconds:.1f} s after the failover"
    )
