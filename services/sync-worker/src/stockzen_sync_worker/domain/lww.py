"""Last-writer-wins, as the server settles it: clamped client times, then request order, then operation id.

The database compares the encoded versions itself (``products.field_versions``, text in the "C"
collation); this module defines what those versions are and the order they follow, so the rule
is stated once, in plain Python, and tested.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import total_ordering
from uuid import UUID

MAX_SEQUENCE = 9999
"""Request positions are encoded in four digits (a request holds at most 1000 operations)."""


def clamp_modified_at(claimed: datetime, received_at: datetime) -> datetime:
    """A device's clock may run fast: no change counts as later than when the server received it."""
    return min(claimed, received_at).astimezone(UTC)


def write_sequence(claimed: datetime, received_at: datetime, position: int) -> int:
    """The tie-break a write carries after its time: ``1 + position`` in its request when its time was
    clamped, else 0.

    Every clamped write of a request gets the same time (when the request was received), so the
    request's order (the device's own order) decides between them: a device's later edit wins over
    its earlier one. Writes whose own times tie stay decided by operation id alone, whatever
    batches they travel in.
    """
    return min(position + 1, MAX_SEQUENCE) if claimed >= received_at else 0


@total_ordering
@dataclass(frozen=True, slots=True)
class Version:
    """When a write happened (clamped), its place in its request when clamped, and which operation
    made it: the order LWW follows is (time, sequence, operation id)."""

    modified_at: datetime
    operation_id: UUID
    sequence: int = 0

    def _order(self) -> tuple[datetime, int, UUID]:
        return (self.modified_at, self.sequence, self.operation_id)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._order() < other._order()

    def encode(self) -> str:
        """Fixed-width text whose byte order is the version order (time, sequence, operation id)."""
        t = self.modified_at.astimezone(UTC)
        return (
            f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
            f".{t.microsecond:06d}Z|{self.sequence:04d}|{self.operation_id}"
        )

    @classmethod
    def decode(cls, encoded: str) -> Version:
        """The inverse of :meth:`encode` (also reads the older ``time|operation`` form, sequence 0)."""
        when, _, rest = encoded.partition("|")
        sequence, _, operation = rest.rpartition("|")
        return cls(
            datetime.strptime(when, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC),
            UUID(operation),
            int(sequence) if sequence else 0,
        )


def lww_winner(a: Version, b: Version) -> Version:
    """The later write; on equal times the later in its request (when clamped), then the higher operation id."""
    return max(a, b)


def winning_fields(incoming: Version, changed: list[str], field_versions: dict[str, str]) -> list[str]:
    """Which of ``changed`` an incoming write wins, field by field: those it is strictly later for."""
    return [f for f in changed if f not in field_versions or incoming > Version.decode(field_versions[f])]
