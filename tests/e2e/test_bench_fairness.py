"""The fairness bench, run at toy sizes so that it cannot rot. The figures come from ``make bench``."""

from __future__ import annotations

import re

import pytest

from bench.fairness import FairnessPlan, run


@pytest.mark.slow
async def test_the_fairness_bench_runs_end_to_end_and_prints_every_figure(capsys: pytest.CaptureFixture[str]) -> None:
    await run(FairnessPlan(seconds=1.0, rounds=1, flood_devices=3, flood_batch=5, quiet_interval=0.2))

    printed = capsys.readouterr().out
    number = r"[\d.]+"
    for label in (r"no tenant ceiling", r"tenant ceiling \d+/min, burst \d+"):
        line = rf"fairness: {label}: quiet tenant p50 {number} ms alone, {number} ms flooded \(median ratio"
        assert re.search(line, printed), printed
    assert re.search(r"flooding tenant: \d+% answered 429, \d+ ops/s admitted", printed), printed
    assert re.search(r"the quiet tenant's p50 is (NOT )?within 2 x alone", printed), printed
