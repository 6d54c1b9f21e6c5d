"""The sync engine against an in-memory server that follows the contract."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime

import filelock
import httpx
import pytest

from stockzen_client import StockzenClient, SyncState, SyncStatus
from stockzen_client.engine import SyncBusy
from stockzen_contracts import Code, ItemResult, SyncResponse
from tests.support.fake_gateway import FakeGateway, failure
from tests.unit.client.conftest import ClientFactory, Clock, eventually


def view(client: StockzenClient) -> dict[uuid.UUID, dict[str, object]]:
    """The client's live products as the server would list them."""
    return {p.id: {**p.fields(), "stock_level": p.stock_level} for p in client.products()}


async def test_writes_return_at_once_offline_and_stay_queued(make_client: ClientFactory, server: FakeGateway) -> None:
    client = make_client("phone")
    server.reachable["phone"] = False
    product = client.add_product("Blue mug", sku="MUG-1", price_cents=1299)
    client.stock_in(product, 5, reason="delivery")
    client.stock_out(product, 2)

    shown = client.product(product)
    assert shown is not None
    assert (shown.name, shown.stock_level, shown.queued_changes) == ("Blue mug", 3, 1)
    assert [m.queued for m in client.history(product)] == [True, True]

    status = await client.sync()
    assert status.state is SyncState.OFFLINE
    assert status.queued == 3
    assert "cannot reach" in (status.last_error or "")
    assert server.pushes == []
    assert server.products() == {}


async def test_a_sync_after_an_offline_one_sends_every_queued_change_once_the_server_answers(
    make_client: ClientFactory, server: FakeGateway, clock: Clock
) -> None:
    client = make_client("phone")
    server.reachable["phone"] = False
    product = client.add_product("Mug")
    client.stock_in(product, 4)
    assert (await client.sync()).state is SyncState.OFFLINE
    assert client.store.backing_off(clock())  # the failed send put both changes on backoff

    server.reachable["phone"] = True
    restarted = make_client("phone")  # a one-shot ``stockzen sync``: a new process, nothing due yet
    status = await restarted.sync()

    assert (status.state, status.queued) == (SyncState.UP_TO_DATE, 0)
    assert len(server.pushes) == 1
    assert server.products()[product]["stock_level"] == 4


async def test_a_sync_pushes_in_order_then_pulls_and_is_up_to_date(
    make_client: ClientFactory, server: FakeGateway
) -> None:
    client = make_client("phone")
    product = client.add_product("Blue mug", price_cents=1299)
    client.edit_product(product, name="Green mug", unit="pcs")
    client.stock_in(product, 5)

    status = await client.sync()

    assert status.state is SyncState.UP_TO_DATE
    assert (status.queued, status.failed, status.last_error) == (0, 0, None)
    assert status.last_synced_at is not None
    sent = [(op["entityType"], op["operationType"]) for op in server.pushes[0]]
    assert sent == [("product", "create"), ("product", "update"), ("stockMovement", "create")]
    assert view(client) == server.products()
    assert server.products()[product]["name"] == "Green mug"
    assert [m.queued for m in client.history(product)] == [False]


async def test_a_conflict_replaces_the_local_record_and_emits_a_notice(
    make_client: ClientFactory, server: FakeGateway
) -> None:
    phone, tablet = make_client("phone"), make_client("tablet")
    product = phone.add_product("Mug")
    await phone.sync()
    await tablet.sync()
    tablet.edit_product(product, name="Tablet's name")  # earlier: loses
    phone.edit_product(product, name="Phone's name")
    await phone.sync()
    seen: list[SyncStatus] = []
    tablet.engine.hub.subscribe(seen.append)

    status = await tablet.sync()

    assert status.state is SyncState.UP_TO_DATE
    shown = tablet.product(product)
    assert shown is not None
    assert shown.name == "Phone's name"
    conflicts = [n for n in status.notices if n.kind == "conflict"]
    assert len(conflicts) == 1
    assert conflicts[0].entity_id == str(product)
    assert "conflict resolved" in conflicts[0].message
    assert any(n.kind == "conflict" for s in seen for n in s.notices)
    assert view(tablet) == view(phone) == server.products()


