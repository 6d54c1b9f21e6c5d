"""The short chaos run: 20 devices of 4 tenants push through every fault once, and nothing is lost,
doubled or diverges (the long run is ``make chaos``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.chaos import FAULTS, Chaos, ChaosConfig
from tests.support.services import ServiceUrls
from tests.support.stack import Stack

pytestmark = pytest.mark.slow


async def test_under_every_fault_nothing_is_lost_doubled_or_diverges(database: ServiceUrls, log_dir: Path) -> None:
    stack = Stack(database, log_dir, name="chaos")
    config = ChaosConfig(tenants=4, devices=20, min_rounds=2, batch_size=4, outage_seconds=1.5, seconds=60)
    report = await Chaos(database, stack, config).run()
    print("\n".join(report.lines()))

    assert report.faults == dict.fromkeys(FAULTS, 1), report.lines()
    assert report.operations >= 20 * 2
    assert report.raced_batches > 0
    assert report.outage_reads == [503], "a read while Postgres is away must say: retry"
    assert report.held, report.lines()
