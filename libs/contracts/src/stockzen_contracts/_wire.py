"""Building blocks shared by every wire model: camelCase aliases, strict bounds, UTC timestamps."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from annotated_types import GroupedMetadata
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
)
from pydantic.alias_generators import to_camel


def _iso_timestamp_only(value: Any) -> Any:
    # pydantic would read numbers as unix time; the contract says ISO-8601 strings.
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError("timestamps must be ISO-8601 strings with a timezone")
    return value


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        # 0001-01-01T00:00:00+05:00 is a valid string whose UTC instant is before year 1.
        raise ValueError("the timestamp is out of range once converted to UTC") from None


def format_utc(value: datetime) -> str:
    """Render an aware datetime as ISO-8601 UTC with microseconds and a ``Z`` suffix (years in four digits)."""
    t = value.astimezone(UTC)
    # strftime's %Y does not pad years before 1000 on glibc, and ISO-8601 readers need four digits.
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}.{t.microsecond:06d}Z"


def storable_text(value: str) -> str:
    """``value`` if Postgres can store and compare it; else :class:`ValueError` (NUL, lone surrogates)."""
    # Postgres text holds neither NUL nor a lone surrogate (UTF-8 cannot encode one); refusing
    # them here makes such an item a VALIDATION_ERROR instead of a failure further down.
    if "\x00" in value:
        raise ValueError("text must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must be valid Unicode (a lone surrogate is not)") from None
    return value


UtcDateTime = Annotated[
    AwareDatetime,
    BeforeValidator(_iso_timestamp_only),
    AfterValidator(_to_utc),
    PlainSerializer(format_utc, return_type=str, when_used="json"),
]
"""A timestamp that must carry a timezone; held in UTC, emitted as ``...Z``."""


@dataclass(frozen=True, slots=True)
class _StorableText(GroupedMetadata):
    """String constraints, then the storable-text check, as one piece of ``Annotated`` metadata."""

    constraints: StringConstraints

    def __iter__(self) -> Iterator[object]:
        yield from self.constraints
        yield AfterValidator(storable_text)


def text(max_length: int, *, min_length: int = 0) -> GroupedMetadata:
    """Constraints of a strict, whitespace-stripped string bounded in length that Postgres can store."""
    return _StorableText(
        StringConstraints(strict=True, strip_whitespace=True, min_length=min_length, max_length=max_length)
    )


def bounded(*, ge: int, le: int) -> Any:
    """Constraints of a strict integer (no floats, numeric strings or booleans) within bounds."""
    return Field(strict=True, ge=ge, le=le)


class WireModel(BaseModel):
    """Base of every wire model: camelCase on the wire, snake_case in Python, nothing unknown."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="forbid",
        frozen=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready, camelCase form of this model."""
        return self.model_dump(mode="json")
