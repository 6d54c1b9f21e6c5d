"""A new device's first download: a snapshot of levels as of a checkpoint C, then the feed from C.

Stock shown = confirmed (snapshot level + movements the feed brought after C) + this device's own
movements no pull has brought back; each case below checks a movement is counted exactly once.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx

from stockzen_client import StockzenClient, SyncProgress, SyncState, SyncStatus
from stockzen_client.local_status import stored_status
from stockzen_contracts import Code, ItemResult, SyncResponse
from tests.support.fake_gateway import failure
from tests.unit.client.conftest import FEED, SNAPSHOT, ClientFactory, Clock, Gateway


def view(client: StockzenClient) -> dict[uuid.UUID, dict[str, object]]:
    """The client's live products as the server would list them."""
    return {p.id: {**p.fields(), "stock_level": p.stock_level} for p in client.products()}


def shown(client: StockzenClient, product: uuid.UUID) -> int:
    """The stock level the device shows for ``product``."""
    found = client.product(product)
    assert found is not None, "the product is not shown"
    return found.stock_level


def level(server: Gateway, product: uuid.UUID) -> int:
    return int(server.products()[product]["stock_level"])


def checkpoints(cursors: list[str | None]) -> list[str | None]:
    """The snapshot checkpoint each request continued (None for a first page)."""
    return [None if cursor is None else cursor.split("/")[0] for cursor in cursors]


async def stocked_shop(client: StockzenClient, *names: str) -> list[uuid.UUID]:
    """Products made and stocked on ``client`` (2, 4, 6 ... of them), synced."""
    await client.sync()
    products = [client.add_product(name) for name in names]
    for n, product in enumerate(products, start=1):
        client.stock_in(product, 10 * n)
        client.stock_out(product, 8 * n)
    assert (await client.sync()).state is SyncState.UP_TO_DATE
    return products


async def test_a_new_device_takes_levels_as_of_the_snapshot_then_only_the_movements_after_it(
    make_client: ClientFactory, server: Gateway
) -> None:
    phone = make_client("phone")
    mug, cup = await stocked_shop(phone, "Mug", "Cup")
    server.snapshot_page_size = 1
    server.snapshot_cursors.clear()
    moved_during_the_snapshot = False
    paths: list[str] = []

    async def phone_moves_stock_between_pages(request: httpx.Request) -> httpx.Response:
        nonlocal moved_during_the_snapshot
        paths.append(request.url.path)
        answer = await server.handle(request)
        if request.url.path == SNAPSHOT and not moved_during_the_snapshot:
            moved_during_the_snapshot = True  # committed after C, before the second page is read
            phone.stock_out(mug, 1)
            phone.stock_in(cup, 5)
            await phone.sync()
        return answer

    tablet = make_client("tablet", transport=httpx.MockTransport(phone_moves_stock_between_pages))
    status = await tablet.sync()

    assert status.state is SyncState.UP_TO_DATE
    assert (shown(tablet, mug), shown(tablet, cup)) == (1, 9)
    assert view(tablet) == server.products()
    # The ledger before C was never downloaded: the device holds the two movements after it.
    assert [(m.kind.value, m.quantity, m.queued) for m in tablet.history(mug)] == [("exit", 1, False)]
    assert [(m.kind.value, m.quantity, m.queued) for m in tablet.history(cup)] == [("entry", 5, False)]
    first, second = checkpoints(server.snapshot_cursors)
    assert first is None
    assert second is not None
    assert int(second) < server.data.checkpoint  # both pages are as of the same C, before the phone's moves
    assert paths == [SNAPSHOT, SNAPSHOT, FEED]


