"""End-to-end fixtures: the services as real processes, and an HTTP client for the gateway."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.support.services import ServiceUrls
from tests.support.stack import Stack, delete_redis_keys, gateway_client


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("service-logs")


@pytest.fixture(scope="session")
async def stack(database: ServiceUrls, log_dir: Path) -> AsyncIterator[Stack]:
    """One gateway, inventory and worker shared by the tests that do not break things."""
    shared = Stack(database, log_dir, name="shared")
    try:
        shared.start_all()
        yield shared
    finally:
        shared.stop_all()
        await shared.delete_queues()
        await delete_redis_keys(database.redis_url, database.redis_prefix)


@pytest.fixture
async def own_stack(database: ServiceUrls, log_dir: Path, request: pytest.FixtureRequest) -> AsyncIterator[Stack]:
    """A stack (not yet started) for a test that kills or cuts off its services."""
    private = Stack(database, log_dir, name=f"t{uuid.uuid4().hex[:8]}")
    try:
        yield private
    finally:
        private.stop_all()
        await private.delete_queues()


@pytest.fixture
async def gateway(stack: Stack, tenant_id: uuid.UUID) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the shared gateway, authenticated as a user of this test's tenant."""
    async with gateway_client(stack, tenant_id) as client:
        yield client
