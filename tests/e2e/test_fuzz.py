"""Fuzzing the running stack: schemathesis over every route of the gateway's OpenAPI with valid tokens,
and hypothesis-made hostile JSON (deep nesting, surrogates, NUL, huge numbers, dates at the edges of
the range, odd unicode) sent to ``POST /api/sync`` and the read routes.

Wanted, for every request: no 5xx; every error is exactly ``{code, message}``; every per-item
refusal says its code and message; and nothing is written for a refused request (each example
signs in as a tenant of its own, which must hold no row once the queue has drained).
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import asyncpg
import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core.result import Ok

from tests.support.ops import create_product, movement
from tests.support.retry import eventually
from tests.support.stack import Stack, queue_counts, user_token

pytestmark = pytest.mark.slow

FUZZ_SETTINGS = settings(
    deadline=None,
    database=None,  # examples are fresh each run; a failure prints the request that caused it
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
HEADER_VALUE = re.compile(r"[\x21-\x7e\x80-\xff](?:[\x20-\x7e\x80-\xff\t]*[\x21-\x7e\x80-\xff])?")
READ_PATHS = ("/api/products", "/api/products/{id}", "/api/products/{id}/movements", "/api/sync/changes")
# The live stream takes no input to fuzz (no parameters, no body) and answers until the gateway ends it;
# its authentication and tenant isolation are tested in test_live_stream.py.
NOT_FUZZED = {"/api/sync/stream"}


class Findings:
    """What the fuzzer saw that breaks a promise, and which tenants were refused outright."""

    def __init__(self) -> None:
        self.broken: list[str] = []
        self.refused_tenants: list[uuid.UUID] = []
        self.statuses: dict[int, int] = {}

    def judge(self, method: str, path: str, status: int, body: bytes, tenant: uuid.UUID, sent: str) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        where = f"{method} {path} -> {status} for {sent[:300]!r}: {body[:300]!r}"
        if status >= 500:
            self.broken.append(f"5xx: {where}")
            return
        try:
            answer = json.loads(body)
        except ValueError:
            self.broken.append(f"not JSON: {where}")
            return
        if status >= 400:
            if not (isinstance(answer, dict) and set(answer) == {"code", "message"} and answer["message"]):
                self.broken.append(f"error not {{code, message}}: {where}")
            if method == "POST":
                self.refused_tenants.append(tenant)
            return
        if method == "POST" and isinstance(answer, dict):
            for result in answer.get("results", []):
                if result["status"] == "rejected" and not (result.get("code") and result.get("message")):
                    self.broken.append(f"rejected item without code and message: {where}")

    async def assert_nothing_written_for_refused(self, stack: Stack, admin: asyncpg.Connection) -> None:
        async def drained() -> bool:
            ready, _ = await asyncio.to_thread(queue_counts, stack.services.amqp_url, stack.queue)
            return ready == 0

        await eventually(drained)
        written = await admin.fetchval(
            """
            SELECT (SELECT count(*) FROM applied_operations WHERE tenant_id = ANY($1::uuid[]))
                 + (SELECT count(*) FROM products WHERE tenant_id = ANY($1::uuid[]))
                 + (SELECT count(*) FROM stock_movements WHERE tenant_id = ANY($1::uuid[]))
            """,
            self.refused_tenants,
        )
        assert written == 0, "a refused request wrote rows"


def _signed_in(tenant: uuid.UUID) -> dict[str, str]:
    return {"Authorization": f"Bearer {user_token(tenant, 'fuzzer')}"}


def _every_case(stack: Stack) -> st.SearchStrategy[schemathesis.Case[Any]]:
    schema = schemathesis.openapi.from_url(f"{stack.gateway_url}/openapi.json")
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"the gateway's OpenAPI does not load: {result.err()}"
        if result.ok().path not in NOT_FUZZED:
            operations.append(result.ok())
    assert {operation.path for operation in operations} >= {"/api/sync", "/api/products", "/api/sync/changes"}
    return st.one_of(
        [operation.as_strategy(generation_mode=mode) for operation in operations for mode in GenerationMode]
    )


async def test_schemathesis_over_every_route_finds_no_5xx_and_only_code_message_errors(
    stack: Stack, admin: asyncpg.Connection
) -> None:
    findings = Findings()
    cases = _every_case(stack)

    @settings(FUZZ_SETTINGS, max_examples=150)
    @given(case=cases)
    def call(case: schemathesis.Case[Any]) -> None:
        tenant = uuid.uuid4()
        response = case.call(base_url=stack.gateway_url, headers=_signed_in(tenant), timeout=30)
        sent = json.dumps(case.body, default=str) if case.body is not None else str(case.query)
        findings.judge(case.method.upper(), case.formatted_path, response.status_code, response.content, tenant, sent)

    await asyncio.to_thread(call)
    assert not findings.broken, findings.broken[:10]
    assert any(status < 300 for status in findings.statuses), findings.statuses  # not refused wholesale
    await findings.assert_nothing_written_for_refused(stack, admin)


# -- hostile JSON -----------------------------------------------------------------------------------

ODD_TEXT = st.text(
    alphabet=st.one_of(
        st.characters(codec=None),  # includes lone surrogates, which json.dumps escapes as \udXXX
        st.sampled_from(["\x00", "\u202e", "\u200b", "\ufeff", "\uffff", "\U0010ffff", "\u0301", "\ud800", "\udfff"]),
    ),
    max_size=40,
)
EDGE_DATES = st.one_of(
    st.sampled_from(
        [
            "0001-01-01T00:00:00+05:00",
            "0001-01-01T00:00:00Z",
            "0999-12-31T23:59:59Z",
            "9999-12-31T23:59:59-05:00",
            "9999-12-31T23:59:59.999999Z",
            "10000-01-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-12-31T23:59:60Z",
            "2026-11-27T12:00:00+24:00",
            "2026-11-27",
            "-0001-01-01T00:00:00Z",
        ]
    ),
    st.builds(
        lambda moment, minutes: moment.replace(tzinfo=UTC).astimezone(timezone(timedelta(minutes=minutes))).isoformat(),
        st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
        st.integers(-23 * 60, 23 * 60),
    ),
)
HUGE_NUMBERS = st.one_of(
    st.integers(-(10**40), 10**40),
    st.sampled_from([2**63, -(2**63) - 1, 2**31, 1e308, -1e308, 0.5, 1e-320]),
    st.floats(allow_nan=False, allow_infinity=False),
)
SCALARS = st.one_of(st.none(), st.booleans(), HUGE_NUMBERS, ODD_TEXT, EDGE_DATES)
JSON_VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ODD_TEXT, inner, max_size=4), max_leaves=12
)


def _deep(depth: int, leaf: str) -> str:
    return "[" * depth + leaf + "]" * depth


@st.composite
def hostile_bodies(draw: st.DrawFn, tenant: uuid.UUID) -> bytes:
    """A sync body with one hostile part: a field of a valid operation, the envelope, or raw nesting."""
    product = uuid.uuid4()
    valid = [create_product(tenant, product), movement(tenant, product, "entry", 2)]
    shape = draw(st.sampled_from(["field", "payload field", "envelope", "nested", "raw"]))
    if shape == "nested":
        depth = draw(st.integers(100, 5_000))
        return ('{"operations": ' + _deep(depth, "{}") + "}").encode()
    if shape == "raw":
        return draw(st.binary(max_size=200))
    if shape == "envelope":
        return json.dumps({"operations": draw(JSON_VALUES), draw(ODD_TEXT): draw(JSON_VALUES)}).encode()
    target = draw(st.sampled_from(valid))
    if shape == "field":
        name = draw(
            st.sampled_from(["operationId", "entityId", "entityType", "operationType", "tenantId", "modifiedAt"])
        )
    else:
        target.setdefault("payload", {})
        name = draw(st.sampled_from(["name", "sku", "priceCents", "quantity", "occurredAt", "kind", "productId"]))
    value = draw(st.one_of(JSON_VALUES, EDGE_DATES, HUGE_NUMBERS, ODD_TEXT))
    (target if shape == "field" else target["payload"])[name] = value
    return json.dumps({"operations": valid}).encode()


def _read_requests(tenant: uuid.UUID) -> st.SearchStrategy[tuple[str, dict[str, str]]]:
    hostile = st.one_of(ODD_TEXT, HUGE_NUMBERS.map(str), EDGE_DATES, st.just("\x00"))
    return st.tuples(
        st.sampled_from(READ_PATHS),
        st.dictionaries(st.sampled_from(["q", "cursor", "checkpoint", "limit", "archived"]), hostile, max_size=3),
    ).map(lambda drawn: (drawn[0].replace("{id}", str(uuid.uuid4())), drawn[1]))


async def test_hostile_json_never_gets_a_5xx_and_a_refused_request_writes_nothing(
    stack: Stack, admin: asyncpg.Connection
) -> None:
    findings = Findings()

    @settings(FUZZ_SETTINGS, max_examples=80)
    @given(data=st.data())
    def push(data: st.DataObject) -> None:
        tenant = uuid.uuid4()
        body = data.draw(hostile_bodies(tenant), label="body")
        headers = [(name.encode(), value.encode()) for name, value in _signed_in(tenant).items()]
        headers.append((b"Content-Type", b"application/json"))
        if data.draw(st.booleans(), label="with Idempotency-Key"):
            key = data.draw(ODD_TEXT.filter(_header_safe), label="key") or "k"
            headers.append((b"Idempotency-Key", key.encode("latin-1")))  # raw bytes, as a client may send them
        with httpx.Client(base_url=stack.gateway_url, timeout=30) as client:
            response = client.post("/api/sync", content=body, headers=headers)
        findings.judge("POST", "/api/sync", response.status_code, response.content, tenant, repr(body))

    @settings(FUZZ_SETTINGS, max_examples=50)
    @given(data=st.data())
    def read(data: st.DataObject) -> None:
        tenant = uuid.uuid4()
        path, params = data.draw(_read_requests(tenant), label="request")
        with httpx.Client(base_url=stack.gateway_url, timeout=30) as client:
            response = client.get(path, params=params, headers=_signed_in(tenant))
        findings.judge("GET", path, response.status_code, response.content, tenant, repr(params))

    await asyncio.to_thread(push)
    await asyncio.to_thread(read)
    assert not findings.broken, findings.broken[:10]
    assert findings.refused_tenants, "no hostile body was refused: the strategy does not reach the edges"
    await findings.assert_nothing_written_for_refused(stack, admin)


def _header_safe(text: str) -> bool:
    """What an HTTP client can put in a header value at all (RFC 9110 field-value, latin-1)."""
    return HEADER_VALUE.fullmatch(text) is not None
