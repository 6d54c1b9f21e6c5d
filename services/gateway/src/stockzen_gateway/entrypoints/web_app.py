"""``/app``: the built browser app (``clients/web/dist``), with a single-page-app fallback.

Cache rules: files under ``assets/`` carry a content hash in their name, so they are cached for a
year; everything else (``index.html``, the service worker, the manifest) is revalidated on every
load, so a new release reaches browsers at their next online load. The service worker is served
from ``/app/sw.js``, so its scope is ``/app/`` without any extra header.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, RedirectResponse

from stockzen_contracts import Code
from stockzen_platform.http import ApiError

PREFIX = "/app"
_IMMUTABLE = "public, max-age=31536000, immutable"
_REVALIDATE = "no-cache"
# The app loads nothing from elsewhere and runs no inline script: say so, so an injected one cannot run.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "worker-src 'self'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"
)


def _headers(relative: str) -> dict[str, str]:
    return {
        "Cache-Control": _IMMUTABLE if relative.startswith("assets/") else _REVALIDATE,
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff",
    }


def _inside(root: Path, relative: str) -> Path | None:
    """The file ``relative`` names under ``root``, or ``None`` (missing, a directory, or outside)."""
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root) or not candidate.is_file():
        return None
    return candidate


def mount_web_app(app: FastAPI, directory: Path | None) -> None:
    """Serve the built app at ``/app/`` from ``directory``; without one, ``/app`` answers 404 saying why."""
    router = APIRouter(include_in_schema=False)
    root = directory.resolve() if directory is not None else None

    @router.get(PREFIX)
    async def app_root() -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}/", status_code=308)

    @router.get(PREFIX + "/{path:path}")
    async def app_file(path: str) -> FileResponse:
        if root is None or not (root / "index.html").is_file():
            raise ApiError(404, Code.NOT_FOUND, "the browser app is not built: run `make run` (it builds clients/web)")
        found = _inside(root, path) if path else None
        if found is None:
            if path.startswith("assets/") or path == "sw.js":
                # A missing hashed asset must not turn into HTML that a browser would cache for a year.
                raise ApiError(404, Code.NOT_FOUND, f"no such file: {path}")
            # Any other path is one of the app's own pages: the app routes it.
            return FileResponse(root / "index.html", headers=_headers("index.html"))
        return FileResponse(found, headers=_headers(path))

    app.include_router(router)
