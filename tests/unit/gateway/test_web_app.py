"""``/app``: the built browser app, its single-page fallback and its cache headers."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from stockzen_gateway.entrypoints.web_app import mount_web_app
from stockzen_platform.http import install_error_handlers


@pytest.fixture
def built(tmp_path: Path) -> Path:
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<!doctype html><title>StockZen</title>")
    (dist / "sw.js").write_text("self.addEventListener('fetch', () => {});")
    (dist / "assets" / "main-abc123.js").write_text("console.log('app');")
    (tmp_path / "secret.txt").write_text("outside the app")
    return dist


def _client(directory: Path | None) -> httpx.AsyncClient:
    app = FastAPI()
    install_error_handlers(app)
    mount_web_app(app, directory)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway")


async def test_the_app_is_served_with_revalidated_shell_and_immutable_assets(built: Path) -> None:
    async with _client(built) as client:
        root = await client.get("/app", follow_redirects=False)
        assert (root.status_code, root.headers["location"]) == (308, "/app/")
        index = await client.get("/app/")
        assert index.text.startswith("<!doctype html>")
        assert index.headers["cache-control"] == "no-cache"
        assert "script-src 'self'" in index.headers["content-security-policy"]
        assert index.headers["x-content-type-options"] == "nosniff"
        worker = await client.get("/app/sw.js")
        assert worker.headers["cache-control"] == "no-cache"
        assert "javascript" in worker.headers["content-type"]
        asset = await client.get("/app/assets/main-abc123.js")
        assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"


async def test_other_paths_fall_back_to_the_app_but_missing_assets_do_not(built: Path) -> None:
    async with _client(built) as client:
        page = await client.get("/app/products/123")
        assert page.status_code == 200
        assert page.text.startswith("<!doctype html>")
        missing = await client.get("/app/assets/gone-000.js")
        assert missing.status_code == 404
        assert missing.json()["code"] == "NOT_FOUND"


async def test_nothing_outside_the_build_is_served(built: Path) -> None:
    async with _client(built) as client:
        escaped = await client.get("/app/%2e%2e/secret.txt")
        assert "outside the app" not in escaped.text


async def test_without_a_build_the_answer_says_how_to_make_one(tmp_path: Path) -> None:
    for directory in (None, tmp_path / "nothing-here"):
        async with _client(directory) as client:
            answer = await client.get("/app/")
        assert answer.status_code == 404
        assert "make run" in answer.json()["message"]
