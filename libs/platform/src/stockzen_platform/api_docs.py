"""``/docs``: Swagger UI served from an installed Python package, never from a CDN. Needs the ``http`` extra.

FastAPI's own ``/docs`` (and ``/redoc``) load their script and styles from a CDN, unpinned and without
integrity, on the gateway's origin, whose local storage holds the browser app's token: whoever serves
that script could read it. Here every file comes from ``swagger-ui-bundle-v2`` (its version pinned by
``uv.lock``), under a Content-Security-Policy that allows nothing from anywhere else. Build the app with
``docs_url=None, redoc_url=None`` and call :func:`serve_api_docs`.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse, Response
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]  # ships no py.typed

from stockzen_contracts import Code

from .http import ApiError

DOCS_PATH = "/docs"
ASSETS_PATH = DOCS_PATH + "/assets"
_ASSETS = frozenset({"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png", "favicon-16x16.png"})

# No inline script (the initializer is a file of its own); Swagger UI sets style attributes, and shows
# the schema's inline images (data:); it fetches the document and calls the API from this origin only.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    # The assets change only with the package; revalidating costs a 304.
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _page(title: str) -> str:
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)} - API</title>
<link rel="stylesheet" href="{ASSETS_PATH}/swagger-ui.css">
<link rel="icon" type="image/png" href="{ASSETS_PATH}/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{ASSETS_PATH}/swagger-ui-bundle.js"></script>
<script src="{DOCS_PATH}/init.js"></script>
</body>
</html>
"""


def _initializer(openapi_url: str) -> str:
    return (
        f"window.ui = SwaggerUIBundle({{url: {json.dumps(openapi_url)}, dom_id: '#swagger-ui', deepLinking: true,\n"
        "  presets: [SwaggerUIBundle.presets.apis], layout: 'BaseLayout'});\n"
    )


def serve_api_docs(app: FastAPI, assets: Path = Path(swagger_ui_path)) -> None:
    """Serve Swagger UI for ``app``'s OpenAPI document at ``/docs``, with its files from ``assets``."""
    page = _page(app.title)
    initializer = _initializer(app.openapi_url or "/openapi.json")

    @app.get(DOCS_PATH, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(page, headers=_HEADERS)

    @app.get(DOCS_PATH + "/init.js", include_in_schema=False)
    async def docs_initializer() -> Response:
        return Response(initializer, media_type="text/javascript", headers=_HEADERS)

    @app.get(ASSETS_PATH + "/{name}", include_in_schema=False)
    async def docs_asset(name: str) -> FileResponse:
        if name not in _ASSETS:  # a fixed list: nothing else of the package, no path is ever joined
            raise ApiError(404, Code.NOT_FOUND, f"no such file: {name}")
        return FileResponse(assets / name, headers=_HEADERS)