async def test_a_final_rejection_is_parked_as_failed_and_holds_up_nothing(
    make_client: ClientFactory, server: FakeGateway
) -> None:
    phone, tablet = make_client("phone"), make_client("tablet")
    doomed = phone.add_product("Doomed")
    await phone.sync()
    await tablet.sync()
    phone.remove_product(doomed)
    await phone.sync()
    tablet.stock_in(doomed, 3)  # the tablet has not heard of the delete yet
    other = tablet.add_product("Fine")
    tablet.stock_in(other, 1)

    status = await tablet.sync()

    assert (status.state, status.queued, status.failed) == (SyncState.UP_TO_DATE, 0, 1)
    [refused] = tablet.failed()
    assert refused.code == "NOT_FOUND"
    assert (refused.reason or "").startswith("NOT_FOUND")
    assert [n.kind for n in status.notices] == ["rejected"]
    assert server.products()[other]["stock_level"] == 1
    assert view(tablet) == server.products()


async def test_pending_results_stay_queued_with_backoff_and_are_sent_once_per_sync(
    make_client: ClientFactory, server: FakeGateway, clock: Clock
) -> None:
    client = make_client("phone")
    product = client.add_product("Mug")
    client.stock_in(product, 4)
    server.pending_rate = 1.0

    status = await client.sync()

    assert (status.state, status.queued) == (SyncState.SYNCING, 2)
    assert len(server.pushes) == 1  # no rapid retry loop
    assert (client.store.next_attempt_at() or 0) > clock()
    await client.sync()
    assert len(server.pushes) == 1  # not due yet

    await server.deliver_held_back()
    server.pending_rate = 0.0
    clock.advance(31)
    status = await client.sync()
    assert status.state is SyncState.UP_TO_DATE
    assert server.pushes[1] == server.pushes[0]  # same ids, same content
    assert server.products()[product]["stock_level"] == 4
    assert len(server.data.applied) == 2


async def test_a_retryable_rejection_stays_queued(
    make_client: ClientFactory, server: FakeGateway, clock: Clock
) -> None:
    client = make_client("phone")
    product = client.add_product("Mug")
    [item] = client.store.sendable(10)
    late = ItemResult.rejected(item.operation_id, Code.NOT_FOUND, "not there yet").model_copy(
        update={"retryable": True}
    )
    answer = SyncResponse(checkpoint="0", server_time="2026-11-27T00:00:00Z", results=[late])  # type: ignore[arg-type]
    server.failures.append(httpx.Response(200, json=answer.to_wire()))

    status = await client.sync()

    assert (status.queued, status.failed) == (1, 0)
    assert "NOT_FOUND" in (status.last_error or "")
    clock.advance(31)
    assert (await client.sync()).state is SyncState.UP_TO_DATE
    assert product in server.products()


async def test_a_failing_server_is_retried_after_its_retry_after_and_becomes_an_error_the_third_time(
    make_client: ClientFactory, server: FakeGateway, clock: Clock
) -> None:
    client = make_client("phone")
    product = client.add_product("Mug")
    server.failures.append(failure(503, Code.UNAVAILABLE, "the queue did not take the batch", retry_after=20))

    status = await client.sync()

    assert status.state is SyncState.SYNCING  # one failure is not yet a problem
    assert "503" in (status.last_error or "")
    assert (client.store.next_attempt_at() or 0) >= clock() + 20
    client.stock_in(product, 2)  # work goes on
    assert client.status.queued == 2
    server.failures.append(failure(429, Code.RATE_LIMITED, "slow down", retry_after=5))
    clock.advance(21)
    assert (await client.sync()).state is SyncState.SYNCING
    server.failures.append(failure(500, Code.INTERNAL_ERROR, "a bug"))
    clock.advance(40)
    assert (await client.sync()).state is SyncState.ERROR  # the third failing sync in a row
    clock.advance(40)
    status = await client.sync()
    assert status.state is SyncState.UP_TO_DATE
    assert status.last_error is None
    assert server.products()[product]["stock_level"] == 2


async def test_two_triggers_in_one_process_share_one_sync(make_client: ClientFactory, server: FakeGateway) -> None:
    client = make_client("phone")
    client.add_product("Mug")
    first, second = await asyncio.gather(client.sync(), client.sync())
    assert first == second
    assert first.state is SyncState.UP_TO_DATE
    assert len(server.pushes) == 1


async def test_a_sync_in_another_process_is_waited_for(make_client: ClientFactory, server: FakeGateway) -> None:
    client = make_client("phone", lock_wait=0.3)
    client.add_product("Mug")
    other_process = filelock.FileLock(client.profile.lock_file)  # its own file descriptor, as another process has
    other_process.acquire()
    with pytest.raises(SyncBusy):
        await client.sync()
    assert server.pushes == []

    waiting = make_client("phone", lock_wait=5.0)
    syncing = asyncio.create_task(waiting.sync())
    await asyncio.sleep(0.3)
    assert not syncing.done()
    other_process.release()
    assert (await syncing).state is SyncState.UP_TO_DATE
    assert len(server.pushes) == 1


