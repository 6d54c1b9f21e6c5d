"""The browser app's wire types come from the gateway's OpenAPI: the committed copy must be current."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
COMMITTED = ROOT / "clients" / "web" / "src" / "api" / "openapi.json"


def _dumped_document() -> Any:
    spec = importlib.util.spec_from_file_location("dump_openapi", ROOT / "scripts" / "dump_openapi.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.openapi_document()


def test_committed_openapi_matches_the_gateway() -> None:
    committed = json.loads(COMMITTED.read_text())
    assert committed == json.loads(json.dumps(_dumped_document())), (
        "clients/web/src/api/openapi.json is stale: run "
        "`.venv/bin/python scripts/dump_openapi.py > clients/web/src/api/openapi.json` "
        "then `npm run gen:api` in clients/web"
    )


def test_the_stream_route_is_documented() -> None:
    paths = json.loads(COMMITTED.read_text())["paths"]
    assert "text/event-stream" in paths["/api/sync/stream"]["get"]["responses"]["200"]["content"]
