"""asyncpg pools for the services, and transactions scoped to one tenant under row-level security."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Literal
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


class UnsafeDatabaseRole(RuntimeError):
    """The service connected as a role that row-level security would not hold."""


async def _init_connection(connection: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await connection.set_type_codec(type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """A pool whose connections speak JSON for json/jsonb columns."""
    pool: asyncpg.Pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, init=_init_connection)
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
