"""What a released connection costs: a pool whose users keep no session state skips asyncpg's reset
(``RESET ALL`` and friends, one round trip per release), yet a transaction left open is still rolled back."""

from __future__ import annotations

import pytest

from stockzen_platform.postgres import create_pool
from tests.support.services import ServiceUrls


@pytest.mark.parametrize(("session_state_free", "kept"), [(True, "kept"), (False, "")])
async def test_a_session_state_free_pool_sends_no_reset_on_release(
    database: ServiceUrls, session_state_free: bool, kept: str
) -> None:
    pool = await create_pool(database.app_url, min_size=1, max_size=1, session_state_free=session_state_free)
    try:
        async with pool.acquire() as connection:
            await connection.execute("SELECT set_config('application_name', 'kept', false)")
        async with pool.acquire() as connection:  # the same connection: the pool holds one
            # Only a reset (RESET ALL) takes a session setting back to its default.
            assert await connection.fetchval("SELECT current_setting('application_name')") == kept
    finally:
        await pool.close()


async def test_a_transaction_left_open_is_still_rolled_back(database: ServiceUrls) -> None:
    pool = await create_pool(database.app_url, min_size=1, max_size=1, session_state_free=True)
    try:
        async with pool.acquire() as connection:
            await connection.execute("BEGIN; SELECT set_config('application_name', 'in a transaction', false)")
            assert connection.is_in_transaction()
        async with pool.acquire() as connection:
            assert not connection.is_in_transaction()
            assert await connection.fetchval("SELECT current_setting('application_name')") == ""
    finally:
        await pool.close()
