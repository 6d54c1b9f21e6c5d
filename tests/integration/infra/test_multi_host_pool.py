"""The services' pool on a multi-host ``DATABASE_URL`` whose first host hangs: it still connects, to
the next host, within the per-host limit (asyncpg alone spends its whole timeout on the first host).

The hung host is a socket that listens and never answers, as a frozen primary or a cut-off machine
would (the kernel completes the TCP handshake; the server never speaks). The next host is this run's
Postgres, so the test runs in the ordinary suite; the failover itself is in test_pg_failover.py.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from stockzen_platform.postgres import create_pool
from tests.support.services import ServiceUrls


@pytest.fixture
def hung_port() -> Iterator[int]:
    """A port that accepts TCP connections and never answers on them."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield listener.getsockname()[1]


def _with_host_in_front(url: str, port: int) -> str:
    parts = urlsplit(url)
    credentials, at, hosts = parts.netloc.rpartition("@")
    query = "&".join(filter(None, [parts.query, "target_session_attrs=read-write"]))
    return urlunsplit(parts._replace(netloc=f"{credentials}{at}127.0.0.1:{port},{hosts}", query=query))


async def test_a_pool_skips_a_host_that_hangs_and_connects_to_the_next(database: ServiceUrls, hung_port: int) -> None:
    started = time.monotonic()
    pool = await create_pool(_with_host_in_front(database.app_url, hung_port), min_size=1, max_size=1, host_seconds=1)
    try:
        assert await pool.fetchval("SELECT NOT pg_is_in_recovery()")
        elapsed = time.monotonic() - started
    finally:
        await pool.close()
    assert 1 <= elapsed < 10, f"connected in {elapsed:.1f} s"
