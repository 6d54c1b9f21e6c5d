"""Runs one case of the client spec (``clients/spec/*.json``, format in its README) against the real
Python client: its store, its engine and its ``StockzenClient``, talking through ``httpx.MockTransport``
to a server the case scripts, on a clock the runner holds.

- Names are ids: each name (``p1``, ``m1``) stands for one UUID in the case; a product the device
  creates, and a movement it records, take the id the client made.
- ``given``: a first sync against the scripted server (a snapshot of the given products at checkpoint
  ``10``), then the device starts again (a new client on the same profile), so it begins as a device
  that starts. ``online: false``: the runner lets no request through at all.
- The clock is frozen at ``given.clock`` and moves by ``clockSteps`` between the device's steps; before
  each sync it moves an hour on, past any backoff (at most 60 s, or a ``Retry-After`` capped at 300 s),
  so each sync sends every queued change the rules allow.
- Each kind of request takes the next scripted answer of its kind; one the script does not cover is
  answered ``applied`` for each operation, with an empty feed page, or with an empty snapshot. Every
  scripted answer must be used by the end of the case.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from stockzen_client import EngineSettings, InvalidChange, Profile, StockzenClient, SyncState
from stockzen_contracts import (
    CHANGES_PATH,
    HEALTH_PATH,
    SNAPSHOT_PATH,
    SYNC_PATH,
    Change,
    ChangeFeedPage,
    ProductState,
    ProductView,
    SnapshotPage,
    StockMovementState,
    SyncResponse,
)
from tests.support.fake_gateway import SERVER_URL
from tests.unit.client.conftest import device_token

SPEC_DIR = Path(__file__).resolve().parents[3] / "clients" / "spec"
GIVEN_CHECKPOINT = 10
DEFAULT_CLOCK = "2026-01-01T00:00:00.000Z"
PAST_ANY_BACKOFF = 3600.0  # seconds: more than the backoff's cap (60 s) and Retry-After's (300 s)

CASE_KEYS = {"name", "given", "device", "server", "syncs", "expect"}
GIVEN_KEYS = {"products", "online", "clock", "clockSteps"}
EXPECT_KEYS = {"products", "outbox", "state", "notices", "requests", "stamps"}
PRODUCT_KEYS = {"id", "name", "sku", "barcode", "unit", "priceCents", "lowStockThreshold", "archived", "stockLevel"}
STEP_KEYS = {
    "create": {"do", "product", "fields"},
    "update": {"do", "product", "fields"},
    "delete": {"do", "product"},
    "movement": {"do", "id", "product", "kind", "quantity"},
}
RESULT_KEYS = {"for", "status", "code", "message", "retryable", "serverState"}
MOVEMENT_KEYS = {"id", "product", "kind", "quantity"}


class SpecError(AssertionError):
    """The case does not follow the spec's format (a typo in a key, an answer of no known kind)."""


def case_files() -> list[Path]:
    """Every spec file, by name."""
    return sorted(SPEC_DIR.glob("*.json"))


def read_cases() -> tuple[list[dict[str, Any]], list[str]]:
    """Every case the files hold that can be read, and what could not be (an unreadable file, a case
    without a name). Used to parametrize the runner: a file that cannot be read must not stop the
    others from running, and the check that every case ran reports it."""
    cases: list[dict[str, Any]] = []
    problems: list[str] = []
    for path in case_files():
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            problems.append(f"{path.name}: {exc}")
            continue
        if not isinstance(loaded, list):
            problems.append(f"{path.name}: not a list of cases")
            continue
        for index, case in enumerate(loaded):
            if isinstance(case, dict) and isinstance(case.get("name"), str):
                cases.append(case)
            else:
                problems.append(f"{path.name}: case {index} has no name")
    return cases, problems


def names_in_files() -> list[str]:
    """Every case name in the files, read strictly: a file that is not a JSON list of named cases fails."""
    names: list[str] = []
    for path in case_files():
        cases = json.loads(path.read_text(encoding="utf-8"))
        assert isinstance(cases, list), f"{path.name} is not a list of cases"
        names += [case["name"] for case in cases]
    return names


