"""A deterministic simulation: several devices edit offline at random, lose and regain their
connection, and meet a server that holds batches back as ``pending``, pages its feed and its
snapshots and now and then asks for a full download (sometimes again in the middle of one); once
everyone syncs, every device shows exactly what the server holds.

Seeded (one seed per case) so that a failure replays exactly.
"""

from __future__ import annotations

import random

import pytest

from stockzen_client import StockzenClient, SyncState
from tests.unit.client.conftest import ClientFactory, Clock, Gateway

DEVICES = ("phone", "tablet", "till")
STEPS = 120


def _view(client: StockzenClient) -> dict[object, dict[str, object]]:
    return {p.id: {**p.fields(), "stock_level": p.stock_level} for p in client.products()}


def _local_change(rng: random.Random, client: StockzenClient) -> None:
    products = client.products()
    roll = rng.random()
    if not products or roll < 0.25:
        client.add_product(f"item-{rng.randrange(1000)}", price_cents=rng.randrange(0, 5000))
        return
    target = rng.choice(products).id
    if roll < 0.5:
        field, value = rng.choice(
            [
                ("name", f"renamed-{rng.randrange(1000)}"),
                ("price_cents", rng.randrange(5000)),
                ("unit", "box"),
                ("sku", None),
            ]
        )
        client.edit_product(target, **{field: value})
    elif roll < 0.58:
        client.remove_product(target)
    elif roll < 0.8:
        client.stock_in(target, rng.randrange(1, 20))
    else:
        client.stock_out(target, rng.randrange(1, 10))


@pytest.mark.parametrize("seed", range(6))
async def test_every_device_ends_up_equal_to_the_server(
    seed: int, make_client: ClientFactory, server: Gateway, clock: Clock
) -> None:
    rng = random.Random(seed)
    server.rng = random.Random(seed + 1000)
    server.feed_page_size = rng.choice([1, 3, 50])
    server.snapshot_page_size = rng.choice([1, 2, 1000])  # first downloads come in pages too
    clients = {name: make_client(name) for name in DEVICES}
    offline_syncs = 0

    for _ in range(STEPS):
        name = rng.choice(DEVICES)
        client = clients[name]
        action = rng.random()
        if action < 0.45:
            _local_change(rng, client)
        elif action < 0.53:
            server.reachable[name] = not server.reachable[name]
        elif action < 0.85:
            server.pending_rate = rng.choice([0.0, 0.3, 0.6, 0.9])
            offline_syncs += (await client.sync()).state is SyncState.OFFLINE
        elif action < 0.9:
            await server.deliver_held_back()
        elif action < 0.92:
            server.reset_next_pull = True  # the next pull must start over (RESET_REQUIRED): a snapshot
            server.reset_next_snapshot_page = rng.random() < 0.5  # whose second page may be refused too
        else:
            clock.advance(rng.choice([0.5, 5, 40]))

    server.pending_rate = 0.0
    for name in DEVICES:
        server.reachable[name] = True
    await server.deliver_held_back()
    for _ in range(12):
        clock.advance(120)  # every backoff is over
        states = [(await client.sync()).state for client in clients.values()]
        if all(state is SyncState.UP_TO_DATE for state in states):
            break
    for client in clients.values():  # everyone pulls what the last pushes changed
        assert (await client.sync()).state is SyncState.UP_TO_DATE

    # The run went through what it is meant to: lost connections and held-back batches.
    assert offline_syncs > 0
    assert server.held_back_total > 0
    expected = server.products()
    assert expected, "the simulation made no products at all"
    for name, client in clients.items():
        assert _view(client) == expected, name
        assert client.status.queued == 0
    assert sum(len(push) for push in server.pushes) >= len(server.data.applied)