async def test_an_own_movement_counts_once_queued_applied_pulled_back_or_pulled_before_its_answer(
    make_client: ClientFactory, server: Gateway, clock: Clock
) -> None:
    at_pull: list[int] = []
    watched: list[uuid.UUID] = []

    async def note_the_level_when_the_pull_begins(request: httpx.Request) -> httpx.Response:
        if request.url.path == FEED and watched:
            at_pull.append(shown(phone, watched[0]))  # pushed and settled, not pulled back yet
        return await server.handle(request)

    phone = make_client("phone", transport=httpx.MockTransport(note_the_level_when_the_pull_begins))
    [mug] = await stocked_shop(phone, "Mug")
    assert shown(phone, mug) == 2
    watched.append(mug)

    phone.stock_out(mug, 1)
    assert shown(phone, mug) == 1  # queued
    assert (await phone.sync()).state is SyncState.UP_TO_DATE
    assert at_pull == [1]  # applied, awaiting the pull
    assert shown(phone, mug) == 1 == level(server, mug)  # pulled back: confirmed now, shown once

    server.pending_rate = 1.0
    phone.stock_in(mug, 5)
    assert (await phone.sync()).state is SyncState.SYNCING  # 202 pending: still queued, in doubt
    assert shown(phone, mug) == 6
    await server.deliver_held_back()  # applied on the server; the device does not know yet
    server.pending_rate = 0.0
    await phone.sync()  # not due again yet: nothing is sent, and the feed brings the movement back
    assert phone.status.queued == 1
    assert shown(phone, mug) == 6
    clock.advance(120)
    assert (await phone.sync()).state is SyncState.UP_TO_DATE  # resent: duplicate
    assert shown(phone, mug) == 6 == level(server, mug)


async def test_a_refused_movement_stops_counting_and_stays_listed_as_failed(
    make_client: ClientFactory, server: Gateway
) -> None:
    phone = make_client("phone")
    [mug] = await stocked_shop(phone, "Mug")
    refused_movement = phone.stock_out(mug, 2)
    [item] = phone.store.sendable(10)
    refusal = ItemResult.rejected(item.operation_id, Code.OPERATION_ID_REUSED, "this id was used for another change")
    answer = SyncResponse(checkpoint=str(server.data.checkpoint), server_time=datetime.now(UTC), results=[refusal])
    server.failures.append(httpx.Response(200, json=answer.to_wire()))
    assert shown(phone, mug) == 0

    status = await phone.sync()

    assert (status.state, status.queued, status.failed) == (SyncState.UP_TO_DATE, 0, 1)
    assert shown(phone, mug) == 2 == level(server, mug)
    assert refused_movement not in {m.id for m in phone.history(mug)}
    assert [f.operation_id for f in phone.failed()] == [item.operation_id]

    server.reset_next_pull = True  # a later snapshot does not bring it back either
    assert (await phone.sync()).state is SyncState.UP_TO_DATE
    assert shown(phone, mug) == 2
    assert phone.status.failed == 1


async def test_reset_required_takes_a_snapshot_and_keeps_the_movements_not_sent_yet(
    make_client: ClientFactory, server: Gateway, clock: Clock
) -> None:
    phone, tablet = make_client("phone"), make_client("tablet")
    [mug] = await stocked_shop(phone, "Mug")
    await tablet.sync()
    tablet.stock_in(mug, 7)
    server.failures.append(failure(429, Code.RATE_LIMITED, "slow down", retry_after=30))
    assert (await tablet.sync()).state is SyncState.SYNCING  # refused before it was read: not sent, not in doubt
    phone.stock_out(mug, 1)
    await phone.sync()
    server.reset_next_pull = True
    snapshots = server.requested("tablet", SNAPSHOT)

    status = await tablet.sync()  # the movement is not due yet: nothing is sent, the pull starts over

    assert server.requested("tablet", SNAPSHOT) == snapshots + 1
    assert tablet.store.checkpoint == str(server.data.checkpoint)
    assert (status.state, status.queued) == (SyncState.SYNCING, 1)
    assert shown(tablet, mug) == 1 + 7  # the snapshot's level and the queued movement on top
    assert [(m.quantity, m.queued) for m in tablet.history(mug)] == [(7, True)]

    clock.advance(120)
    assert (await tablet.sync()).state is SyncState.UP_TO_DATE
    assert shown(tablet, mug) == 8 == level(server, mug)
    assert view(tablet) == server.products()


