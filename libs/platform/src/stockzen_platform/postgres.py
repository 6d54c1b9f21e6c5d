"""asyncpg pools for the services, and transactions scoped to one tenant under row-level security."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from .tenancy import TENANT_SETTING

if TYPE_CHECKING:
    PooledConnection = PoolConnectionProxy[asyncpg.Record]
else:  # the class is generic only in the stubs
    PooledConnection = PoolConnectionProxy
"""A connection borrowed from a pool (what :func:`tenant_transaction` yields)."""

Isolation = Literal["read_committed", "repeatable_read", "serializable"]
Connect = Callable[..., Coroutine[Any, Any, asyncpg.Connection]]
"""What makes a pool's connections: :func:`asyncpg.connect` or a wrapper of it."""


class UnsafeDatabaseRole(RuntimeError):
    """The service connected as a role that row-level security would not hold."""


async def _init_connection(connection: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await connection.set_type_codec(type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


HOST_CONNECT_SECONDS = 5.0
"""How long one host of a multi-host ``DATABASE_URL`` may take to connect before the next is tried."""

# What makes a multi-host connect move on to the next host: the host refuses or is unreachable,
# does not answer in time, is not what target_session_attrs asks for (a standby, for read-write),
# or is starting up, shutting down or recovering (Patroni restarting it as a standby).
_NEXT_HOST_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.TargetServerAttributeNotMatched,
    asyncpg.CannotConnectNowError,
)


def split_hosts(dsn: str) -> list[str]:
    """A libpq-style multi-host URL (``postgresql://user@h1:p1,h2:p2/db?...``) as one URL per host, in
    order, each keeping the user, password, database and query (``target_session_attrs`` included)."""
    parts = urlsplit(dsn)
    credentials, at, hosts = parts.netloc.rpartition("@")
    return [urlunsplit(parts._replace(netloc=f"{credentials}{at}{host}")) for host in hosts.split(",")]


def each_host_in_turn(connect: Connect, *, host_seconds: float = HOST_CONNECT_SECONDS) -> Connect:
    """``connect`` for a multi-host URL, trying its hosts one by one, each within ``host_seconds``.

    asyncpg tries a multi-host URL's hosts in order too, but under one timeout for all of them: a host
    that does not answer at all (a frozen or cut-off primary: no refusal, nothing) uses the whole
    timeout, 60 s by default, and the next host, the promoted standby, is never tried. libpq gives
    each host its own ``connect_timeout``; this does the same. The last host's error is raised if none
    will do.
    """

    async def connect_to_one_of(dsn: str | None = None, **kwargs: Any) -> asyncpg.Connection:
        if dsn is None:
            return await connect(dsn, **kwargs)
        *others, last = split_hosts(dsn)
        for host_dsn in others:
            with contextlib.suppress(*_NEXT_HOST_ERRORS):
                return await connect(host_dsn, **{**kwargs, "timeout": host_seconds})
        return await connect(last, **{**kwargs, "timeout": host_seconds})

    return connect_to_one_of


STATEMENT_SECONDS = 30.0
"""The default client-side limit on each statement of a pool's connections (:func:`create_pool`)."""


async def _keep_session(connection: asyncpg.Connection) -> None:
    """A release that sends nothing: asyncpg has already rolled back a transaction left open."""


async def create_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    host_seconds: float = HOST_CONNECT_SECONDS,
    statement_seconds: float | None = STATEMENT_SECONDS,
    session_state_free: bool = False,
) -> asyncpg.Pool:
    """A pool whose connections speak JSON for json/jsonb columns.

    ``statement_seconds`` is asyncpg's ``command_timeout``: a statement (``COMMIT`` and the
    ``ROLLBACK`` of a release included) that has no answer within it raises :class:`TimeoutError`;
    asyncpg then sends Postgres a cancel request, under the same limit, and drops the connection if
    that gets no answer either. So a caller waits at most about twice the limit on a server that has
    stopped answering (a frozen primary: a paused VM, a hung disk), whose connections stay open and
    say nothing, where it would otherwise wait without end. TCP keepalives would not do: the stopped
    server's kernel, on a live machine and network, still acknowledges every probe. ``None``: no limit.

    A multi-host ``dsn`` (a primary and its standby, with ``target_session_attrs=read-write``) is
    connected host by host, each within ``host_seconds`` (:func:`each_host_in_turn`): a connection
    lost when the primary dies is replaced by one to whichever node is read-write now.

    ``session_state_free``: the pool's users leave nothing in a session (every setting is
    transaction-local, no ``LISTEN``, no session advisory lock, no cursor kept), so a released
    connection is not reset (``RESET ALL``, ``CLOSE ALL``, ``UNLISTEN *``, unlock all): one round trip
    fewer on every release, which sits between a commit and what follows it.
    """
    connect = each_host_in_turn(asyncpg.connect, host_seconds=host_seconds) if len(split_hosts(dsn)) > 1 else None
    pool: asyncpg.Pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        connect=connect,
        reset=_keep_session if session_state_free else None,
        command_timeout=statement_seconds,
    )
    return pool


