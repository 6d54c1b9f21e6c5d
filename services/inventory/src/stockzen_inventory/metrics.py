"""The inventory service's Prometheus series (names are used by infra/ dashboards and alert rules)."""

from __future__ import annotations

from prometheus_client import Counter

from stockzen_contracts import EntityType
from stockzen_platform.http import HttpMetrics


class InventoryMetrics:
    """Every series the inventory service exports, created once per process."""

    def __init__(self) -> None:
        self.http = HttpMetrics("stockzen_inventory")
        self.feed_rows = Counter(
            "stockzen_inventory_feed_rows_total", "Change-feed rows served, by entity type", ["entity_type"]
        )
        # Created at zero so that the dashboard's rate() sees the first rows served.
        for entity_type in EntityType:
            self.feed_rows.labels(entity_type.value)
        self.snapshot_rows = Counter(
            "stockzen_inventory_snapshot_products_total", "Products served in first-download snapshots"
        )


METRICS = InventoryMetrics()