async def test_queued_edits_stay_on_top_of_pulled_changes(make_client: ClientFactory, server: FakeGateway) -> None:
    phone, tablet = make_client("phone"), make_client("tablet")
    product = phone.add_product("Mug", price_cents=100)
    await phone.sync()
    await tablet.sync()
    tablet.edit_product(product, price_cents=250)
    tablet.stock_in(product, 7)
    phone.edit_product(product, name="Cup")
    await phone.sync()
    server.pending_rate = 1.0  # the tablet's changes stay queued while it pulls the phone's

    await tablet.sync()

    shown = tablet.product(product)
    assert shown is not None
    assert (shown.name, shown.price_cents, shown.stock_level) == ("Cup", 250, 7)
    assert tablet.status.queued == 2


async def test_the_checkpoint_never_passes_what_the_store_holds(
    make_client: ClientFactory, server: FakeGateway, tenant_id: uuid.UUID
) -> None:
    feed_pulls: int | None = None  # counted once the tablet has its first download

    async def cut_after_two_pages(request: httpx.Request) -> httpx.Response:
        nonlocal feed_pulls
        if request.url.path == "/api/sync/changes" and feed_pulls is not None:
            feed_pulls += 1
            if feed_pulls > 2:
                raise httpx.ConnectError("cut", request=request)
        return await server.handle(request)

    tablet = make_client("tablet", transport=httpx.MockTransport(cut_after_two_pages))
    assert (await tablet.sync()).state is SyncState.UP_TO_DATE
    phone = make_client("phone")
    for name in ("A", "B", "C", "D"):
        phone.add_product(name)
    await phone.sync()
    server.feed_page_size = 1
    feed_pulls = 0

    status = await tablet.sync()

    assert status.state is SyncState.OFFLINE
    checkpoint = int(tablet.store.checkpoint or 0)
    held = {p.id for p in tablet.products()}
    covered = {c.entity_id for c in server.changes_after(0) if int(c.checkpoint) <= checkpoint}
    assert len(held) == 2
    assert held == covered


class Crash(BaseException):
    """The process dies: nothing after this point runs."""


async def test_the_outbox_survives_a_crash_between_send_and_reconcile(
    make_client: ClientFactory, server: FakeGateway
) -> None:
    async def apply_then_die(request: httpx.Request) -> httpx.Response:
        await server.handle(request)  # the server applies the batch; its answer never arrives
        raise Crash

    client = make_client("phone", transport=httpx.MockTransport(apply_then_die))
    product = client.add_product("Mug")
    client.stock_in(product, 3)
    sent_ids = [item.operation_id for item in client.store.sendable(10)]
    with pytest.raises(Crash):
        await client.sync()
    assert client.store.counts()[0] == 2  # still queued (``processing``)

    restarted = make_client("phone")
    status = await restarted.sync()

    assert status.state is SyncState.UP_TO_DATE
    resent = [uuid.UUID(op["operationId"]) for op in server.pushes[1]]
    assert resent == sent_ids
    assert server.products()[product]["stock_level"] == 3
    assert len(server.data.applied) == 2
    assert json.dumps(server.pushes[0], sort_keys=True) == json.dumps(server.pushes[1], sort_keys=True)


async def test_reset_required_downloads_everything_again_and_keeps_queued_changes(
    make_client: ClientFactory, server: FakeGateway
) -> None:
    client = make_client("phone")
    product = client.add_product("Mug")
    await client.sync()
    client.edit_product(product, unit="box")
    server.pending_rate = 1.0
    server.reset_next_pull = True

    status = await client.sync()

    assert status.state is SyncState.SYNCING
    assert status.queued == 1
    shown = client.product(product)
    assert shown is not None
    assert (shown.name, shown.unit) == ("Mug", "box")
    assert client.store.checkpoint == str(server.data.checkpoint)


async def test_the_status_is_observable_through_callbacks_and_an_async_iterator(
    make_client: ClientFactory, server: FakeGateway
) -> None:
    client = make_client("phone")
    states: list[tuple[SyncState, bool, bool]] = []
    unsubscribe = client.engine.hub.subscribe(lambda s: states.append((s.state, s.uploading, s.downloading)))
    updates = client.engine.hub.updates()
    assert (await anext(updates)).state is SyncState.SYNCING  # a device that starts: its first sync is due

    client.add_product("Mug")
    await client.sync()
    unsubscribe()
    client.add_product("Cup")

    assert (SyncState.SYNCING, True, False) in states
    assert (SyncState.SYNCING, False, True) in states
    assert states[-1] == (SyncState.UP_TO_DATE, False, False)
    seen = [await anext(updates) for _ in range(3)]
    assert seen[0].queued == 1  # the first local write
    await updates.aclose()