async def assert_role_is_restricted(pool: asyncpg.Pool) -> None:
    """Refuse to run as a superuser or a BYPASSRLS role: tenant isolation depends on it
    (see :mod:`stockzen_platform.tenancy`)."""
    row = await pool.fetchrow("SELECT rolname, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
    if row is None or row["rolsuper"] or row["rolbypassrls"]:
        name = row["rolname"] if row else "?"
        raise UnsafeDatabaseRole(
            f"database role {name!r} is a superuser or bypasses row-level security; connect as the application role"
        )


@asynccontextmanager
async def tenant_transaction(
    pool: asyncpg.Pool,
    tenant_id: UUID,
    *,
    isolation: Isolation = "read_committed",
    readonly: bool = False,
    local_settings: Mapping[str, str] | None = None,
    acquire_timeout: float | None = None,
) -> AsyncIterator[PooledConnection]:
    """A transaction in which every statement sees only ``tenant_id``'s rows.

    The tenant is set with ``set_config(..., is_local => true)`` so it ends with the transaction
    and can never leak to the next user of the pooled connection. (Layer 3 of
    :mod:`stockzen_platform.tenancy`.) ``local_settings`` (``statement_timeout``, say) are set the
    same way, in the same round trip; they cannot replace the tenant. ``acquire_timeout`` bounds the
    wait for a pooled connection (:class:`TimeoutError` past it).
    """
    settings = {**(local_settings or {}), TENANT_SETTING: str(tenant_id)}
    calls = ", ".join(f"set_config(${2 * n + 1}, ${2 * n + 2}, true)" for n in range(len(settings)))
    arguments = [part for setting in settings.items() for part in setting]
    async with (
        pool.acquire(timeout=acquire_timeout) as connection,
        connection.transaction(isolation=isolation, readonly=readonly),
    ):
        await connection.execute(f"SELECT {calls}", *arguments)
        yield connection


@asynccontextmanager
async def tenant_transaction_in_one_round_trip(
    pool: asyncpg.Pool, tenant_id: UUID, *, then: str = ""
) -> AsyncIterator[PooledConnection]:
    """:func:`tenant_transaction` (read committed, read-write, the tenant set the same way) opened in
    one round trip: ``BEGIN``, the tenant setting and ``then`` (statements without parameters, a
    lock say) go as one simple-protocol query, for a hot path that pays for each round trip.

    asyncpg did not start this transaction, so its nested ``connection.transaction()`` refuses to
    make savepoints in it: a caller sends ``SAVEPOINT`` statements itself. The transaction commits
    when the block ends without error and is rolled back otherwise.
    """
    # The simple protocol takes no parameters: the tenant goes in as a literal. That is safe because
    # it is a UUID (checked again here, whatever a caller passed), whose text is hex digits and dashes.
    tenant = UUID(str(tenant_id))
    opening = f"BEGIN ISOLATION LEVEL READ COMMITTED; SELECT set_config('{TENANT_SETTING}', '{tenant}', true); {then}"
    async with pool.acquire() as connection:
        try:
            await connection.execute(opening)
            yield connection
        except BaseException:
            if not connection.is_closed() and connection.is_in_transaction():
                await connection.execute("ROLLBACK")
            raise
        await connection.execute("COMMIT")
