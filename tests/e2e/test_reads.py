"""Reading back end to end: the read routes and the change feed through the gateway, with writes
going through the real worker."""

from __future__ import annotations

import asyncio
import itertools
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from tests.support.ops import create_product, delete_product, movement, update_product
from tests.support.retry import get_within_limits, sync_until_final
from tests.support.stack import Stack, gateway_client, user_token


async def _get(client: httpx.AsyncClient, path: str, **params: str) -> httpx.Response:
    return await get_within_limits(client, path, params)


async def _push(client: httpx.AsyncClient, operations: list[dict[str, Any]]) -> dict[str, Any]:
    """Push until every result is final, as a client does; each must have been applied or settled.

    A retry after a 202 may find its operations already applied by the queued batch (``duplicate``,
    carrying the original outcome) or overtake it (``applied``): both are right.
    """
    response = await sync_until_final(client, operations)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert all(r["status"] in ("applied", "conflict", "duplicate") for r in body["results"]), body
    assert all(r.get("code") in (None, "CONFLICT_RESOLVED") for r in body["results"]), body
    return body


@dataclass
class Pulled:
    """Everything a client pulled, and the checkpoint it holds afterwards."""

    checkpoint: str | None
    changes: list[dict[str, Any]] = field(default_factory=list)

    def ids(self, entity_type: str) -> list[str]:
        return [c["entityId"] for c in self.changes if c["entityType"] == entity_type]


async def _pull(client: httpx.AsyncClient, pulled: Pulled, limit: int = 100) -> bool:
    """Pull one page into ``pulled``; return whether more is waiting."""
    params = {"limit": str(limit)} | ({"checkpoint": pulled.checkpoint} if pulled.checkpoint is not None else {})
    response = await _get(client, "/api/sync/changes", **params)
    assert response.status_code == 200, response.text
    page = response.json()
    pulled.changes.extend(page["changes"])
    pulled.checkpoint = page["checkpoint"]
    more: bool = page["hasMore"]
    return more


async def _pull_all(client: httpx.AsyncClient, checkpoint: str | None, limit: int = 100) -> Pulled:
    pulled = Pulled(checkpoint)
    while await _pull(client, pulled, limit):
        pass
    return pulled


async def test_the_screens_show_products_stock_and_history(gateway: httpx.AsyncClient, tenant_id: uuid.UUID) -> None:
    mug, cup = uuid.uuid4(), uuid.uuid4()
    tag = uuid.uuid4().hex[:8]
    await _push(
        gateway,
        [
            create_product(tenant_id, mug, f"Mug {tag}", sku=f"MUG-{tag}", priceCents=450),
            create_product(tenant_id, cup, f"Cup {tag}", archived=True),
            movement(tenant_id, mug, "entry", 10, occurredAt="2026-01-01T09:00:00Z"),
            movement(tenant_id, mug, "exit", 3, occurredAt="2026-01-02T09:00:00Z"),
        ],
    )
    listed = (await _get(gateway, "/api/products", q=tag)).json()
    assert [(p["name"], p["stockLevel"]) for p in listed["items"]] == [(f"Cup {tag}", 0), (f"Mug {tag}", 7)]
    unarchived = (await _get(gateway, "/api/products", q=f"mug-{tag}", archived="false")).json()
    assert [p["id"] for p in unarchived["items"]] == [str(mug)]
    one = (await _get(gateway, f"/api/products/{mug}")).json()
    assert (one["priceCents"], one["stockLevel"], one["deleted"]) == (450, 7, False)
    history = (await _get(gateway, f"/api/products/{mug}/movements")).json()
    assert [(m["kind"], m["quantity"]) for m in history["items"]] == [("exit", 3), ("entry", 10)]
    assert history["nextCursor"] is None

    await _push(gateway, [delete_product(tenant_id, cup)])
    gone = await _get(gateway, f"/api/products/{cup}")
    assert (gone.status_code, gone.json()["code"]) == (404, "NOT_FOUND")


async def test_inventory_refuses_callers_the_gateway_did_not_vouch_for(stack: Stack, tenant_id: uuid.UUID) -> None:
    async with httpx.AsyncClient(base_url=stack.inventory_url, timeout=10) as direct:
        for headers in ({}, {"Authorization": f"Bearer {user_token(tenant_id)}"}):
            for path in ("/api/products", "/api/sync/changes", f"/api/products/{uuid.uuid4()}/movements"):
                response = await direct.get(path, headers=headers)
                assert (response.status_code, response.json()["code"]) == (401, "UNAUTHORIZED"), path
        assert (await direct.get("/healthz")).status_code == 200


