"""The read API's query parameters, declared once for the gateway and the inventory service alike
(both serve the same routes: the gateway checks and documents them, inventory answers them)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query
from pydantic import AfterValidator

from stockzen_contracts import (
    CHECKPOINT_MAX_LENGTH,
    CURSOR_MAX_LENGTH,
    FEED_PAGE_DEFAULT,
    FEED_PAGE_MAX,
    MOVEMENT_PAGE_DEFAULT,
    MOVEMENT_PAGE_MAX,
    PRODUCT_PAGE_DEFAULT,
    PRODUCT_PAGE_MAX,
    SEARCH_TEXT_MAX,
    SNAPSHOT_PAGE_DEFAULT,
    SNAPSHOT_PAGE_MAX,
    ErrorBody,
    storable_text,
)

Cursor = Annotated[
    str | None,
    Query(max_length=CURSOR_MAX_LENGTH, description="`nextCursor` of the previous page; omit for the first page"),
]
SearchText = Annotated[
    str | None,
    AfterValidator(lambda text: None if text is None else storable_text(text)),
    Query(max_length=SEARCH_TEXT_MAX, description="case-insensitive text found in the name, SKU or barcode"),
]
ArchivedFilter = Annotated[bool | None, Query(description="only archived (true) or unarchived (false) products")]
ProductLimit = Annotated[int, Query(ge=1, le=PRODUCT_PAGE_MAX)]
MovementLimit = Annotated[int, Query(ge=1, le=MOVEMENT_PAGE_MAX)]
FeedLimit = Annotated[int, Query(ge=1, le=FEED_PAGE_MAX)]
SnapshotLimit = Annotated[int, Query(ge=1, le=SNAPSHOT_PAGE_MAX)]
FeedCheckpoint = Annotated[
    str | None,
    Query(
        max_length=CHECKPOINT_MAX_LENGTH,
        description="the last checkpoint the client holds; omit it for a first download",
    ),
]


def error_responses(*statuses: int, resettable: bool = False) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for a read route: the error shape for each status (and 409 for the feed)."""
    documented: dict[int | str, dict[str, Any]] = {status: {"model": ErrorBody} for status in statuses}
    if resettable:
        documented[409] = {"model": ErrorBody, "description": "RESET_REQUIRED: the checkpoint cannot be resumed from"}
    return documented


__all__ = [
    "FEED_PAGE_DEFAULT",
    "MOVEMENT_PAGE_DEFAULT",
    "PRODUCT_PAGE_DEFAULT",
    "SNAPSHOT_PAGE_DEFAULT",
    "ArchivedFilter",
    "Cursor",
    "FeedCheckpoint",
    "FeedLimit",
    "MovementLimit",
    "ProductLimit",
    "SearchText",
    "SnapshotLimit",
    "error_responses",
]
