"""The benchmark's code, run at toy sizes so that it cannot rot. It measures nothing here: the figures
come from ``make bench``, never from a test."""

from __future__ import annotations

import re

import pytest

from bench import large_tenant, queue_types
from bench.throughput import Plan, run


async def test_the_bench_runs_end_to_end_and_prints_every_figure(capsys: pytest.CaptureFixture[str]) -> None:
    await run(
        Plan(
            sizes=(1, 10),
            seconds=0.5,
            devices=2,
            tenants=2,
            ledger_rows=400,
            single_requests=3,
            wrk_connections=(2,),  # wrk (Debian's package, installed by scripts/ensure_tools.sh), 1 s
            wrk_tenants=2,
        )
    )

    printed = capsys.readouterr().out
    for configuration in ("1w+1g", "2w+2g"):
        for size in (1, 10):
            row = re.search(rf"^{re.escape(configuration)}\s+{size}\s+(\d+)\s", printed, re.MULTILINE)
            assert row is not None, printed
            assert int(row.group(1)) > 0, printed  # operations were applied in that run
    assert re.search(r"scale-out, batch 10: 2w\+2g / 1w\+1g = \d+\.\d\d", printed), printed
    assert re.search(r"ledger: empty \d+ ops/s, holding \d+ movements \d+ ops/s", printed), printed
    assert re.search(r"redis: \d+ bytes per deduped operation", printed), printed
    assert re.search(r"group commit, 1w\+1g, batch 1: \d+\.\d\d messages per group", printed), printed
    assert re.search(r"one operation per request: gateway p50 [\d.]+ ms, direct FastAPI -> Postgres p50", printed)
    wrk = re.search(
        r"single-operation requests \(wrk, 2 connections\): (\d+) requests/s, p50 [\d.]+ ms, p99 [\d.]+ ms, "
        r"[\d.]+ x the batch-10 throughput; 0 not 200, 0 socket errors",
        printed,
    )
    assert wrk is not None, printed
    assert int(wrk.group(1)) > 0, printed
    assert re.search(r"CPU us per request, 2 connections: worker \d+, gateway \d+, .*postgres \d+", printed), printed
    assert "'pending'" not in printed, printed  # every answer was final


async def test_the_large_tenant_bench_runs_end_to_end_and_prints_every_figure(
    capsys: pytest.CaptureFixture[str],
) -> None:
    await large_tenant.run(large_tenant.LargePlan(sizes=(600,), products=60, devices=2, clicks=2))

    printed = capsys.readouterr().out
    for figure in (
        r"large tenant 600: 60 products, 600 movements",
        r"seeded through the API: [\d.]+ s, [\d,]+ operations/s",
        r"plain pull, whole feed: [\d.]+ s, 660 rows",
        r"plain pull, snapshot \+ feed: [\d.]+ s, 60 rows",
        r"python first sync: [\d.]+ s = [\d.]+ x whole feed",
        r"python cli: --help [\d.]+ x, status [\d.]+ x",
        r"browser first sync: [\d.]+ s = [\d.]+ x whole feed",
        r"browser clicks: median \d+ ms, p95 \d+ ms \(2\)",
        r"browser opens: median \d+ ms",
        r"browser searches: median \d+ ms",
        r"browser heap [\d.]+ MB, stored [\d.]+ MB",
    ):
        assert re.search(figure, printed), (figure, printed)


@pytest.mark.cluster
@pytest.mark.slow
async def test_the_queue_type_bench_runs_on_a_cluster_of_its_own_and_prints_every_figure(
    capsys: pytest.CaptureFixture[str],
) -> None:
    await queue_types.run(sizes=(1,), seconds=0.5, rounds=1, devices=2, tenants=1)

    printed = capsys.readouterr().out
    for label in ("classic, 1 node", "quorum, 3 nodes"):
        row = re.search(rf"^{re.escape(label)}\s+1\s+(\d+)\s+[\d.]+\s+0\s+\d+$", printed, re.MULTILINE)
        assert row is not None, printed
        assert int(row.group(1)) > 0, printed  # operations were applied through that broker, none got a 5xx
    assert re.search(r"quorum / classic, batch 1: \d+\.\d\d \(median \d+\.\d\d\)", printed), printed