async def test_no_read_route_shows_another_tenants_data(
    stack: Stack, gateway: httpx.AsyncClient, tenant_id: uuid.UUID
) -> None:
    product, tag = uuid.uuid4(), uuid.uuid4().hex
    moved = movement(tenant_id, product, "entry", 4)
    await _push(gateway, [create_product(tenant_id, product, f"Secret {tag}"), moved])
    other_tenant = uuid.uuid4()
    async with gateway_client(stack, other_tenant, "intruder") as intruder:
        await _push(intruder, [create_product(other_tenant, uuid.uuid4(), f"Own {tag}")])
        for path in (f"/api/products/{product}", f"/api/products/{product}/movements"):
            response = await _get(intruder, path)
            assert (response.status_code, response.json()["code"]) == (404, "NOT_FOUND"), path
        listed = (await _get(intruder, "/api/products", q=tag)).json()
        assert [p["name"] for p in listed["items"]] == [f"Own {tag}"]
        feed = await _pull_all(intruder, None)
        seen = {c["entityId"] for c in feed.changes}
        assert str(product) not in seen
        assert moved["entityId"] not in seen
        assert len(feed.ids("product")) == 1
    # And the owner sees its own.
    assert (await _get(gateway, f"/api/products/{product}")).status_code == 200


async def test_a_client_pulling_from_before_its_push_sees_its_changes_once(
    gateway: httpx.AsyncClient, tenant_id: uuid.UUID
) -> None:
    kept, added = uuid.uuid4(), uuid.uuid4()
    await _push(gateway, [create_product(tenant_id, kept, "Mug")])
    before = await _pull_all(gateway, None)
    assert before.ids("product") == [str(kept)]

    moves = [movement(tenant_id, added, "entry", 5), movement(tenant_id, kept, "entry", 2)]
    pushed = await _push(
        gateway,
        [
            create_product(tenant_id, added, "Cup"),
            update_product(tenant_id, kept, name="Big mug"),
            *moves,
            update_product(tenant_id, added, priceCents=300),
        ],
    )
    after = await _pull_all(gateway, before.checkpoint, limit=2)
    assert Counter(after.ids("product")) == Counter({str(kept): 1, str(added): 1})
    assert Counter(after.ids("stockMovement")) == Counter(m["entityId"] for m in moves)
    states = {c["entityId"]: c["product"] for c in after.changes if c["entityType"] == "product"}
    assert states[str(kept)]["name"] == "Big mug"
    assert states[str(added)]["priceCents"] == 300  # the latest state, not the create's
    # The push's checkpoint and the feed's are the same token.
    assert after.checkpoint == pushed["checkpoint"]
    again = await _pull_all(gateway, pushed["checkpoint"])
    assert (again.changes, again.checkpoint) == ([], pushed["checkpoint"])


async def test_tombstones_reach_the_feed_until_purged_then_old_checkpoints_must_reset(
    gateway: httpx.AsyncClient, admin: asyncpg.Connection, tenant_id: uuid.UUID
) -> None:
    doomed, kept = uuid.uuid4(), uuid.uuid4()
    await _push(gateway, [create_product(tenant_id, doomed, "Doomed"), create_product(tenant_id, kept, "Kept")])
    created = await _pull_all(gateway, None)
    await _push(gateway, [delete_product(tenant_id, doomed)])
    deleted = await _pull_all(gateway, created.checkpoint)
    assert [(c["entityId"], c["operation"], c["product"]["deleted"]) for c in deleted.changes] == [
        (str(doomed), "delete", True)
    ]

    # The tombstone ages past the retention window (30 days on the test stack); the next batch with
    # a delete makes the worker purge it.
    await admin.execute(
        "UPDATE products SET deleted_at = now() - interval '31 days' WHERE tenant_id = $1 AND id = $2",
        tenant_id,
        doomed,
    )
    await _push(gateway, [delete_product(tenant_id, uuid.uuid4())])
    horizon = await admin.fetchval("SELECT feed_horizon FROM tenants WHERE tenant_id = $1", tenant_id)
    assert str(horizon) == deleted.checkpoint

    assert created.checkpoint is not None
    for stale in ("0", created.checkpoint):
        response = await _get(gateway, "/api/sync/changes", checkpoint=stale)
        assert (response.status_code, response.json()["code"]) == (409, "RESET_REQUIRED"), stale
    resumed = await _pull_all(gateway, deleted.checkpoint)
    assert [c["operation"] for c in resumed.changes] == ["delete"]  # the newer tombstone, still kept
    fresh = await _pull_all(gateway, None)
    assert str(doomed) not in fresh.ids("product")
    assert str(kept) in fresh.ids("product")
    ahead = await _get(gateway, "/api/sync/changes", checkpoint=str(int(fresh.checkpoint or 0) + 1))
    assert (ahead.status_code, ahead.json()["code"]) == (409, "RESET_REQUIRED")
    malformed = await _get(gateway, "/api/sync/changes", checkpoint="yesterday")
    assert (malformed.status_code, malformed.json()["code"]) == (422, "VALIDATION_ERROR")


