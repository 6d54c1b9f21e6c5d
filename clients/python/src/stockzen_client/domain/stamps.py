"""Per-device stamps that never tie: a hybrid logical clock over milliseconds.

Each change is stamped with the later of now and the device's last stamp plus 1 ms, so the device's
later change always carries the later ``modifiedAt``: it beats its earlier one under the server's
last-writer-wins, even within one millisecond or when the device's clock goes back.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def next_stamp(now_ms: int, last_ms: int | None) -> int:
    """The stamp (ms since the epoch) of the next change: ``max(now, last + 1 ms)``."""
    return now_ms if last_ms is None else max(now_ms, last_ms + 1)


def to_millis(seconds: float) -> int:
    """A clock reading (seconds since the epoch) in whole milliseconds."""
    return round(seconds * 1000)


def stamp_time(stamp_ms: int) -> datetime:
    """A stamp as an aware UTC time (exact: no float on the way)."""
    return _EPOCH + timedelta(milliseconds=stamp_ms)