def _check_keys(what: str, data: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = set(data) - allowed
    if unknown:
        raise SpecError(f"{what}: unknown keys {sorted(unknown)} (the spec knows {sorted(allowed)})")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _snake(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower(): value for key, value in fields.items()}


class SpecClock:
    """The device's clock, in whole milliseconds: frozen, moved by the runner only."""

    def __init__(self, start: str) -> None:
        self.ms = round(_parse_time(start).timestamp() * 1000)

    def __call__(self) -> float:
        return self.ms / 1000

    def move(self, milliseconds: int) -> None:
        self.ms += milliseconds

    @property
    def now(self) -> datetime:
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=self.ms)


@dataclass
class Names:
    """Names in the case, each one UUID (random per case); ids the client made are bound to their names."""

    ids: dict[str, uuid.UUID] = field(default_factory=dict)

    def id(self, name: str) -> uuid.UUID:
        return self.ids.setdefault(name, uuid.uuid4())

    def bind(self, name: str, made: uuid.UUID) -> None:
        if name in self.ids and self.ids[name] != made:
            raise SpecError(f"{name!r} is named before the device makes it")
        self.ids[name] = made

    def name(self, made: uuid.UUID | str) -> str:
        wanted = uuid.UUID(str(made))
        return next((name for name, known in self.ids.items() if known == wanted), str(made))