async def test_the_engine_syncs_by_itself_when_the_connection_returns(
    make_client: ClientFactory, server: FakeGateway
) -> None:
    client = make_client("phone", tick=0.02, probe_every=0.05, sync_every=60)
    server.reachable["phone"] = False
    stop = asyncio.Event()
    running = asyncio.create_task(client.run(stop))
    try:
        product = client.add_product("Mug")
        await eventually(lambda: client.status.state is SyncState.OFFLINE and client.status.queued == 1)
        server.reachable["phone"] = True
        await eventually(lambda: client.status.state is SyncState.UP_TO_DATE)
        assert product in server.products()

        other_process = make_client("phone")  # the same profile, as another process opens it
        queued_elsewhere = other_process.add_product("Cup")
        await eventually(lambda: queued_elsewhere in server.products())
    finally:
        stop.set()
        await running


async def test_a_refused_token_is_an_error_that_asks_for_a_new_login(
    make_client: ClientFactory, server: FakeGateway
) -> None:
    client = make_client("phone")
    client.add_product("Mug")
    server.failures.append(failure(401, Code.UNAUTHORIZED, "the bearer token is invalid or expired"))

    status = await client.sync()

    assert status.state is SyncState.ERROR
    assert "log in again" in (status.last_error or "")
    assert status.queued == 1


async def test_up_to_date_waits_for_a_pull_that_covers_the_push(
    make_client: ClientFactory, server: FakeGateway
) -> None:
    feed_up = True

    async def feed_down(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/sync/changes" and not feed_up:
            return failure(503, Code.UNAVAILABLE, "the inventory service is unavailable; retry later", 1)
        return await server.handle(request)

    client = make_client("phone", transport=httpx.MockTransport(feed_down))
    assert (await client.sync()).state is SyncState.UP_TO_DATE  # the first download
    feed_up = False
    product = client.add_product("Mug")
    status = await client.sync()

    assert status.state is SyncState.SYNCING  # pushed, but not pulled back: not up to date
    assert status.queued == 0
    assert product in server.products()
    assert client.product(product) is not None  # still shown while the pull is missing
    assert client.store.counts()[2] == 1

    restarted = make_client("phone")  # the same profile, the feed back
    assert (await restarted.sync()).state is SyncState.UP_TO_DATE
    assert restarted.store.counts()[2] == 0
    assert restarted.store.checkpoint == str(server.data.checkpoint)


async def test_a_change_queued_again_during_a_sync_holds_back_its_products_later_changes_for_that_sync(
    make_client: ClientFactory, server: FakeGateway, clock: Clock
) -> None:
    """Defect: an item queued again during a sync (``pending``) stopped holding back its product's later
    changes once its backoff ended within the same sync, so they overtook it."""
    slow_and_pending = False
    sent: list[list[object]] = []

    async def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/sync" and slow_and_pending:
            operations = json.loads(request.content)["operations"]
            sent.append([op["payload"].get("name") for op in operations])
            clock.advance(120)  # the answer takes longer than the backoff it sets
            results = [ItemResult.pending(uuid.UUID(op["operationId"])) for op in operations]
            response = SyncResponse(checkpoint="1", server_time=datetime.now(UTC), results=results)
            return httpx.Response(202, json=response.to_wire())
        if request.url.path == "/api/sync":
            sent.append([op["payload"].get("name") for op in json.loads(request.content)["operations"]])
        return await server.handle(request)

    client = make_client("phone", transport=httpx.MockTransport(answer), batch_size=1)
    product = client.add_product("Mug")
    await client.sync()
    client.edit_product(product, name="First")
    client.edit_product(product, name="Second")
    other = client.add_product("Other")
    sent.clear()
    slow_and_pending = True

    await client.sync()

    assert sent == [["First"], ["Other"]]  # "Second" waits behind "First", which is queued again
    assert client.status.queued == 3
    slow_and_pending = False
    clock.advance(120)
    assert (await client.sync()).state is SyncState.UP_TO_DATE
    assert sent[2:] == [["First"], ["Second"], ["Other"]]  # in the order they were made
    assert server.products()[product]["name"] == "Second"
    assert other in server.products()
