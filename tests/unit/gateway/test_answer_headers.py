"""Every gateway answer says ``nosniff``; an answer without its own ``Cache-Control`` says ``no-store``."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

from stockzen_gateway.entrypoints.http import AnswerHeaders
from stockzen_platform.http import ApiError, install_error_handlers


def _client() -> httpx.AsyncClient:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/data")
    async def data() -> dict[str, str]:
        return {"tenant": "data"}

    @app.get("/file")
    async def file() -> PlainTextResponse:
        return PlainTextResponse("cached", headers={"Cache-Control": "public, max-age=60"})

    @app.get("/refused")
    async def refused() -> None:
        raise ApiError(401, "UNAUTHORIZED", "no")

    app.add_middleware(AnswerHeaders)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway")


async def test_api_answers_and_errors_are_neither_stored_nor_sniffed() -> None:
    async with _client() as client:
        for path in ("/data", "/refused", "/nowhere"):
            response = await client.get(path)
            assert response.headers["cache-control"] == "no-store", path
            assert response.headers["x-content-type-options"] == "nosniff", path


async def test_an_answer_that_sets_its_own_caching_keeps_it() -> None:
    async with _client() as client:
        response = await client.get("/file")
    assert response.headers["cache-control"] == "public, max-age=60"
    assert response.headers["x-content-type-options"] == "nosniff"
