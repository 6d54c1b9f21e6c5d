"""What the server's answers do to the outbox and to what the device shows: the defects issue 16 found
in the Python client, each with the test that failed before its fix, against the in-memory server."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx

from stockzen_client import StockzenClient, SyncState
from stockzen_client.domain.backoff import RETRY_AFTER_CAP
from stockzen_contracts import Code, ItemResult, SyncResponse
from tests.support.fake_gateway import failure
from tests.unit.client.conftest import ClientFactory, Clock, Gateway


def answer(server: Gateway, *results: ItemResult, status: int = 200) -> httpx.Response:
    """A scripted push answer with these results."""
    response = SyncResponse(
        checkpoint=str(server.data.checkpoint), server_time=datetime.now(UTC), results=list(results)
    )
    return httpx.Response(status, json=response.to_wire())


def queued_ids(client: StockzenClient) -> list[uuid.UUID]:
    return [item.operation_id for item in client.store.sendable(100)]


async def test_a_refused_create_fails_the_products_later_changes_with_it(
    make_client: ClientFactory, server: Gateway, clock: Clock
) -> None:
    client = make_client("phone")
    await client.sync()
    product = client.add_product("Bad")
    client.edit_product(product, sku="A")
    client.stock_in(product, 2)
    create, edit, movement = queued_ids(client)
    server.failures.append(
        answer(
            server,
            ItemResult.rejected(create, Code.VALIDATION_ERROR, "payload.name: too long"),
            ItemResult.retry_later(edit, Code.NOT_FOUND, "no such product"),
            ItemResult.retry_later(movement, Code.NOT_FOUND, "no such product"),
        )
    )

    status = await client.sync()

    assert (status.state, status.queued, status.failed) == (SyncState.UP_TO_DATE, 0, 3)
    assert [n.kind for n in status.notices] == ["rejected"]  # one notice for the three
    assert client.product(product) is None
    clock.advance(600)
    await client.sync()
    assert len(server.pushes) == 0  # nothing of it is sent again
    assert server.products() == {}


async def test_a_final_not_found_takes_the_product_away(
    make_client: ClientFactory, server: Gateway, clock: Clock
) -> None:
    client = make_client("phone")
    product = client.add_product("Mug")
    assert (await client.sync()).state is SyncState.UP_TO_DATE
    client.edit_product(product, sku="A")
    [edit] = queued_ids(client)
    server.failures.append(answer(server, ItemResult.rejected(edit, Code.NOT_FOUND, "the product was deleted")))

    status = await client.sync()

    assert (status.state, status.queued, status.failed) == (SyncState.UP_TO_DATE, 0, 1)
    assert client.product(product) is None  # its tombstone was purged: the device forgets it too
    assert client.products() == []


async def test_a_batch_bigger_than_the_server_takes_is_split_and_the_pull_still_runs(
    make_client: ClientFactory, server: Gateway
) -> None:
    phone, tablet = make_client("phone"), make_client("tablet")
    await tablet.sync()
    products = [phone.add_product(f"P{n}") for n in range(5)]
    server.max_operations = 2

    status = await phone.sync()

    assert (status.state, status.queued, status.failed) == (SyncState.UP_TO_DATE, 0, 0)
    assert server.refused_pushes == [5, 3]  # 5 → 2 + 3, 3 → 1 + 2
    assert [len(batch) for batch in server.pushes] == [2, 1, 2]
    assert set(server.products()) == set(products)
    assert {p.name for p in tablet.products()} == set()
    for n in range(5, 8):
        phone.add_product(f"P{n}")
    await phone.sync()
    assert server.refused_pushes == [5, 3]  # the phone learned: it now sends what the server takes
    assert [len(batch) for batch in server.pushes[3:]] == [2, 1]
    await tablet.sync()
    assert {p.name for p in tablet.products()} == {f"P{n}" for n in range(8)}


async def test_a_single_change_refused_with_a_whole_request_4xx_fails_alone_and_the_pull_runs(
    make_client: ClientFactory, server: Gateway
) -> None:
    phone, tablet = make_client("phone"), make_client("tablet")
    await phone.sync()
    tablet.add_product("From the tablet")
    await tablet.sync()
    phone.add_product("Too large")
    server.failures.append(failure(413, Code.PAYLOAD_TOO_LARGE, "the body is over 1 MiB"))

    status = await phone.sync()

    assert (status.state, status.queued, status.failed) == (SyncState.UP_TO_DATE, 0, 1)
    [refused] = phone.failed()
    assert (refused.code, refused.status) == ("PAYLOAD_TOO_LARGE", "failed")
    assert [p.name for p in phone.products()] == ["From the tablet"]  # pulled, and the refused create not shown


async def test_a_create_refused_on_its_own_after_a_split_takes_its_later_changes_with_it_unsent(
    make_client: ClientFactory, server: Gateway
) -> None:
    client = make_client("phone")
    await client.sync()
    product = client.add_product("Bad")
    client.edit_product(product, sku="A")
    server.failures += [failure(422, Code.VALIDATION_ERROR, "no"), failure(422, Code.VALIDATION_ERROR, "no")]

    status = await client.sync()  # [create, edit] refused → [create] refused: the edit fails with it

    assert (status.state, status.queued, status.failed) == (SyncState.UP_TO_DATE, 0, 2)
    assert [(f.code, f.reason) for f in client.failed()][1] == (
        "VALIDATION_ERROR",
        "VALIDATION_ERROR: the product's create was refused",
    )
    assert server.pushes == []  # the edit was never sent on its own
    assert server.failures == []


async def test_retry_after_is_honoured_up_to_five_minutes(
    make_client: ClientFactory, server: Gateway, clock: Clock
) -> None:
    client = make_client("phone")
    client.add_product("Mug")
    server.failures.append(failure(429, Code.RATE_LIMITED, "slow down", retry_after=86_400))

    status = await client.sync()

    assert status.state is SyncState.SYNCING  # one failure is not yet an error
    assert client.store.next_attempt_at() == clock() + RETRY_AFTER_CAP
    clock.advance(RETRY_AFTER_CAP)
    assert (await client.sync()).state is SyncState.UP_TO_DATE


async def test_three_failing_syncs_in_a_row_are_an_error_and_a_401_at_once(
    make_client: ClientFactory, server: Gateway, clock: Clock
) -> None:
    client = make_client("phone")
    client.add_product("Mug")
    states = []
    for _ in range(3):
        server.failures.append(failure(503, Code.UNAVAILABLE, "the queue did not take the batch"))
        states.append((await client.sync()).state)
        clock.advance(600)
    assert states == [SyncState.SYNCING, SyncState.SYNCING, SyncState.ERROR]
    assert (await client.sync()).state is SyncState.UP_TO_DATE

    client.add_product("Cup")
    server.failures.append(failure(401, Code.UNAUTHORIZED, "the bearer token is invalid or expired"))
    assert (await client.sync()).state is SyncState.ERROR


async def test_changes_carry_strictly_increasing_stamps_kept_across_restarts(
    make_client: ClientFactory, server: Gateway, clock: Clock
) -> None:
    client = make_client("phone")
    product = client.add_product("Mug")
    client.edit_product(product, name="A")  # the same millisecond
    clock.advance(-5)  # the clock goes back
    restarted = make_client("phone")  # another process on the profile
    restarted.edit_product(product, name="B")

    await restarted.sync()

    stamps = [datetime.fromisoformat(op["modifiedAt"].replace("Z", "+00:00")) for op in server.pushes[0]]
    first = datetime.fromtimestamp(1_000_000, UTC)
    assert stamps == [first, first + timedelta(milliseconds=1), first + timedelta(milliseconds=2)]
    assert server.products()[product]["name"] == "B"


async def test_a_4xx_that_is_not_the_servers_refusal_keeps_the_changes_queued(
    make_client: ClientFactory, server: Gateway, clock: Clock
) -> None:
    client = make_client("phone")
    client.add_product("Mug")
    client.add_product("Cup")
    server.failures.append(httpx.Response(403, text="<html>blocked by the office proxy</html>"))

    status = await client.sync()

    assert (status.state, status.queued, status.failed) == (SyncState.SYNCING, 2, 0)  # nothing refused for it
    assert "not the StockZen server" in (status.last_error or "")
    clock.advance(600)
    assert (await client.sync()).state is SyncState.UP_TO_DATE
