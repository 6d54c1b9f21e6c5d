"""The retry schedule: grows exponentially, never passes its cap, and is jittered."""

from __future__ import annotations

from stockzen_client import Backoff


def test_the_delay_grows_with_attempts_within_jittered_bounds() -> None:
    backoff = Backoff(base=1.0, cap=60.0)
    for attempt in range(1, 7):
        ceiling = min(60.0, 2.0 ** (attempt - 1))
        delays = [backoff.delay(attempt) for _ in range(200)]
        assert all(0.5 <= d <= ceiling for d in delays), (attempt, min(delays), max(delays))
    assert sum(backoff.delay(6) for _ in range(200)) > sum(backoff.delay(2) for _ in range(200))


def test_the_delay_is_capped() -> None:
    backoff = Backoff(base=1.0, cap=10.0)
    assert max(backoff.delay(50) for _ in range(500)) <= 10.0


def test_the_delay_is_jittered_so_devices_do_not_retry_in_step() -> None:
    backoff = Backoff(base=1.0, cap=60.0)
    assert len({round(backoff.delay(5), 6) for _ in range(50)}) > 40
