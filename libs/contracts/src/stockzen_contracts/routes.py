"""The client API's route paths and the live stream's event names, written once.

The gateway and the inventory service declare their routes from these, and the Python client calls
them by these names; the browser app takes the same paths from the generated OpenAPI schema.
"""

from __future__ import annotations

from enum import StrEnum

SYNC_PATH = "/api/sync"
"""``POST``: push a batch of operations; one result per operation."""

CHANGES_PATH = "/api/sync/changes"
"""``GET``: the tenant's changes after a checkpoint, a page at a time."""

SNAPSHOT_PATH = "/api/sync/snapshot"
"""``GET``: a first download, the live products with their stock as of one checkpoint."""

STREAM_PATH = "/api/sync/stream"
"""``GET``: server-sent events announcing the tenant's new checkpoints (see :class:`StreamEvent`)."""

PRODUCTS_PATH = "/api/products"
"""``GET``: the tenant's live products with their stock, searched and paged."""

PRODUCT_PATH = "/api/products/{product_id}"
"""``GET``: one live product with its stock."""

MOVEMENTS_PATH = "/api/products/{product_id}/movements"
"""``GET``: one product's stock movements, newest first, paged."""

HEALTH_PATH = "/healthz"
"""``GET``: whether the service answers at all (no token needed)."""


class StreamEvent(StrEnum):
    """The ``event:`` names of ``GET /api/sync/stream``."""

    READY = "ready"  # once, when the stream listens: anything committed before it is in the feed
    CHECKPOINT = "checkpoint"  # ``{"checkpoint": "..."}`` each time the tenant's changes commit
