"""A Postgres primary and its synchronous standby under Patroni (scripts/pg_cluster.py): every commit
the application role was told succeeded survives the primary's crash, the services' multi-host
``DATABASE_URL`` finds the promoted standby, and the old primary comes back as the synchronous standby.

Writers commit through the services' own pool (``create_pool``) and ``tenant_transaction`` as
``stockzen_app`` while the primary's postmaster and backends are SIGKILLed, so commits are in flight at
the crash. Its Patroni sees Postgres gone and, with ``primary_start_timeout: 0``, lets the standby take
over at once. The failover time is measured from the kill until a write through the multi-host URL is
acknowledged by the new primary.

Then a hung primary: its Patroni and its Postgres are frozen (SIGSTOP), as a paused VM or a hung disk
would leave them, so its connections stay open and say nothing. Writers on a pool with a short
client-side statement limit (``create_pool``'s ``statement_seconds``) are dropped off it within that
limit and carry on against the promoted standby; the old primary, reset as a watchdog would reset a hung
machine, rejoins as the standby.
Deselected by default (marker ``cluster``): ``make test-cluster``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg
import pytest

from scripts.pg_cluster import DATABASE, PgCluster, PgNode, tools_missing
from stockzen_platform.postgres import create_pool, split_hosts, tenant_transaction

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
STATEMENT_SECONDS = 3.0  # the client-side statement limit of the hung-primary test's pool
# The longest a writer may wait on a hung primary: its statement's limit, then the cancel request's
# (asyncpg sends one under the same limit and drops the connection when it gets no answer), a new
# connection's limit on each host (the frozen one first), and slack for a busy machine.
HUNG_WAIT_LIMIT_SECONDS = 2 * STATEMENT_SECONDS + 2 * HOST_SECONDS + 2.0
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


@pytest.fixture
async def hung_cluster() -> AsyncIterator[PgCluster]:
    # A cluster of its own (on ports of its own): the one above has been through a crash already.
    with PgCluster(base_port=5561, rest_base_port=8561, etcd_port=2599) as cluster:
        await cluster.prepare_database()
        yield cluster


@dataclass
class Writers:
    """Concurrent writers through one pool, each commit recorded once it is acknowledged."""

    pool: asyncpg.Pool
    # Each attempt's own limit; None: only the pool's statement limit bounds it.
    attempt_seconds: float | None = ATTEMPT_SECONDS
    acknowledged: list[tuple[float, int, uuid.UUID]] = field(default_factory=list)  # (when, server port, row)
    failures: list[str] = field(default_factory=list)
    longest: float = 0.0  # the longest attempt, successful or not
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    async def write(self) -> tuple[int, uuid.UUID]:
        """Commit one row (a tenant) as the application role; the port of the server that committed it."""
        tenant = uuid.uuid4()
        async with tenant_transaction(self.pool, tenant, acquire_timeout=ATTEMPT_SECONDS) as connection:
            await connection.execute("INSERT INTO tenants (tenant_id) VALUES ($1)", tenant)
            port: int = await connection.fetchval("SELECT inet_server_port()")
        return port, tenant

    async def attempt(self) -> tuple[int, uuid.UUID]:
        if self.attempt_seconds is None:
            return await self.write()
        return await asyncio.wait_for(self.write(), self.attempt_seconds)

    async def run(self) -> None:
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                port, tenant = await self.attempt()
            except FAILOVER_ERRORS as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
                self.longest = max(self.longest, time.monotonic() - started)
                await asyncio.sleep(0.05)
                continue
            self.longest = max(self.longest, time.monotonic() - started)
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


async def test_a_hung_primary_is_left_within_the_statement_limit_and_rejoins_as_a_standby(
    hung_cluster: PgCluster,
) -> None:
    cluster = hung_cluster
    primary = cluster.leader()
    standby = next(node for node in cluster.nodes if node != primary)
    await _await_role(cluster, standby, "sync_standby", seconds=60)

    # Only the pool's statement limit bounds an attempt: no asyncio.wait_for around it.
    pool = await create_pool(
        cluster.database_url, max_size=WRITERS, host_seconds=HOST_SECONDS, statement_seconds=STATEMENT_SECONDS
    )
    writers = Writers(pool, attempt_seconds=None)
    # One connection straight to the primary, idle through the freeze, to see what asyncpg does with it.
    on_primary = next(url for url in split_hosts(cluster.database_url) if f":{primary.port}/" in url)
    probe = await asyncpg.connect(on_primary, command_timeout=STATEMENT_SECONDS)
    tasks = [asyncio.create_task(writers.run()) for _ in range(WRITERS)]
    try:
        await asyncio.sleep(1.0)
        assert {port for _, port, _ in writers.acknowledged} == {primary.port}, writers.failures[-3:]

        frozen_at = time.monotonic()
        cluster.freeze(primary)
        # The statement times out, the cancel request gets no answer either, the connection is dropped.
        with pytest.raises(TimeoutError):
            await probe.fetchval("SELECT 1")
        timed_out = time.monotonic() - frozen_at
        while not probe.is_closed():
            assert time.monotonic() - frozen_at < 2 * STATEMENT_SECONDS + 2, "the hung connection was kept"
            await asyncio.sleep(0.05)
        dropped = time.monotonic() - frozen_at

        while (recovered_at := writers.first_acknowledged_by(standby.port, frozen_at)) is None:
            assert time.monotonic() - frozen_at < FAILOVER_LIMIT_SECONDS, f"no write succeeded: {writers.failures[-3:]}"
            await asyncio.sleep(0.02)
        failover_seconds = recovered_at - frozen_at
        await asyncio.sleep(1.0)  # writes keep succeeding on the new primary
        failed_while_frozen = Counter(failure.split(":")[0] for failure in writers.failures)
        failures_while_frozen = len(writers.failures)

        # Reset it, as a watchdog would, while the writers go on (resumed, Patroni 3.0.2 is not safe: thaw).
        reset_at = time.monotonic()
        await asyncio.to_thread(cluster.reset, primary)
        await asyncio.to_thread(cluster.await_role, primary, {"sync_standby"}, seconds=90)
        rejoin_seconds = time.monotonic() - reset_at
        await asyncio.sleep(1.0)
    finally:  # a node left frozen is let go by the fixture's stop
        writers.stopping.set()
        _, hung = await asyncio.wait(tasks, timeout=HUNG_WAIT_LIMIT_SECONDS)
        for task in hung:
            task.cancel()
        await asyncio.gather(*hung, return_exceptions=True)
        probe.terminate()
    assert not hung, f"{len(hung)} writers still waiting {HUNG_WAIT_LIMIT_SECONDS:.0f} s after they were stopped"
    try:
        assert cluster.leader() == standby
        acknowledged = [row for _, _, row in writers.acknowledged]
        on_new_primary = await _rows_on(cluster, standby, acknowledged)
        assert set(acknowledged) - on_new_primary == set(), "an acknowledged commit was lost"
        assert len([when for when, _, _ in writers.acknowledged if when > reset_at]) > 1, "writes went on"
        assert writers.longest < HUNG_WAIT_LIMIT_SECONDS, f"a writer waited {writers.longest:.1f} s"
        port, row = await writers.write()
        assert port == standby.port
        await _await_rows_on(cluster, primary, [row], seconds=10)
    finally:
        await pool.close()
    assert STATEMENT_SECONDS - 0.5 < timed_out < STATEMENT_SECONDS + 1.0
    print(
        f"hung {primary.name}: an idle connection's statement timed out after {timed_out:.1f} s and the "
        f"connection was dropped after {dropped:.1f} s; failover {failover_seconds:.2f} s (freeze to the first "
        f"write acknowledged by {standby.name}); longest attempt {writers.longest:.1f} s (limit "
        f"{STATEMENT_SECONDS:.0f} s); {len(acknowledged)} acknowledged commits, none lost; "
        f"failed attempts while frozen {dict(failed_while_frozen)}, {len(writers.failures) - failures_while_frozen} "
        f"after; {primary.name} back as sync_standby {rejoin_seconds:.1f} s after its reset"
    )