async def test_a_reader_never_misses_a_commit_of_concurrent_writers(stack: Stack, tenant_id: uuid.UUID) -> None:
    """Eight devices push at once through the worker while a ninth pulls in a loop from its last
    checkpoint: it must see every movement exactly once and every product, in checkpoint order."""
    created: set[str] = set()
    recorded: list[str] = []
    pushed_checkpoints: list[int] = []

    async def write(writer: int) -> None:
        async with gateway_client(stack, tenant_id, f"writer-{writer}") as client:
            for batch in range(5):
                products = [uuid.uuid4(), uuid.uuid4()]
                moves = [movement(tenant_id, random.choice(products), "entry", n + 1) for n in range(4)]
                operations = [create_product(tenant_id, p, f"w{writer}-b{batch}") for p in products]
                operations += [*moves, update_product(tenant_id, products[0], priceCents=writer * 100 + batch)]
                body = await _push(client, operations)
                created.update(str(p) for p in products)
                recorded.extend(m["entityId"] for m in moves)
                pushed_checkpoints.append(int(body["checkpoint"]))

    writers_done = asyncio.Event()
    pulled = Pulled(None)
    pulls_while_writing = 0

    async def read() -> None:
        nonlocal pulls_while_writing
        async with gateway_client(stack, tenant_id, "reader") as client:
            while True:
                finished = writers_done.is_set()  # a pull that starts after the last commit ends the loop
                more = await _pull(client, pulled, limit=9)
                if finished and not more:
                    return
                pulls_while_writing += not finished
                await asyncio.sleep(0 if more else 0.03)

    reader = asyncio.create_task(read())
    try:
        await asyncio.gather(*(write(n) for n in range(8)))
    finally:
        writers_done.set()
    await reader

    assert pulls_while_writing >= 5, "the reader must pull while the writers commit, or the test proves nothing"
    assert Counter(pulled.ids("stockMovement")) == Counter(recorded)  # each exactly once
    assert len(recorded) == 8 * 5 * 4
    assert created <= set(pulled.ids("product"))
    checkpoints = [int(c["checkpoint"]) for c in pulled.changes]
    assert all(a < b for a, b in itertools.pairwise(checkpoints)), "checkpoints must increase"
    assert int(pulled.checkpoint or 0) >= max(pushed_checkpoints)


async def test_history_pages_stay_whole_while_movements_are_pushed(stack: Stack, tenant_id: uuid.UUID) -> None:
    product = uuid.uuid4()
    base = datetime.now(UTC) - timedelta(days=1)

    def at(minutes: float) -> str:
        return (base + timedelta(minutes=minutes)).isoformat()

    async with gateway_client(stack, tenant_id, "scroller") as scroller:
        # Three movements per minute: equal times are ordered by checkpoint.
        initial = [movement(tenant_id, product, "entry", 1, occurredAt=at(i // 3)) for i in range(30)]
        await _push(scroller, [create_product(tenant_id, product, "Scrolled"), *initial])
        scrolling = asyncio.Event()

        async def push_more(user: int) -> None:
            async with gateway_client(stack, tenant_id, f"device-{user}") as device:
                while not scrolling.is_set():
                    # At the top, in the middle of what is being read, and on instants already there.
                    when = random.choice([datetime.now(UTC).isoformat(), at(random.randint(0, 9))])
                    await _push(device, [movement(tenant_id, product, "exit", 1, occurredAt=when)])

        devices = [asyncio.create_task(push_more(n)) for n in range(3)]
        seen: list[dict[str, Any]] = []
        cursor: str | None = None
        try:
            while True:
                params = {"limit": "4"} | ({"cursor": cursor} if cursor else {})
                page = (await _get(scroller, f"/api/products/{product}/movements", **params)).json()
                seen.extend(page["items"])
                cursor = page["nextCursor"]
                if cursor is None:
                    break
                await asyncio.sleep(0.05)
        finally:
            scrolling.set()
            await asyncio.gather(*devices)

    keys = [(datetime.fromisoformat(m["occurredAt"]), int(m["checkpoint"])) for m in seen]
    assert keys == sorted(keys, reverse=True), "newest first, ties by checkpoint"
    assert len({m["id"] for m in seen}) == len(seen), "no duplicates"
    assert {m["entityId"] for m in initial} <= {m["id"] for m in seen}, "no gaps"


async def test_with_inventory_down_the_gateway_answers_503(own_stack: Stack, tenant_id: uuid.UUID) -> None:
    # No inventory started: the gateway's INVENTORY_URL names a port nothing listens on.
    await asyncio.to_thread(own_stack.start_gateway)
    async with gateway_client(own_stack, tenant_id) as client:
        for path in ("/api/products", f"/api/products/{uuid.uuid4()}", "/api/sync/changes"):
            response = await client.get(path)
            assert response.status_code == 503, (path, response.text)
            assert response.json()["code"] == "UNAVAILABLE"
            assert int(response.headers["retry-after"]) >= 1
