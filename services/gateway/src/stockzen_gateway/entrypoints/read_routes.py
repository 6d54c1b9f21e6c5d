"""Client read routes: authenticated and rate-limited here, answered by the inventory service.

The paths and parameters are inventory's own; the gateway checks the caller and the parameters'
shape, forwards them with an internal token naming the caller, and passes the answer on as it is.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Depends, Request, Response

from stockzen_contracts import (
    ChangeFeedPage,
    Code,
    MovementPage,
    ProductPage,
    ProductView,
)
from stockzen_gateway.ports import InventoryUnavailable
from stockzen_gateway.runtime import GatewayRuntime
from stockzen_platform.http import ApiError, request_id_of
from stockzen_platform.identity import Identity
from stockzen_platform.read_params import (
    FEED_PAGE_DEFAULT,
    MOVEMENT_PAGE_DEFAULT,
    PRODUCT_PAGE_DEFAULT,
    ArchivedFilter,
    Cursor,
    FeedCheckpoint,
    FeedLimit,
    MovementLimit,
    ProductLimit,
    SearchText,
    error_responses,
)

from .dependencies import CurrentIdentity, Runtime, rate_limit

router = APIRouter(dependencies=[Depends(rate_limit(lambda limits: limits.read))])

_ERRORS = error_responses(401, 404, 422, 429, 503)
_FEED_ERRORS = error_responses(401, 422, 429, 503, resettable=True)


async def _forward(
    request: Request, runtime: GatewayRuntime, identity: Identity, path: str, params: dict[str, Any]
) -> Response:
    """Ask inventory for ``path`` with the parameters given, and answer with what it says."""
    present = {name: value for name, value in params.items() if value is not None}
    try:
        answer = await runtime.inventory.get(path, identity, params=present, request_id=request_id_of(request))
    except InventoryUnavailable:
        raise ApiError(
            503, Code.UNAVAILABLE, "the inventory service is unavailable; retry later", {"Retry-After": "5"}
        ) from None
    return Response(answer.body, status_code=answer.status_code, headers=answer.headers)


@router.get(
    "/api/products",
    tags=["products"],
    response_model=ProductPage,
    responses=_ERRORS,
    summary="List live products with their stock",
)
async def list_products(
    request: Request,
    identity: CurrentIdentity,
    runtime: Runtime,
    q: SearchText = None,
    archived: ArchivedFilter = None,
    cursor: Cursor = None,
    limit: ProductLimit = PRODUCT_PAGE_DEFAULT,
) -> Response:
    """The tenant's live products, ordered by name (case-insensitive), then id."""
    return await _forward(
        request, runtime, identity, "/api/products", {"q": q, "archived": archived, "cursor": cursor, "limit": limit}
    )


@router.get(
    "/api/products/{product_id}",
    tags=["products"],
    response_model=ProductView,
    responses=_ERRORS,
    summary="One product with its stock",
)
async def get_product(product_id: UUID, request: Request, identity: CurrentIdentity, runtime: Runtime) -> Response:
    """A live product of the tenant; deleted or unknown ids answer 404 ``NOT_FOUND``."""
    return await _forward(request, runtime, identity, f"/api/products/{product_id}", {})


@router.get(
    "/api/products/{product_id}/movements",
    tags=["products"],
    response_model=MovementPage,
    responses=_ERRORS,
    summary="A product's stock movements, newest first",
)
async def movement_history(
    product_id: UUID,
    request: Request,
    identity: CurrentIdentity,
    runtime: Runtime,
    cursor: Cursor = None,
    limit: MovementLimit = MOVEMENT_PAGE_DEFAULT,
) -> Response:
    """Movements ordered by ``occurredAt`` then checkpoint, newest first. The cursor is a position,
    not an offset: movements recorded while scrolling never repeat or hide older ones."""
    return await _forward(
        request, runtime, identity, f"/api/products/{product_id}/movements", {"cursor": cursor, "limit": limit}
    )


@router.get(
    "/api/sync/changes",
    tags=["sync"],
    response_model=ChangeFeedPage,
    responses=_FEED_ERRORS,
    summary="Every change of the tenant after a checkpoint",
)
async def change_feed(
    request: Request,
    identity: CurrentIdentity,
    runtime: Runtime,
    checkpoint: FeedCheckpoint = None,
    limit: FeedLimit = FEED_PAGE_DEFAULT,
) -> Response:
    """Product states (upserts and tombstones) and movements after ``checkpoint``, in checkpoint order.

    The checkpoint is the one ``POST /api/sync`` returns. Pull again from the returned ``checkpoint``
    while ``hasMore`` is true. ``409 RESET_REQUIRED`` means the checkpoint is older than the tombstone
    retention window (``TOMBSTONE_RETENTION_DAYS``) or ahead of the server's data: discard local data
    and download again without a checkpoint.
    """
    return await _forward(request, runtime, identity, "/api/sync/changes", {"checkpoint": checkpoint, "limit": limit})