async def test_a_product_deleted_before_the_snapshot_goes_even_with_an_edit_queued_here(
    make_client: ClientFactory, server: Gateway, clock: Clock
) -> None:
    phone, tablet = make_client("phone"), make_client("tablet")
    gone, kept = await stocked_shop(phone, "Gone", "Kept")
    await tablet.sync()
    tablet.edit_product(gone, name="Renamed on the tablet")
    tablet.edit_product(kept, name="Kept, renamed")
    server.failures.append(failure(429, Code.RATE_LIMITED, "slow down", retry_after=30))
    await tablet.sync()  # the edits stay queued, not sent
    phone.remove_product(gone)
    await phone.sync()
    server.reset_next_pull = True

    await tablet.sync()  # a snapshot: the product is gone from it, and the feed after it says nothing more

    assert tablet.product(gone) is None
    assert {p.name for p in tablet.products()} == {"Kept, renamed"}
    clock.advance(120)
    assert (await tablet.sync()).state is SyncState.UP_TO_DATE
    assert view(tablet) == server.products()


async def test_a_movement_applied_but_not_pulled_back_is_inside_the_snapshot(
    make_client: ClientFactory, server: Gateway
) -> None:
    feed_answers: list[httpx.Response] = []

    async def scripted_feed(request: httpx.Request) -> httpx.Response:
        if request.url.path == FEED and feed_answers:
            return feed_answers.pop(0)
        return await server.handle(request)

    unavailable = failure(503, Code.UNAVAILABLE, "the inventory service is unavailable", retry_after=1)
    phone = make_client("phone", transport=httpx.MockTransport(scripted_feed))
    [mug] = await stocked_shop(phone, "Mug")
    phone.stock_in(mug, 5)
    feed_answers.append(unavailable)
    assert (await phone.sync()).state is SyncState.SYNCING  # applied, not pulled back
    assert shown(phone, mug) == 7
    feed_answers.extend([failure(409, Code.RESET_REQUIRED, "the checkpoint is too old"), unavailable])

    status = await phone.sync()  # RESET_REQUIRED, the snapshot, then the feed fails again

    assert status.state is SyncState.SYNCING  # the second failing sync in a row
    assert phone.store.checkpoint is not None  # the snapshot is stored
    assert shown(phone, mug) == 7  # the snapshot's 7 holds the applied movement: not 7 + 5


async def test_a_movement_in_doubt_holds_the_snapshot_back_until_it_is_settled(
    make_client: ClientFactory, server: Gateway, clock: Clock
) -> None:
    phone = make_client("phone")
    [mug] = await stocked_shop(phone, "Mug")
    server.pending_rate = 1.0
    phone.stock_in(mug, 4)
    await phone.sync()  # 202 pending: sent, no final answer
    await server.deliver_held_back()  # applied before the snapshot would be taken; the device does not know
    server.pending_rate = 0.0
    server.reset_next_pull = True
    snapshots = server.requested("phone", SNAPSHOT)

    status = await phone.sync()  # not due: nothing is sent; the feed says RESET_REQUIRED

    assert status.state is SyncState.SYNCING
    assert "waits for the server's final answer" in (status.last_error or "")
    assert server.requested("phone", SNAPSHOT) == snapshots  # no snapshot while the movement is in doubt
    assert phone.store.checkpoint is None
    assert shown(phone, mug) == 2 + 4  # what it showed, kept: not the snapshot's 6 plus the queued 4 again

    await phone.sync()  # still nothing due: still waiting
    assert server.requested("phone", SNAPSHOT) == snapshots
    clock.advance(120)
    status = await phone.sync()  # resent, answered duplicate: settled, and the snapshot follows

    assert status.state is SyncState.UP_TO_DATE
    assert server.requested("phone", SNAPSHOT) == snapshots + 1
    assert shown(phone, mug) == 6 == level(server, mug)


