"""How the product list is filtered."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProductFilter:
    """Which live products a list shows: matching ``text`` (name, SKU or barcode), and/or ``archived``."""

    text: str | None = None
    archived: bool | None = None

    @classmethod
    def of(cls, text: str | None, archived: bool | None) -> ProductFilter:
        """A filter from request parameters; blank text filters nothing."""
        stripped = text.strip() if text is not None else ""
        return cls(text=stripped or None, archived=archived)


def contains_pattern(text: str) -> str:
    """An ``ILIKE`` pattern matching ``text`` anywhere, its own ``%``, ``_`` and ``\\`` taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
