"""The read API's answers: product lists and details, movement history, and the change feed.

Clients parse these leniently (unknown fields are ignored) so that the server may add fields
without breaking them. Cursors and checkpoints are opaque strings: clients send back what they got.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Self
from uuid import UUID

from pydantic import ConfigDict, Field, model_validator

from ._wire import WireModel
from .codes import EntityType
from .payloads import ProductState, StockMovementState

PRODUCT_PAGE_DEFAULT = 50
PRODUCT_PAGE_MAX = 200
MOVEMENT_PAGE_DEFAULT = 50
MOVEMENT_PAGE_MAX = 200
FEED_PAGE_DEFAULT = 100
FEED_PAGE_MAX = 1000
SNAPSHOT_PAGE_DEFAULT = 500
SNAPSHOT_PAGE_MAX = 1000
SEARCH_TEXT_MAX = 200
CURSOR_MAX_LENGTH = 2048  # longer than any cursor the API makes (~1.1 kB for a 200-character name)
CHECKPOINT_MAX_LENGTH = 40
"""Bounds of the read routes' parameters (the gateway and inventory check the same ones)."""


class ProductView(ProductState):
    """A live product with its current stock level (the sum of its ledger)."""

    model_config = ConfigDict(extra="ignore")

    stock_level: int


class ProductPage(WireModel):
    """One page of the product list; ``nextCursor`` is ``null`` on the last page."""

    model_config = ConfigDict(extra="ignore")

    items: list[ProductView]
    next_cursor: str | None


class MovementPage(WireModel):
    """One page of a product's movement history, newest first; ``nextCursor`` is ``null`` on the last."""

    model_config = ConfigDict(extra="ignore")

    items: list[StockMovementState]
    next_cursor: str | None


class ChangeOperation(StrEnum):
    """What a change in the feed does to the client's copy of the entity."""

    UPSERT = "upsert"
    DELETE = "delete"


class Change(WireModel):
    """One entry of the change feed: a product's current state (or tombstone), or a recorded movement.

    Exactly one of ``product`` and ``movement`` is present, as ``entityType`` says; the absent one is
    left out of the JSON.
    """

    model_config = ConfigDict(extra="ignore")

    checkpoint: str
    entity_type: EntityType
    entity_id: UUID
    operation: ChangeOperation
    # Left out of the JSON when absent (a field-level rule, so the OpenAPI schema keeps both shapes).
    product: ProductState | None = Field(default=None, exclude_if=lambda value: value is None)
    movement: StockMovementState | None = Field(default=None, exclude_if=lambda value: value is None)

    @model_validator(mode="after")
    def _carries_its_entity(self) -> Self:
        expected = "product" if self.entity_type is EntityType.PRODUCT else "movement"
        present = [name for name in ("product", "movement") if getattr(self, name) is not None]
        if present != [expected]:
            raise ValueError(f"a {self.entity_type.value} change carries exactly its {expected}")
        return self

    @classmethod
    def of_product(cls, state: ProductState) -> Change:
        """The change a product's current state (``delete`` for a tombstone) stands for."""
        return cls(
            checkpoint=state.checkpoint,
            entity_type=EntityType.PRODUCT,
            entity_id=state.id,
            operation=ChangeOperation.DELETE if state.deleted else ChangeOperation.UPSERT,
            product=state,
        )

    @classmethod
    def of_movement(cls, state: StockMovementState) -> Change:
        """The change a recorded movement stands for (movements are only ever added)."""
        return cls(
            checkpoint=state.checkpoint,
            entity_type=EntityType.STOCK_MOVEMENT,
            entity_id=state.id,
            operation=ChangeOperation.UPSERT,
            movement=state,
        )


class ChangeFeedPage(WireModel):
    """Changes after the client's checkpoint, in checkpoint order, and the checkpoint to pull from next.

    While ``hasMore`` is true the client pulls again at once from ``checkpoint``.
    """

    model_config = ConfigDict(extra="ignore")

    checkpoint: str
    has_more: bool
    changes: list[Change]
    remaining: int = Field(
        default=0,
        ge=0,
        description="at most this many changes follow after `checkpoint` (0 when `hasMore` is false); "
        "an upper bound for progress, never a count to rely on",
    )


class SnapshotPage(WireModel):
    """One page of a first download: live products with their stock level as of one checkpoint.

    Every page of one snapshot carries the same ``checkpoint`` C (the cursor keeps it), and each
    ``stockLevel`` counts exactly the movements up to C, whenever the page is read. After the last
    page (``nextCursor`` is ``null``) the client pulls the change feed from C: the movements after C
    and the products changed since, so it never needs the ledger's history to show correct stock.
    """

    model_config = ConfigDict(extra="ignore")

    checkpoint: str
    items: list[ProductView]
    next_cursor: str | None
    total_products: int | None = Field(
        default=None, description="how many live products the snapshot holds (first page only, else null)"
    )