@dataclass
class ScriptedServer:
    """The server the case scripts: answers taken in order, per kind of request."""

    case: dict[str, Any]
    names: Names
    clock: SpecClock
    answers: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    setting_up: bool = True
    online: bool = True
    checkpoint: int = GIVEN_CHECKPOINT
    operations: list[uuid.UUID] = field(default_factory=list)  # the operation each device step made
    requests: list[int] = field(default_factory=list)  # operations per push this case's syncs sent
    sent: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)  # each operation as first sent

    def __post_init__(self) -> None:
        self.answers = {"push": [], "pull": [], "snapshot": []}
        for index, entry in enumerate(self.case.get("server", [])):
            if not isinstance(entry, dict) or len(entry) != 1 or next(iter(entry)) not in self.answers:
                raise SpecError(f"server answer {index} is not one of push, pull, snapshot: {entry!r}")
            kind, answer = next(iter(entry.items()))
            self.answers[kind].append(answer)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def unused(self) -> dict[str, list[dict[str, Any]]]:
        """Scripted answers no request took."""
        return {kind: left for kind, left in self.answers.items() if left}

    def _next(self, kind: str) -> dict[str, Any] | None:
        if self.setting_up:
            return None
        return self.answers[kind].pop(0) if self.answers[kind] else None

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if not self.online:
            raise httpx.ConnectError("the platform is offline", request=request)
        path = request.url.path
        if path == HEALTH_PATH:
            return httpx.Response(200, json={"status": "ok"})
        if path == SYNC_PATH and request.method == "POST":
            return self._push(request, json.loads(request.content)["operations"])
        if path == CHANGES_PATH:
            return self._pull(request.url.params.get("checkpoint"))
        if path == SNAPSHOT_PATH:
            return self._snapshot()
        return httpx.Response(404, json={"code": "NOT_FOUND", "message": f"no route {path} in the spec's server"})

    # --- push ----------------------------------------------------------------------------------

    def _push(self, request: httpx.Request, operations: list[dict[str, Any]]) -> httpx.Response:
        if self.setting_up:
            raise SpecError("the device pushed while its given state was set up")
        answer = self._next("push") or {"status": 200, "results": []}
        _check_keys("a push answer", answer, {"status", "results", "code", "message", "retryAfter", "transport"})
        if answer.get("transport") == "refused":
            raise httpx.ConnectError("connection refused", request=request)
        self.requests.append(len(operations))
        for operation in operations:
            self.sent.setdefault(uuid.UUID(operation["operationId"]), operation)
        if answer.get("transport") == "lost":
            raise httpx.ReadError("the server applied the batch; its answer never came", request=request)
        if "transport" in answer:
            raise SpecError(f"unknown transport failure {answer['transport']!r}")
        status = answer["status"]
        if status not in (200, 202):
            headers = {"Retry-After": str(answer["retryAfter"])} if "retryAfter" in answer else None
            body = {"code": answer.get("code", "FAILED"), "message": answer.get("message", "refused by the spec")}
            return httpx.Response(status, json=body, headers=headers)
        listed: dict[int, dict[str, Any]] = {}
        for result in answer.get("results", []):
            _check_keys("a result", result, RESULT_KEYS)
            listed[result["for"]] = result
        step_of = {operation: step for step, operation in enumerate(self.operations)}
        carried = [step_of[uuid.UUID(op["operationId"])] for op in operations]
        if set(listed) - set(carried):
            raise SpecError(f"results for operations {sorted(set(listed) - set(carried))} the request did not carry")
        results = [
            self._result(op["operationId"], listed.get(step, {"status": "applied"}))
            for op, step in zip(operations, carried, strict=True)
        ]
        response = SyncResponse.model_validate(
            {"checkpoint": str(self.checkpoint), "serverTime": _iso(self.clock.now), "results": results}
        )
        return httpx.Response(status, json=response.to_wire())

    def _result(self, operation_id: str, result: Mapping[str, Any]) -> dict[str, Any]:
        wire: dict[str, Any] = {"operationId": operation_id, "status": result["status"]}
        for key in ("code", "message", "retryable"):
            if key in result:
                wire[key] = result[key]
        if "serverState" in result:
            wire["serverState"] = self._product(result["serverState"]).to_wire()
        return wire

    # --- pull ----------------------------------------------------------------------------------

    def _pull(self, since: str | None) -> httpx.Response:
        answer = self._next("pull") or {"changes": []}
        _check_keys("a pull answer", answer, {"changes", "status", "code", "message"})
        if "status" in answer:
            body = {"code": answer.get("code", "FAILED"), "message": answer.get("message", "refused by the spec")}
            return httpx.Response(answer["status"], json=body)
        base = int(since) if since is not None else self.checkpoint
        changes = [self._change(change, base + n) for n, change in enumerate(answer["changes"], start=1)]
        at = base + len(changes)
        self.checkpoint = max(self.checkpoint, at)
        page = ChangeFeedPage(checkpoint=str(at), has_more=False, changes=changes)
        return httpx.Response(200, json=page.to_wire())

    def _change(self, change: Mapping[str, Any], checkpoint: int) -> Change:
        _check_keys("a feed change", change, {"product", "deleted", "movement"})
        if len(change) != 1:
            raise SpecError(f"a feed change is one of product, deleted, movement: {change!r}")
        if "product" in change:
            return Change.of_product(self._product(change["product"], checkpoint))
        if "deleted" in change:
            tombstone = {"id": change["deleted"], "name": None}
            return Change.of_product(self._product(tombstone, checkpoint, deleted=True))
        movement = change["movement"]
        _check_keys("a feed movement", movement, MOVEMENT_KEYS)
        return Change.of_movement(
            StockMovementState(
                id=self.names.id(movement["id"]),
                product_id=self.names.id(movement["product"]),
                kind=movement["kind"],
                quantity=movement["quantity"],
                reason=None,
                occurred_at=self.clock.now,
                checkpoint=str(checkpoint),
            )
        )

    def _product(
        self, fields: Mapping[str, Any], checkpoint: int | None = None, *, deleted: bool = False
    ) -> ProductState:
        _check_keys("a product", fields, PRODUCT_KEYS - {"stockLevel"})
        return ProductState.model_validate(
            {
                "name": None, "sku": None, "barcode": None, "unit": None, "priceCents": None,
                "lowStockThreshold": None, "archived": False,
                **fields,
                "id": str(self.names.id(fields["id"])), "deleted": deleted, "modifiedAt": _iso(self.clock.now),
                "checkpoint": str(checkpoint if checkpoint is not None else self.checkpoint),
            }
        )  # fmt: skip

    # --- snapshot ------------------------------------------------------------------------------

    def _snapshot(self) -> httpx.Response:
        if self.setting_up:
            products = self.case.get("given", {}).get("products", [])
        else:
            answer = self._next("snapshot") or {"products": []}
            _check_keys("a snapshot answer", answer, {"products"})
            products = answer["products"]
        items = []
        for product in products:
            _check_keys("a snapshot product", product, PRODUCT_KEYS)
            state = self._product({k: v for k, v in product.items() if k != "stockLevel"})
            items.append(
                ProductView.model_validate({**state.model_dump(), "stock_level": product.get("stockLevel", 0)})
            )
        page = SnapshotPage(checkpoint=str(self.checkpoint), items=items, next_cursor=None, total_products=len(items))
        return httpx.Response(200, json=page.to_wire())


@dataclass
class Outcome:
    """What the device shows after the case's syncs, in the spec's terms; and what the script left."""

    seen: dict[str, Any]
    unused: dict[str, list[dict[str, Any]]]