async def test_an_interrupted_snapshot_resumes_from_its_cursor(make_client: ClientFactory, server: Gateway) -> None:
    phone = make_client("phone")
    products = await stocked_shop(phone, "A", "B", "C")
    server.snapshot_page_size = 1
    server.snapshot_cursors.clear()
    pages = 0

    async def cut_on_the_third_page(request: httpx.Request) -> httpx.Response:
        nonlocal pages
        if request.url.path == SNAPSHOT:
            pages += 1
            if pages == 3:
                raise httpx.ConnectError("cut", request=request)
        return await server.handle(request)

    tablet = make_client("tablet", transport=httpx.MockTransport(cut_on_the_third_page))
    assert (await tablet.sync()).state is SyncState.OFFLINE
    assert len(tablet.products()) == 2
    assert tablet.store.checkpoint is None
    assert stored_status(tablet.store, engine_running=False).progress == SyncProgress("snapshot", 2, 3)
    phone.stock_in(products[0], 100)  # meanwhile, after C
    await phone.sync()

    restarted = make_client("tablet")  # the same profile, the connection back
    status = await restarted.sync()

    assert status.state is SyncState.UP_TO_DATE
    assert view(restarted) == server.products()
    assert shown(restarted, products[0]) == 102
    resumed = checkpoints(server.snapshot_cursors)
    assert resumed[0] is None
    assert resumed[1:] == [resumed[1]] * 2  # pages 2 and 3 of the same snapshot, page 1 never again
    assert restarted.store.snapshot_progress() is None


async def test_reset_required_on_a_later_snapshot_page_starts_the_snapshot_again(
    make_client: ClientFactory, server: Gateway
) -> None:
    phone = make_client("phone")
    a, b, c = await stocked_shop(phone, "A", "B", "C")
    server.snapshot_page_size = 1
    server.snapshot_cursors.clear()
    server.reset_next_snapshot_page = True
    moved = False

    async def phone_moves_stock_after_the_first_page(request: httpx.Request) -> httpx.Response:
        nonlocal moved
        answer = await server.handle(request)
        if request.url.path == SNAPSHOT and not moved:
            moved = True  # after the first snapshot's C, before the new snapshot's
            for product in (a, b, c):
                phone.stock_in(product, 1)
            await phone.sync()
        return answer

    tablet = make_client("tablet", transport=httpx.MockTransport(phone_moves_stock_after_the_first_page))
    status = await tablet.sync()

    assert status.state is SyncState.UP_TO_DATE
    assert view(tablet) == server.products()
    assert [shown(tablet, p) for p in (a, b, c)] == [3, 5, 7]
    first, refused, *again = checkpoints(server.snapshot_cursors)
    assert (first, again[0]) == (None, None)  # the 409 on page 2 sent it back to page 1
    assert refused is not None
    assert again[1:] == [again[1]] * 2
    assert again[1] is not None
    assert int(again[1]) > int(refused)  # a new snapshot, with a later C


async def test_the_status_and_the_callback_tell_how_far_the_download_is(
    make_client: ClientFactory, server: Gateway
) -> None:
    phone = make_client("phone")
    await stocked_shop(phone, "A", "B", "C")
    server.snapshot_page_size = 1
    tablet = make_client("tablet")
    told: list[SyncProgress] = []
    statuses: list[SyncStatus] = []
    tablet.engine.hub.subscribe(statuses.append)

    status = await tablet.sync(told.append)

    assert [(p.phase, p.done, p.total) for p in told] == [
        ("snapshot", 1, 3),
        ("snapshot", 2, 3),
        ("snapshot", 3, 3),
        ("feed", 0, 0),
    ]
    during = [s for s in statuses if s.progress is not None and s.progress.phase == "snapshot"]
    assert [s.state for s in during] == [SyncState.SYNCING] * 3
    assert "products 2 of 3" in during[1].describe()
    assert status.progress is None  # over once the sync ends

    for name in ("D", "E", "F", "G", "H"):
        phone.add_product(name)
    await phone.sync()
    server.feed_page_size = 2
    told.clear()
    tablet.add_product("Tablet's")
    await tablet.sync(told.append)

    assert [(p.phase, p.done, p.total) for p in told] == [
        ("upload", 1, 1),
        ("feed", 2, 6),
        ("feed", 4, 6),
        ("feed", 6, 6),
    ]
