"""The read API: products, a product's movement history, and the change feed. Parse, call, answer.

Every route needs the gateway's internal token; the tenant is the one that token names. The routes
(paths, parameters, docs) are declared once, in :mod:`stockzen_platform.read_api`, for this service
and the gateway alike.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import APIRouter, Depends, Response

from stockzen_contracts import Code, WireModel
from stockzen_inventory import services
from stockzen_inventory.domain.feed import InvalidCheckpoint, ResetRequired
from stockzen_inventory.domain.pagination import InvalidCursor
from stockzen_inventory.domain.products import ProductFilter
from stockzen_inventory.metrics import METRICS
from stockzen_inventory.ports import ReadTimedOut
from stockzen_platform.http import ApiError
from stockzen_platform.read_api import (
    ChangeFeedQuery,
    MovementQuery,
    ProductListQuery,
    ProductQuery,
    SnapshotQuery,
    register_all,
)

from .dependencies import Caller, Reader, require_caller

router = APIRouter(dependencies=[Depends(require_caller)])


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
    except ReadTimedOut:
        raise ApiError(
            503,
            Code.UNAVAILABLE,
            "the read took longer than its time limit and was stopped; retry later, or narrow the search",
            {"Retry-After": "5"},
        ) from None


def _json(model: WireModel) -> Response:
    # Serialized once by pydantic-core; response_model only documents the shape.
    return Response(model.model_dump_json(), media_type="application/json")


async def list_products(query: Annotated[ProductListQuery, Depends()], caller: Caller, reader: Reader) -> Response:
    with _answering_errors():
        page = await services.list_products(
            reader,
            caller.tenant_id,
            ProductFilter.of(query.q, query.archived),
            cursor=query.cursor,
            limit=query.limit,
        )
    return _json(page)


async def get_product(query: Annotated[ProductQuery, Depends()], caller: Caller, reader: Reader) -> Response:
    with _answering_errors():
        product = await services.get_product(reader, caller.tenant_id, query.product_id)
    return _json(product)


async def movement_history(query: Annotated[MovementQuery, Depends()], caller: Caller, reader: Reader) -> Response:
    with _answering_errors():
        page = await services.movement_history(
            reader, caller.tenant_id, query.product_id, cursor=query.cursor, limit=query.limit
        )
    return _json(page)


async def change_feed(query: Annotated[ChangeFeedQuery, Depends()], caller: Caller, reader: Reader) -> Response:
    with _answering_errors():
        page = await services.change_feed(reader, caller.tenant_id, checkpoint=query.checkpoint, limit=query.limit)
    for entity_type, rows in Counter(change.entity_type.value for change in page.changes).items():
        METRICS.feed_rows.labels(entity_type).inc(rows)
    return _json(page)


async def snapshot(query: Annotated[SnapshotQuery, Depends()], caller: Caller, reader: Reader) -> Response:
    with _answering_errors():
        page = await services.snapshot(reader, caller.tenant_id, cursor=query.cursor, limit=query.limit)
    METRICS.snapshot_rows.inc(len(page.items))
    return _json(page)


register_all(
    router,
    {
        "list_products": list_products,
        "get_product": get_product,
        "movement_history": movement_history,
        "change_feed": change_feed,
        "snapshot": snapshot,
    },
)
