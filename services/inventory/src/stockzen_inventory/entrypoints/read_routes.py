"""The read API: products, a product's movement history, and the change feed. Parse, call, answer.

Every route needs the gateway's internal token; the tenant is the one that token names.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from uuid import UUID

from fastapi import APIRouter, Depends, Response

from stockzen_contracts import (
    ChangeFeedPage,
    Code,
    MovementPage,
    ProductPage,
    ProductView,
    WireModel,
)
from stockzen_inventory import services
from stockzen_inventory.domain.feed import InvalidCheckpoint, ResetRequired
from stockzen_inventory.domain.pagination import InvalidCursor
from stockzen_inventory.domain.products import ProductFilter
from stockzen_inventory.metrics import METRICS
from stockzen_platform.http import ApiError
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

from .dependencies import Caller, Reader, require_caller

router = APIRouter(dependencies=[Depends(require_caller)])

_ERRORS = error_responses(401, 404, 422, 503)
_FEED_ERRORS = error_responses(401, 422, 503, resettable=True)


@contextmanager
def _answering_errors() -> Iterator[None]:
    """Turn the service layer's refusals into the API's error answers."""
    try:
        yield
    except (InvalidCursor, InvalidCheckpoint) as exc:
        raise ApiError(422, Code.VALIDATION_ERROR, str(exc)) from None
    except services.ProductNotFound:
        raise ApiError(404, Code.NOT_FOUND, "no such product") from None
    except ResetRequired as exc:
        raise ApiError(409, Code.RESET_REQUIRED, str(exc)) from None


def _json(model: WireModel) -> Response:
    # Serialized once by pydantic-core; response_model only documents the shape.
    return Response(model.model_dump_json(), media_type="application/json")


@router.get(
    "/api/products",
    tags=["products"],
    response_model=ProductPage,
    responses=_ERRORS,
    summary="List live products with their stock",
)
async def list_products(
    caller: Caller,
    reader: Reader,
    q: SearchText = None,
    archived: ArchivedFilter = None,
    cursor: Cursor = None,
    limit: ProductLimit = PRODUCT_PAGE_DEFAULT,
) -> Response:
    """The tenant's live products, ordered by name (case-insensitive), then id."""
    with _answering_errors():
        page = await services.list_products(
            reader, caller.tenant_id, ProductFilter.of(q, archived), cursor=cursor, limit=limit
        )
    return _json(page)


@router.get(
    "/api/products/{product_id}",
    tags=["products"],
    response_model=ProductView,
    responses=_ERRORS,
    summary="One product with its stock",
)
async def get_product(product_id: UUID, caller: Caller, reader: Reader) -> Response:
    """A live product of the tenant; deleted or unknown ids answer 404 ``NOT_FOUND``."""
    with _answering_errors():
        product = await services.get_product(reader, caller.tenant_id, product_id)
    return _json(product)


@router.get(
    "/api/products/{product_id}/movements",
    tags=["products"],
    response_model=MovementPage,
    responses=_ERRORS,
    summary="A product's stock movements, newest first",
)
async def movement_history(
    product_id: UUID,
    caller: Caller,
    reader: Reader,
    cursor: Cursor = None,
    limit: MovementLimit = MOVEMENT_PAGE_DEFAULT,
) -> Response:
    """Movements ordered by ``occurredAt`` then checkpoint, newest first. The cursor is a position,
    not an offset: movements recorded while scrolling never repeat or hide older ones."""
    with _answering_errors():
        page = await services.movement_history(reader, caller.tenant_id, product_id, cursor=cursor, limit=limit)
    return _json(page)


@router.get(
    "/api/sync/changes",
    tags=["sync"],
    response_model=ChangeFeedPage,
    responses=_FEED_ERRORS,
    summary="Every change of the tenant after a checkpoint",
)
async def change_feed(
    caller: Caller,
    reader: Reader,
    checkpoint: FeedCheckpoint = None,
    limit: FeedLimit = FEED_PAGE_DEFAULT,
) -> Response:
    """Product states (upserts and tombstones) and movements after ``checkpoint``, in checkpoint order.

    Pull again from the returned ``checkpoint`` while ``hasMore`` is true. ``409 RESET_REQUIRED``
    means the checkpoint is older than the tombstone retention window (``TOMBSTONE_RETENTION_DAYS``)
    or ahead of the server's data: discard local data and download again without a checkpoint.
    """
    with _answering_errors():
        page = await services.change_feed(reader, caller.tenant_id, checkpoint=checkpoint, limit=limit)
    for entity_type, rows in Counter(change.entity_type.value for change in page.changes).items():
        METRICS.feed_rows.labels(entity_type).inc(rows)
    return _json(page)
