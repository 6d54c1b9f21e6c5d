"""OpenAPI for ``POST /api/sync``, whose body the route reads itself (to judge each item alone)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import TypeAdapter

from stockzen_contracts import CreateProduct, DeleteProduct, RecordStockMovement, SyncRequest, UpdateProduct

_REF = "#/components/schemas/{model}"
SYNC_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SyncRequest"}}},
    }
}


def _sync_request_schemas() -> dict[str, Any]:
    operations = TypeAdapter(list[CreateProduct | UpdateProduct | DeleteProduct | RecordStockMovement]).json_schema(
        ref_template=_REF
    )
    schemas: dict[str, Any] = operations.pop("$defs")
    envelope = SyncRequest.model_json_schema(ref_template=_REF)
    envelope.pop("$defs", None)
    envelope["properties"]["operations"]["items"] = operations["items"]
    schemas["SyncRequest"] = envelope
    return schemas


def document_sync_request(app: FastAPI) -> None:
    """Add the sync request's schemas (each operation kind) to the app's OpenAPI document."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, routes=app.routes)
            document.setdefault("components", {}).setdefault("schemas", {}).update(_sync_request_schemas())
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
