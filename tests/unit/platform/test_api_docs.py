"""``/docs`` is Swagger UI from an installed package: every file from this origin, none from a CDN."""

from __future__ import annotations

import re

import httpx
from fastapi import FastAPI

from stockzen_platform.api_docs import serve_api_docs
from stockzen_platform.http import install_error_handlers

_REFERENCE = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")


def _client() -> httpx.AsyncClient:
    app = FastAPI(title="Test <app>", docs_url=None, redoc_url=None)
    install_error_handlers(app)
    serve_api_docs(app)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service")


async def test_the_page_and_every_file_it_loads_come_from_this_origin() -> None:
    async with _client() as client:
        page = await client.get("/docs")
        assert page.status_code == 200
        assert "Test &lt;app&gt;" in page.text  # the title is escaped
        references = _REFERENCE.findall(page.text)
        assert len(references) == 4, references
        for reference in references:
            assert reference.startswith("/"), reference
            assert not reference.startswith("//"), reference
            asset = await client.get(reference)
            assert asset.status_code == 200, reference
            assert asset.headers["x-content-type-options"] == "nosniff"
        initializer = (await client.get("/docs/init.js")).text
        assert '"/openapi.json"' in initializer
        assert "http" not in initializer
    policy = page.headers["content-security-policy"]
    assert "script-src 'self';" in policy
    assert "default-src 'none'" in policy


async def test_nothing_else_of_the_package_or_the_disk_is_served() -> None:
    async with _client() as client:
        for path in ("/docs/assets/index.html", "/docs/assets/..%2F__init__.py", "/docs/assets/%2E%2E%2Fsecret"):
            assert (await client.get(path)).status_code == 404, path
        assert (await client.get("/redoc")).status_code == 404
