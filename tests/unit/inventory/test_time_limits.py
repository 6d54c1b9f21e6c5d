"""A read's time limit: the service's own, cut short by the caller's deadline, never lengthened by it."""

from __future__ import annotations

import pytest

from stockzen_inventory.domain.time_limits import CALLER_BUDGET_MAX_MS, caller_deadline, read_budget_ms


def test_the_callers_budget_sets_a_deadline_from_now() -> None:
    assert caller_deadline("2500", now=100.0) == pytest.approx(102.5)


@pytest.mark.parametrize(
    "header", [None, "", "0", "-5", "1.5", "abc", " 100", "\uff11\uff12", str(CALLER_BUDGET_MAX_MS + 1), "9" * 400]
)
def test_a_budget_that_makes_no_sense_is_ignored(header: str | None) -> None:
    assert caller_deadline(header, now=100.0) is None


def test_the_read_gets_the_sooner_of_its_limit_and_the_callers_deadline() -> None:
    assert read_budget_ms(3000, None, now=0.0) == 3000
    assert read_budget_ms(3000, 1.2, now=0.0) == 1200
    assert read_budget_ms(3000, 60.0, now=0.0) == 3000  # a caller's deadline never lengthens a read
    assert read_budget_ms(None, 1.2, now=0.0) == 1200
    assert read_budget_ms(None, None, now=0.0) is None


def test_a_deadline_already_past_leaves_nothing() -> None:
    assert read_budget_ms(3000, 10.0, now=10.0) == 0
    assert read_budget_ms(3000, 10.0, now=11.0) == -1000
