"""Database preparation and migrations: roles, database, and the SQL files applied once, in order.

Preparation connects as an administrator (``DATABASE_ADMIN_URL``) because it creates roles and the
database; migrations then run as the owner role ``stockzen_owner`` so that the services' role
``stockzen_app`` never owns what it is restricted on. Each migration runs in its own transaction
under an advisory lock and is recorded with its checksum, so running twice changes nothing and a
migration edited after it ran is refused. The one thing only an administrator may do inside the
database, letting product search use its index under row-level security, is done before the
migrations, by the administrator (:func:`let_search_use_its_index`).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import logging
import secrets
import unicodedata
from dataclasses import dataclass
from importlib import resources
from urllib.parse import unquote, urlsplit, urlunsplit

import asyncpg

OWNER_ROLE = "stockzen_owner"
APP_ROLE = "stockzen_app"
_LOCK_KEY = 0x5702_0001  # any constant shared by every migrator of this schema

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Migration:
    """One SQL file of ``stockzen_inventory/migrations``."""

    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationError(RuntimeError):
    """The database's recorded migrations disagree with the files shipped here."""


def bundled_migrations() -> list[Migration]:
    """The migrations shipped with this package, in version order."""
    folder = resources.files("stockzen_inventory.migrations")
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version, _, rest = entry.name.partition("_")
            found.append(Migration(version, rest.removesuffix(".sql"), entry.read_text()))
    return sorted(found, key=lambda m: m.version)


@dataclass(frozen=True, slots=True)
class DatabaseTarget:
    """Where the services' database lives, read from ``DATABASE_URL``."""

    name: str
    app_password: str | None

    @classmethod
    def from_url(cls, database_url: str) -> DatabaseTarget:
        parts = urlsplit(database_url)
        name = unquote(parts.path.lstrip("/"))
        if not name:
            raise ValueError("DATABASE_URL must name a database")
        user = unquote(parts.username or "")
        if user != APP_ROLE:
            raise ValueError(f"DATABASE_URL must connect as the application role {APP_ROLE!r}, not {user!r}")
        return cls(name=name, app_password=unquote(parts.password) if parts.password else None)


SCRAM_ITERATIONS = 4096  # Postgres's own default (scram_iterations)


