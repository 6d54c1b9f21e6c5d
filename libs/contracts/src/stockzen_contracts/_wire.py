"""Building blocks shared by every wire model: camelCase aliases, strict bounds, UTC timestamps."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

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
    return value.astimezone(UTC)


def format_utc(value: datetime) -> str:
    """Render an aware datetime as ISO-8601 UTC with microseconds and a ``Z`` suffix."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


UtcDateTime = Annotated[
    AwareDatetime,
    BeforeValidator(_iso_timestamp_only),
    AfterValidator(_to_utc),
    PlainSerializer(format_utc, return_type=str, when_used="json"),
]
"""A timestamp that must carry a timezone; held in UTC, emitted as ``...Z``."""


def text(max_length: int, *, min_length: int = 0) -> StringConstraints:
    """Constraints of a strict, whitespace-stripped string bounded in length."""
    return StringConstraints(strict=True, strip_whitespace=True, min_length=min_length, max_length=max_length)


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