def _step(client: StockzenClient, names: Names, step: Mapping[str, Any]) -> None:
    kind = step.get("do")
    if kind not in STEP_KEYS:
        raise SpecError(f"unknown device step {kind!r}")
    _check_keys(f"a {kind} step", step, STEP_KEYS[kind])
    if kind == "create":
        fields = _snake(step["fields"])
        names.bind(step["product"], client.add_product(fields.pop("name"), **fields))
    elif kind == "update":
        client.edit_product(names.id(step["product"]), **_snake(step["fields"]))
    elif kind == "delete":
        client.remove_product(names.id(step["product"]))
    else:
        product = names.id(step["product"])
        record = client.stock_in if step["kind"] == "entry" else client.stock_out
        try:
            movement = record(product, step["quantity"])
        except InvalidChange:
            # A movement for a product this device does not show (the server has not seen it either):
            # the public methods refuse it, so it is queued the way they queue theirs.
            movement = uuid.uuid4()
            payload = {"productId": str(product), "kind": step["kind"], "quantity": step["quantity"]}
            client._queue("stockMovement", movement, "create", payload)
        names.bind(step["id"], movement)


def _settings() -> EngineSettings:
    return EngineSettings(live=False, lock_wait=5.0)


async def run_case(case: dict[str, Any], directory: Path, tenant_id: uuid.UUID) -> Outcome:
    """Run ``case`` on a new profile under ``directory``; what the device shows in the end."""
    _check_keys("the case", case, CASE_KEYS)
    given = case.get("given", {})
    _check_keys("given", given, GIVEN_KEYS)
    expect = case["expect"]
    _check_keys("expect", expect, EXPECT_KEYS)
    names = Names()
    clock = SpecClock(given.get("clock", DEFAULT_CLOCK))
    server = ScriptedServer(case, names, clock)
    profile = Profile.create(directory / "device", SERVER_URL, device_token(tenant_id))

    first = StockzenClient(profile, transport=server.transport(), settings=_settings(), clock=clock)
    try:
        assert (await first.sync()).state is SyncState.UP_TO_DATE, "the given state did not sync"
    finally:
        await first.aclose()

    server.setting_up, server.online = False, given.get("online", True)
    client = StockzenClient(profile, transport=server.transport(), settings=_settings(), clock=clock)
    try:
        steps = case.get("device", [])
        moves = given.get("clockSteps", [])
        for index, step in enumerate(steps):
            if index and index - 1 < len(moves):
                clock.move(moves[index - 1])
            _step(client, names, step)
            server.operations.append(client.store.operation_ids()[-1])
        for _ in range(case.get("syncs", 1)):
            clock.move(round(PAST_ANY_BACKOFF * 1000))
            await client.sync()
        return Outcome(_seen(client, names, server, expect), server.unused())
    finally:
        await client.aclose()


def _seen(client: StockzenClient, names: Names, server: ScriptedServer, expect: Mapping[str, Any]) -> dict[str, Any]:
    step_of = {operation: step for step, operation in enumerate(server.operations)}
    products: dict[str, Any] = {}
    for product in client.products():
        name, shown = names.name(product.id), product.to_json()
        wanted = expect.get("products", {}).get(name)
        fields = [key for key in wanted if key in PRODUCT_KEYS] if wanted is not None else sorted(PRODUCT_KEYS - {"id"})
        products[name] = {key: shown[key] for key in fields}
    outbox: list[dict[str, Any]] = []
    for entry in client.outbox():
        held: dict[str, Any] = {"for": step_of.get(entry.operation_id, str(entry.operation_id)), "status": entry.status}
        if entry.status == "failed":
            held["code"] = entry.code
        outbox.append(held)
    notices = [
        {"kind": notice.kind, "product": names.name(notice.product_id or notice.entity_id)}
        for notice in reversed(client.store.notices(limit=100))
    ]
    seen: dict[str, Any] = {
        "products": products,
        "outbox": outbox,
        "state": client.status.state.value,
        "notices": notices,
    }
    if "requests" in expect:
        seen["requests"] = server.requests
    if "stamps" in expect:
        seen["stamps"] = {}
        for key, stamp in expect["stamps"].items():
            sent = server.sent.get(server.operations[int(key)])
            actual = _parse_time(sent["modifiedAt"]) if sent else None
            # Compared as instants: the Python client writes microseconds, the spec milliseconds.
            seen["stamps"][key] = stamp if actual == _parse_time(stamp) else (sent or {}).get("modifiedAt")
    return seen
