"""Persistence: the profile's SQLite database, its schema and migrations, its transactions, and the
row-level writes of the server copy that both the pull and the settling of answers make.

One database (WAL, ``synchronous=FULL``) per profile holds the server's data as last pulled
(``products``, ``movements``, ``levels``), the outbox of changes made on this device, ``meta`` (the
feed checkpoint, a first download's progress, the sync status, the last stamp) and recent
``notices``. Every write is one ``BEGIN IMMEDIATE`` transaction, so a crash at any point leaves either
the whole change or none of it, and two processes never interleave a read-modify-write.

Nothing here needs the wire models (nor pydantic) at import: products are kept as their JSON.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stockzen_client.domain.view import signed
from stockzen_client.profile import PRIVATE_FILE

if TYPE_CHECKING:
    from stockzen_contracts import ProductState, StockMovementState

SCHEMA = """
CREATE TABLE IF NOT EXISTS products (id TEXT PRIMARY KEY, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS movements (id TEXT PRIMARY KEY, product_id TEXT NOT NULL, state TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS movements_by_product ON movements (product_id);
CREATE TABLE IF NOT EXISTS levels (
    product_id TEXT PRIMARY KEY,
    confirmed INTEGER NOT NULL DEFAULT 0  -- the snapshot's level + the feed's movements after it
);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- the order the changes were made in
    operation_id TEXT NOT NULL UNIQUE,
    entity_type TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    product_id TEXT NOT NULL,  -- the product a change touches: its changes go out in order
    body TEXT NOT NULL,        -- the operation exactly as it is (re)sent
    status TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,  -- unix time
    last_error TEXT,
    outcome TEXT,                              -- the server's status for it, once settled
    awaiting_pull INTEGER NOT NULL DEFAULT 0,  -- applied, but no pull has brought it back yet
    in_doubt INTEGER NOT NULL DEFAULT 0,       -- sent, and no final answer yet: it may be applied
    code TEXT,                                 -- why it failed, as the server said it (a contract code)
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_by_status ON outbox (status, seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS notices (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, kind TEXT NOT NULL, entity_id TEXT NOT NULL,
    message TEXT NOT NULL, product_id TEXT
);
"""

SCHEMA_VERSION = 2
"""``PRAGMA user_version``: 0 for a database from before ``levels`` and ``in_doubt``; 1 before the
outbox's ``code`` and the notices' ``product_id``."""

ADDED_COLUMNS = (("outbox", "code", "TEXT"), ("notices", "product_id", "TEXT"))
"""Columns of version 2, added to a database of an earlier version."""

QUEUED = "status IN ('pending', 'processing')"
"""Outbox rows still waiting for a final answer."""
SHOWN = "(status IN ('pending', 'processing') OR (status = 'completed' AND awaiting_pull = 1))"
"""Outbox rows whose effect the device shows on top of the server copy."""
MOVEMENT = "entity_type = 'stockMovement'"


class Database:
    """The profile's SQLite database. Not thread-safe: one per thread (or event loop)."""

    def __init__(self, path: Path | str) -> None:
        self.path = path
        if str(path) != ":memory:":
            _private_files(Path(path))
        self._db = sqlite3.connect(path, isolation_level=None, timeout=10)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA busy_timeout = 10000")  # other processes on the profile write too
        self._db.execute("PRAGMA journal_mode = WAL")  # readers never wait for the engine's writes
        self._db.execute("PRAGMA synchronous = FULL")  # an acknowledged local write survives a power cut
        if self._db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            with self.transaction() as db:
                _migrate(db)

    @property
    def connection(self) -> sqlite3.Connection:
        """The connection, for reads (writes go through :meth:`transaction`)."""
        return self._db

    def close(self) -> None:
        """Close the database connection."""
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: ``BEGIN IMMEDIATE`` takes the write lock up front, so two processes
        never interleave a read-modify-write; anything raised rolls it back."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def execute(self, sql: str, parameters: Any = ()) -> sqlite3.Cursor:
        """A read outside any transaction."""
        return self._db.execute(sql, parameters)

    def get_meta(self, key: str) -> str | None:
        """A value the store keeps about itself."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None


def _private_files(path: Path) -> None:
    """The database file made (or closed down to) 0600 whatever the umask, before SQLite opens it:
    SQLite gives its ``-wal`` and ``-shm`` files the database's mode, and those left by an earlier
    version are closed down too. The queued changes and the tenant's data are the owner's alone."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(f"{path}{suffix}", PRIVATE_FILE)


def set_meta(db: sqlite3.Connection, key: str, value: str | None) -> None:
    """Keep ``value`` under ``key`` (in the caller's transaction)."""
    db.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def put_product(db: sqlite3.Connection, state: ProductState) -> None:
    """Store the server's state of a product (its level lives in ``levels``, not in the state)."""
    db.execute(
        "INSERT INTO products (id, state) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET state = excluded.state",
        (str(state.id), state.model_dump_json(by_alias=True, exclude={"stock_level"})),
    )


def forget_product(db: sqlite3.Connection, product_id: str) -> None:
    """The server no longer has this product (deleted, its tombstone purged): keep a local tombstone,
    so this device stops showing it and a queued edit of it is not shown either. A later page that
    brings the product back replaces it."""
    row = db.execute("SELECT state FROM products WHERE id = ?", (product_id,)).fetchone()
    state: dict[str, Any] = json.loads(row[0]) if row else {"id": product_id, "name": None}
    db.execute(
        "INSERT INTO products (id, state) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET state = excluded.state",
        (product_id, json.dumps({**state, "deleted": True})),
    )


def add_movement(db: sqlite3.Connection, movement: StockMovementState) -> None:
    """Store a movement the feed brought; one held already adds nothing to its product's level."""
    product_id = str(movement.product_id)
    added = db.execute(
        "INSERT OR IGNORE INTO movements (id, product_id, state) VALUES (?, ?, ?)",
        (str(movement.id), product_id, movement.model_dump_json(by_alias=True)),
    ).rowcount
    if added:
        db.execute(
            "INSERT INTO levels (product_id, confirmed) VALUES (?, ?)"
            " ON CONFLICT (product_id) DO UPDATE SET confirmed = confirmed + excluded.confirmed",
            (product_id, signed(movement.kind, movement.quantity)),
        )


def forget_server_copy(db: sqlite3.Connection) -> None:
    """Forget everything the server sent (a snapshot's first page replaces it).

    Every product goes, those with queued changes too: the snapshot and the feed bring back each one
    the server holds, and the queued changes are replayed on top (a queued create shows its product
    meanwhile). A copy kept instead would outlive a delete made before C: the feed never says it again.
    """
    db.execute("DELETE FROM products")
    db.execute("DELETE FROM movements")
    db.execute("DELETE FROM levels")
    db.execute("UPDATE outbox SET awaiting_pull = 0 WHERE awaiting_pull = 1")
    db.execute("DELETE FROM meta WHERE key IN ('checkpoint', 'snapshot')")


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


def _migrate(db: sqlite3.Connection) -> None:
    """Create the schema, or bring a database of an earlier version up to it (in one transaction)."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    had_levels = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'levels'").fetchone()
    columns = _columns(db, "outbox")
    if columns and "in_doubt" not in columns:
        db.execute("ALTER TABLE outbox ADD COLUMN in_doubt INTEGER NOT NULL DEFAULT 0")
        # A change left ``processing`` may have reached the server: its fate is unknown.
        db.execute("UPDATE outbox SET in_doubt = 1 WHERE status = 'processing'")
    for statement in _statements(SCHEMA):
        db.execute(statement)
    for table, column, declaration in ADDED_COLUMNS:
        if column not in _columns(db, table):
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
    if version < 1 and not had_levels:
        # An older database holds every movement since its first pull: its levels are their sums, once.
        db.execute(
            "INSERT INTO levels (product_id, confirmed)"
            " SELECT product_id, sum(CASE json_extract(state, '$.kind') WHEN 'entry' THEN 1 ELSE -1 END"
            " * json_extract(state, '$.quantity')) FROM movements GROUP BY product_id"
        )
    if version < 2:
        # A refusal kept before version 2 holds its code at the head of its reason ("CODE: message").
        db.execute(
            "UPDATE outbox SET code = CASE WHEN instr(last_error, ':') > 0"
            " THEN substr(last_error, 1, instr(last_error, ':') - 1) ELSE last_error END"
            " WHERE status = 'failed' AND code IS NULL"
        )
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
