"""The retry schedule: full jitter in a window that grows exponentially and never passes its cap, and a
server's Retry-After honoured up to its own cap."""

from __future__ import annotations

from stockzen_client import Backoff
from stockzen_client.domain.backoff import RETRY_AFTER_CAP


def test_the_delay_grows_with_attempts_within_jittered_bounds() -> None:
    backoff = Backoff(base=1.0, cap=60.0)
    for attempt in range(1, 7):
        ceiling = min(60.0, 2.0 ** (attempt - 1))
        delays = [backoff.delay(attempt) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays), (attempt, min(delays), max(delays))
    assert sum(backoff.delay(6) for _ in range(200)) > sum(backoff.delay(2) for _ in range(200))


def test_the_delay_is_capped_at_a_minute_by_default() -> None:
    assert Backoff().cap == 60.0
    assert max(Backoff().delay(50) for _ in range(500)) <= 60.0
    assert max(Backoff(base=1.0, cap=10.0).delay(50) for _ in range(500)) <= 10.0


def test_the_delay_is_jittered_so_devices_do_not_retry_in_step() -> None:
    backoff = Backoff(base=1.0, cap=60.0)
    assert len({round(backoff.delay(5), 6) for _ in range(50)}) > 40


def test_retry_after_is_honoured_up_to_five_minutes() -> None:
    backoff = Backoff(base=1.0, cap=60.0)
    assert RETRY_AFTER_CAP == 300.0
    assert all(backoff.delay(1, retry_after=20) >= 20 for _ in range(50))
    assert all(backoff.delay(1, retry_after=20) <= 20 for _ in range(50))  # the first window is under 1 s
    assert all(backoff.delay(1, retry_after=86_400) == 300.0 for _ in range(50))  # a hostile server's day
    assert all(backoff.delay(1, retry_after=None) <= 1.0 for _ in range(50))
