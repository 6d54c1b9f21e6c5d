"""Last-writer-wins, as the server settles it: clamped client times, then operation id.

The database compares the encoded versions itself (``products.field_versions``, text in the "C"
collation); this module defines what those versions are and the order they follow, so the rule
is stated once, in plain Python, and tested.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID


def clamp_modified_at(claimed: datetime, received_at: datetime) -> datetime:
    """A device's clock may run fast: no change counts as later than when the server received it."""
    return min(claimed, received_at).astimezone(UTC)


@dataclass(frozen=True, slots=True, order=True)
class Version:
    """When a write happened (clamped) and which operation made it: the order LWW follows."""

    modified_at: datetime
    operation_id: UUID

    def encode(self) -> str:
        """Fixed-width text whose byte order is the version order (time, then operation id)."""
        t = self.modified_at.astimezone(UTC)
        return (
            f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
            f".{t.microsecond:06d}Z|{self.operation_id}"
        )

    @classmethod
    def decode(cls, encoded: str) -> Version:
        """The inverse of :meth:`encode`."""
        when, _, operation = encoded.partition("|")
        return cls(datetime.strptime(when, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC), UUID(operation))


def lww_winner(a: Version, b: Version) -> Version:
    """The later write; on equal times the higher operation id (any fixed rule would do, this one is stable)."""
    return max(a, b)


def winning_fields(incoming: Version, changed: list[str], field_versions: dict[str, str]) -> list[str]:
    """Which of ``changed`` an incoming write wins, field by field: those it is strictly later for."""
    return [f for f in changed if f not in field_versions or incoming > Version.decode(field_versions[f])]
