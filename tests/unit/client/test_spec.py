"""The client spec (``clients/spec/*.json``): every case, run against the Python client.

Each case is one test, named by the case. A case in the files that is not collected here (its file
cannot be read, it has no name, or its name is used twice) fails :func:`test_every_case_in_the_files_runs`.
"""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.unit.client.spec_runner import names_in_files, read_cases, run_case

CASES, PROBLEMS = read_cases()


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
async def test_case(case: dict[str, Any], tmp_path: Path, tenant_id: uuid.UUID) -> None:
    outcome = await run_case(case, tmp_path, tenant_id)
    assert outcome.seen == case["expect"]
    assert outcome.unused == {}, "the case scripted answers the device never asked for"


def test_every_case_in_the_files_runs() -> None:
    assert PROBLEMS == []
    in_files = names_in_files()
    collected = [case["name"] for case in CASES]
    twice = sorted(name for name, count in Counter(in_files).items() if count > 1)
    assert twice == [], "a case name used twice: one of them would not run under its own name"
    assert Counter(collected) == Counter(in_files)
    assert len(set(collected)) == len(in_files)
