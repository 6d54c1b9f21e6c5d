"""What the simulated devices send: mostly stock movements, some product edits, a few conflicts and duplicates.

Each device belongs to one tenant and edits that tenant's products. A product edit carries a
``modifiedAt`` a little in the past, so edits from different devices race and some lose
(``conflict``); a few operations of a device's previous batch are sent again (``duplicate``).
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.support.ops import movement, op

EDIT_SHARE = 0.06
DUPLICATE_SHARE = 0.03


@dataclass
class Device:
    """One simulated device: its tenant, the products it may touch, and what it sent last."""

    tenant_id: uuid.UUID
    user_id: str
    products: list[uuid.UUID]
    rng: random.Random
    last_batch: list[dict[str, Any]] = field(default_factory=list)

    def next_batch(self, size: int) -> list[dict[str, Any]]:
        """``size`` operations, in the proportions described in the module docstring."""
        batch: list[dict[str, Any]] = []
        seen: set[str] = set()
        for _ in range(size):
            roll = self.rng.random()
            if roll < DUPLICATE_SHARE and self.last_batch:
                again = self.rng.choice(self.last_batch)
                if again["operationId"] not in seen:  # a batch never repeats one of its own operations
                    batch.append(again)
                    seen.add(again["operationId"])
                    continue
            if roll < DUPLICATE_SHARE + EDIT_SHARE:
                batch.append(self._edit())
            else:
                product = self.rng.choice(self.products)
                kind = "entry" if self.rng.random() < 0.7 else "exit"
                batch.append(movement(self.tenant_id, product, kind, self.rng.randint(1, 5)))
            seen.add(batch[-1]["operationId"])
        self.last_batch = batch
        return batch

    def _edit(self) -> dict[str, Any]:
        # Up to two seconds in the past: an edit that another device made later wins (a conflict).
        when = datetime.now(UTC) - timedelta(milliseconds=self.rng.randint(0, 2000))
        fields = {"priceCents": self.rng.randint(100, 9999)}
        return op(
            self.tenant_id, "product", "update", fields, entity_id=self.rng.choice(self.products), modified_at=when
        )


def movement_rows(
    tenant_id: uuid.UUID, product_id: uuid.UUID, count: int, first_checkpoint: int
) -> list[tuple[Any, ...]]:
    """Stock movement rows as the ledger stores them (for the raw-insert baseline)."""
    now = datetime.now(UTC)
    return [
        (tenant_id, uuid.uuid4(), uuid.uuid4(), product_id, "entry", 1 + i % 5, None, now, first_checkpoint + i)
        for i in range(count)
    ]
