"""Hypothesis strategies for valid sync operations as a device sends them (raw JSON dicts).

They spell the same meaning in several ways on purpose (timezone offsets, spaces around text,
absent or explicit defaults), the way real clients differ.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

_ZONES = st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))])
_PRODUCT_TEXT = {"name": 200, "sku": 64, "barcode": 64, "unit": 16}
_NUMBERS = {"priceCents": 10**12, "lowStockThreshold": 10**9}


def stamps() -> st.SearchStrategy[str]:
    """ISO-8601 timestamps with an offset, between 1970 and 2100."""
    moments = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1), timezones=_ZONES)
    return moments.map(datetime.isoformat)


def texts(max_size: int, *, min_size: int = 1) -> st.SearchStrategy[str]:
    """Text Postgres can hold (no NUL, no lone surrogate), at most ``max_size`` once stripped,
    sometimes with spaces around it."""
    core = st.text(
        st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), min_size=min_size, max_size=max_size
    ).filter(lambda s: len(s.strip()) >= min_size and len(s.strip()) <= max_size)
    return st.tuples(st.sampled_from(["", " ", "\t"]), core, st.sampled_from(["", " "])).map("".join)


def _field_values() -> dict[str, st.SearchStrategy[Any]]:
    values: dict[str, st.SearchStrategy[Any]] = {field: texts(size) for field, size in _PRODUCT_TEXT.items()}
    values.update({field: st.integers(0, top) for field, top in _NUMBERS.items()})
    values["archived"] = st.booleans()
    return values


@st.composite
def _product_payload(draw: st.DrawFn, *, update: bool) -> dict[str, Any]:
    values = _field_values()
    optional = [f for f in values if f != "name"] if not update else list(values)
    chosen = draw(st.lists(st.sampled_from(optional), unique=True, min_size=1 if update else 0))
    payload = {} if update else {"name": draw(values["name"])}
    for field in chosen:
        nullable = field not in ("name", "archived")
        payload[field] = draw(st.none() | values[field]) if nullable else draw(values[field])
    return payload


@st.composite
def _movement_payload(draw: st.DrawFn) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "productId": str(draw(st.uuids())),
        "kind": draw(st.sampled_from(["entry", "exit"])),
        "quantity": draw(st.integers(1, 10**9)),
    }
    if draw(st.booleans()):
        payload["reason"] = draw(st.none() | texts(500, min_size=0))
    if draw(st.booleans()):
        payload["occurredAt"] = draw(st.none() | stamps())
    return payload


@st.composite
def operations(draw: st.DrawFn, tenant_id: uuid.UUID) -> dict[str, Any]:
    """One valid operation of any kind, for ``tenant_id``."""
    entity, kind = draw(
        st.sampled_from(
            [("product", "create"), ("product", "update"), ("product", "delete"), ("stockMovement", "create")]
        )
    )
    if entity == "stockMovement":
        payload = draw(_movement_payload())
    elif kind == "delete":
        payload = {}
    else:
        payload = draw(_product_payload(update=kind == "update"))
    operation_id = str(draw(st.uuids()))
    return {
        "operationId": operation_id,
        "idempotencyKey": operation_id,
        "entityType": entity,
        "entityId": str(draw(st.uuids())),
        "operationType": kind,
        "tenantId": str(tenant_id),
        "modifiedAt": draw(stamps()),
        "payload": payload,
    }
