"""The read API, declared once: every read route's path, summary, description, response model,
parameters and error documentation, which the gateway and the inventory service both register from.

The gateway checks and documents the routes, then forwards them; inventory answers them. Each
service adds only what is its own: its endpoint, and the errors only it can answer (the gateway's 429).

This module does not use ``from __future__ import annotations``: FastAPI reads the query classes'
annotations at runtime, and a class (unlike a function) carries no globals to resolve strings in.
"""

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any
from uuid import UUID

from fastapi import APIRouter

from stockzen_contracts import (
    CHANGES_PATH,
    MOVEMENTS_PATH,
    PRODUCT_PATH,
    PRODUCTS_PATH,
    SNAPSHOT_PATH,
    ChangeFeedPage,
    MovementPage,
    ProductPage,
    ProductView,
    SnapshotPage,
    WireModel,
)

from .read_params import (
    FEED_PAGE_DEFAULT,
    MOVEMENT_PAGE_DEFAULT,
    PRODUCT_PAGE_DEFAULT,
    SNAPSHOT_PAGE_DEFAULT,
    ArchivedFilter,
    Cursor,
    FeedCheckpoint,
    FeedLimit,
    MovementLimit,
    ProductLimit,
    SearchText,
    SnapshotLimit,
    error_responses,
)

CALLER_BUDGET_HEADER = "X-Caller-Budget-Ms"
"""How many milliseconds the gateway will wait for inventory's answer: a read still running then
runs for nobody, so inventory stops it there (it only ever shortens inventory's own limit)."""


@dataclass(frozen=True)
class ProductListQuery:
    """``GET /api/products``: search, filter and page through the tenant's live products."""

    q: SearchText = None
    archived: ArchivedFilter = None
    cursor: Cursor = None
    limit: ProductLimit = PRODUCT_PAGE_DEFAULT


@dataclass(frozen=True)
class ProductQuery:
    """``GET /api/products/{product_id}``."""

    product_id: UUID


@dataclass(frozen=True)
class MovementQuery:
    """``GET /api/products/{product_id}/movements``: one product's movements, a page at a time."""

    product_id: UUID
    cursor: Cursor = None
    limit: MovementLimit = MOVEMENT_PAGE_DEFAULT


@dataclass(frozen=True)
class ChangeFeedQuery:
    """``GET /api/sync/changes``: the tenant's changes after a checkpoint, a page at a time."""

    checkpoint: FeedCheckpoint = None
    limit: FeedLimit = FEED_PAGE_DEFAULT


@dataclass(frozen=True)
class SnapshotQuery:
    """``GET /api/sync/snapshot``: a first download, a page of products at a time."""

    cursor: Cursor = None
    limit: SnapshotLimit = SNAPSHOT_PAGE_DEFAULT


@dataclass(frozen=True)
class ReadRoute:
    """One read route as both services declare it."""

    name: str
    path: str
    summary: str
    description: str
    tag: str
    response_model: type[WireModel]
    query: type[Any]
    errors: tuple[int, ...]
    resettable: bool = False

    def target(self, query: Any) -> tuple[str, dict[str, Any]]:
        """The concrete path and the query parameters given (``None`` left out) for a parsed ``query``."""
        values = {field.name: getattr(query, field.name) for field in fields(query)}
        in_path = set(re.findall(r"{(\w+)}", self.path))
        path = self.path.format(**{name: values[name] for name in in_path})
        return path, {name: value for name, value in values.items() if name not in in_path and value is not None}

    def register(self, router: APIRouter, endpoint: Callable[..., Any], *, also_errors: tuple[int, ...] = ()) -> None:
        """Add this route to ``router``, answered by ``endpoint``; ``also_errors`` are the service's own."""
        router.add_api_route(
            self.path,
            endpoint,
            methods=["GET"],
            name=self.name,
            summary=self.summary,
            description=self.description,
            tags=[self.tag],
            response_model=self.response_model,
            responses=error_responses(*sorted({*self.errors, *also_errors}), resettable=self.resettable),
        )


LIST_PRODUCTS = ReadRoute(
    name="list_products",
    path=PRODUCTS_PATH,
    summary="List live products with their stock",
    description="The tenant's live products, ordered by name (case-insensitive), then id.",
    tag="products",
    response_model=ProductPage,
    query=ProductListQuery,
    errors=(401, 404, 422, 503),
)
GET_PRODUCT = ReadRoute(
    name="get_product",
    path=PRODUCT_PATH,
    summary="One product with its stock",
    description="A live product of the tenant; deleted or unknown ids answer 404 ``NOT_FOUND``.",
    tag="products",
    response_model=ProductView,
    query=ProductQuery,
    errors=(401, 404, 422, 503),
)
MOVEMENT_HISTORY = ReadRoute(
    name="movement_history",
    path=MOVEMENTS_PATH,
    summary="A product's stock movements, newest first",
    description="Movements ordered by ``occurredAt`` then checkpoint, newest first. The cursor is a position,\n"
    "not an offset: movements recorded while scrolling never repeat or hide older ones.",
    tag="products",
    response_model=MovementPage,
    query=MovementQuery,
    errors=(401, 404, 422, 503),
)
CHANGE_FEED = ReadRoute(
    name="change_feed",
    path=CHANGES_PATH,
    summary="Every change of the tenant after a checkpoint",
    description="Product states (upserts and tombstones) and movements after ``checkpoint``, in checkpoint order.\n\n"
    "The checkpoint is the one ``POST /api/sync`` returns. Pull again from the returned ``checkpoint``\n"
    "while ``hasMore`` is true. ``409 RESET_REQUIRED`` means the checkpoint is older than the tombstone\n"
    "retention window (``TOMBSTONE_RETENTION_DAYS``) or ahead of the server's data: discard local data\n"
    "and download again without a checkpoint.",
    tag="sync",
    response_model=ChangeFeedPage,
    query=ChangeFeedQuery,
    errors=(401, 422, 503),
    resettable=True,
)

SNAPSHOT = ReadRoute(
    name="snapshot",
    path=SNAPSHOT_PATH,
    summary="A first download: every live product with its stock as of one checkpoint",
    description="For a device with no checkpoint (a new device, or after ``409 RESET_REQUIRED``): the tenant's\n"
    "live products ordered by id, each with ``stockLevel`` as of the snapshot's ``checkpoint`` C, which is\n"
    "the same on every page (the cursor carries it). Follow ``nextCursor`` to the last page, then pull\n"
    "``GET /api/sync/changes?checkpoint=C``: the movements after C and the products changed since.\n"
    "No movement history is needed to show correct stock. ``409 RESET_REQUIRED`` on a later page: the\n"
    "snapshot outlived the tombstone retention window; start again without a cursor.",
    tag="sync",
    response_model=SnapshotPage,
    query=SnapshotQuery,
    errors=(401, 422, 503),
    resettable=True,
)

READ_ROUTES: tuple[ReadRoute, ...] = (LIST_PRODUCTS, GET_PRODUCT, MOVEMENT_HISTORY, CHANGE_FEED, SNAPSHOT)
"""Every read route, in the order both services register them."""


def register_all(router: APIRouter, endpoints: Mapping[str, Callable[..., Any]], **options: Any) -> None:
    """Register every route of :data:`READ_ROUTES`; ``endpoints`` must answer each by name, no more, no less."""
    if set(endpoints) != {route.name for route in READ_ROUTES}:
        raise ValueError(f"endpoints for {sorted(endpoints)}, routes are {[route.name for route in READ_ROUTES]}")
    for route in READ_ROUTES:
        route.register(router, endpoints[route.name], **options)
