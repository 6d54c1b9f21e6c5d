"""A database lost under a request answers 503 UNAVAILABLE (retry), never a 500."""

from __future__ import annotations

import uuid
from typing import Any, NoReturn

import asyncpg
import httpx
import pytest

from stockzen_inventory.bootstrap import build_app
from stockzen_inventory.config import InventorySettings
from stockzen_inventory.entrypoints import dependencies
from stockzen_platform.identity import Identity, internal_token_issuer
from tests.support.stack import INTERNAL_SECRET


class _FailingReader:
    """Every read fails with ``error``, as the Postgres reader does when its connection dies."""

    def __init__(self, error: Exception) -> None:
        self._error = error

    def __getattr__(self, _name: str) -> Any:
        async def read(*_args: Any, **_kwargs: Any) -> NoReturn:
            raise self._error

        return read


async def _read_products(error: Exception) -> httpx.Response:
    settings = InventorySettings.model_validate(
        {
            "STOCKZEN_ENV": "test",
            "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
            "INTERNAL_TOKEN_SECRET": INTERNAL_SECRET,
        }
    )
    app = build_app(settings)  # no lifespan: nothing connects
    app.dependency_overrides[dependencies._reader] = lambda: _FailingReader(error)
    token = internal_token_issuer(INTERNAL_SECRET).issue(Identity("user-1", uuid.uuid4()), ttl_seconds=60)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://inventory") as client:
        return await client.get("/api/products", headers={"Authorization": f"Bearer {token}"})


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.InterfaceError("connection is closed"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        ConnectionRefusedError(111, "Connection refused"),
        # What the commit raised once Postgres had terminated the connection mid-command.
        asyncpg.exceptions.InternalClientError("cannot switch to state 15; another operation (2) is in progress"),
    ],
)
async def test_a_connection_lost_under_a_read_answers_503(error: Exception) -> None:
    answer = await _read_products(error)
    assert answer.status_code == 503, answer.text
    assert answer.json()["code"] == "UNAVAILABLE"
    assert answer.headers["retry-after"] == "5"


async def test_any_other_interface_error_stays_an_internal_error() -> None:
    answer = await _read_products(asyncpg.InterfaceError("cannot perform operation: another operation is in progress"))
    assert answer.status_code == 500
    assert answer.json()["code"] == "INTERNAL_ERROR"