def scram_sha256_verifier(password: str, *, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS) -> str:
    """The SCRAM-SHA-256 secret Postgres stores for ``password`` (RFC 5802/7677), computed here.

    Postgres takes a string in this form as an already-hashed password, so the password itself never
    reaches the server. Written out because no kept library makes just the verifier (libpq's
    ``PQencryptPasswordConn`` would need psycopg); it is the RFC's few lines of standard primitives.
    Passwords are normalised with NFKC, SASLprep's normalisation step (ASCII is left unchanged).
    """
    salt = salt if salt is not None else secrets.token_bytes(16)
    normalised = unicodedata.normalize("NFKC", password).encode("utf-8")
    salted = hashlib.pbkdf2_hmac("sha256", normalised, salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode("ascii")

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def _admin_url_for(admin_url: str, database: str) -> str:
    parts = urlsplit(admin_url)
    return urlunsplit(parts._replace(path="/" + database))


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def prepare_database(admin_url: str, database_url: str) -> None:
    """Create the roles and the database if missing (safe to run concurrently and repeatedly)."""
    target = DatabaseTarget.from_url(database_url)
    connection = await asyncpg.connect(admin_url)
    try:
        await _ensure_role(connection, OWNER_ROLE, "NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE")
        await _ensure_role(connection, APP_ROLE, "LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE")
        if target.app_password is not None:
            # Only the SCRAM verifier goes to the server, never the password: a statement log or
            # pg_stat_statements would keep a literal. (ALTER ROLE takes no parameters; the
            # verifier's alphabet is base64 and '$:', nothing that needs quoting.)
            verifier = scram_sha256_verifier(target.app_password)
            await connection.execute(f"ALTER ROLE {APP_ROLE} PASSWORD '{verifier}'")
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", target.name)
        if not exists:
            try:
                await connection.execute(f"CREATE DATABASE {_quote_ident(target.name)} OWNER {OWNER_ROLE}")
                log.info("created database", extra={"database": target.name})
            except asyncpg.DuplicateDatabaseError:
                pass
    finally:
        await connection.close()


async def _ensure_role(connection: asyncpg.Connection, role: str, attributes: str) -> None:
    if await connection.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
        await connection.execute(f"ALTER ROLE {role} {attributes}")
        return
    # Another migrator may create it between the check and here.
    with contextlib.suppress(asyncpg.DuplicateObjectError, asyncpg.UniqueViolationError):
        await connection.execute(f"CREATE ROLE {role} {attributes}")


_ILIKE_FUNCTION = "pg_catalog.texticlike(text, text)"


async def let_search_use_its_index(connection: asyncpg.Connection) -> bool:
    """Mark ILIKE's function LEAKPROOF in this database (as a superuser); return whether it is.

    Under row-level security Postgres uses a condition in an index scan only if its function is
    LEAKPROOF (it cannot reveal the rows the policy hides), so without this the product search's
    ``ILIKE`` never reaches its trigram index (migration 0005) and a search reads all of its tenant's
    products. Postgres does not mark ``texticlike`` itself because a malformed *pattern* makes it
    raise: a hidden row used as a pattern could be probed through the error. That needs SQL of one's
    own under the policies, and the only role they hold, ``stockzen_app``, sets its own tenant
    (``app.tenant_id``): the policies keep the services' own statements, which pass the pattern as a
    parameter, to one tenant, and this changes nothing of that. Catalog rows are per database, so
    other databases of the server are untouched. Without a superuser (a managed Postgres, say) search
    stays correct, only unindexed and bounded by the read time limit; a warning says so.
    """
    leakproof = f"SELECT proleakproof FROM pg_proc WHERE oid = '{_ILIKE_FUNCTION}'::regprocedure"
    if await connection.fetchval(leakproof):
        return True
    try:
        await connection.execute(f"ALTER FUNCTION {_ILIKE_FUNCTION} LEAKPROOF")
    except asyncpg.InsufficientPrivilegeError:
        log.warning(
            "DATABASE_ADMIN_URL is not a superuser: product search cannot use its index under row-level security",
            extra={"function": _ILIKE_FUNCTION},
        )
        return False
    return True


async def migrate(admin_url: str, database_url: str, *, check_only: bool = False) -> list[str]:
    """Apply pending migrations as the owner role; return their versions (pending ones if checking)."""
    target = DatabaseTarget.from_url(database_url)
    connection = await asyncpg.connect(_admin_url_for(admin_url, target.name))
    try:
        await connection.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        if not check_only:
            await let_search_use_its_index(connection)
        await connection.execute(f"SET ROLE {OWNER_ROLE}")
        await connection.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version text PRIMARY KEY,
                   name text NOT NULL,
                   checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        recorded = {
            r["version"]: r["checksum"]
            for r in await connection.fetch("SELECT version, checksum FROM schema_migrations")
        }
        pending = _pending(bundled_migrations(), recorded)
        if check_only:
            return [m.version for m in pending]
        for migration in pending:
            async with connection.transaction():
                await connection.execute(migration.sql)
                await connection.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            log.info("applied migration", extra={"version": migration.version, "migration": migration.name})
        return [m.version for m in pending]
    finally:
        await connection.close()  # closing releases the session's advisory lock


def _pending(migrations: list[Migration], recorded: dict[str, str]) -> list[Migration]:
    for migration in migrations:
        checksum = recorded.get(migration.version)
        if checksum is not None and checksum != migration.checksum:
            raise MigrationError(f"migration {migration.version}_{migration.name} changed after it was applied")
    unknown = set(recorded) - {m.version for m in migrations}
    if unknown:
        raise MigrationError(f"the database has migrations this code does not know: {sorted(unknown)}")
    return [m for m in migrations if m.version not in recorded]
