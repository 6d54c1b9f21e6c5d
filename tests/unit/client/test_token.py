"""A running client picks up a new login: each request asks for the token, and the profile's token is
re-read when ``profile.json`` changes, but only for the tenant and user the local data belongs to."""

from __future__ import annotations

import uuid
from pathlib import Path

from stockzen_client import Backoff, Profile, StockzenClient, SyncState
from stockzen_client.adapters.api import GatewayApi, Unauthorized
from stockzen_client.profile import ProfileToken
from tests.support.fake_gateway import SERVER_URL, FakeGateway
from tests.unit.client.conftest import ClientFactory, Clock, device_token, eventually, running

STREAM = "/api/sync/stream"
QUICK = Backoff(base=0.02, cap=0.1)


def log_in(client: StockzenClient, token: str) -> None:
    """What `stockzen login` in another terminal does: save the profile with a new token."""
    Profile.create(client.profile.directory, SERVER_URL, token).save()


async def test_the_api_asks_its_provider_for_the_token_before_each_request(server: FakeGateway) -> None:
    tokens = ["first-token"]
    api = GatewayApi(SERVER_URL, lambda: tokens[-1], transport=server.transport())
    try:
        await api.changes(None)
        tokens.append("second-token")
        await api.changes(None)
    finally:
        await api.aclose()
    assert server.tokens_seen == ["first-token", "second-token"]


async def test_a_refused_token_is_unauthorized_until_the_provider_gives_the_accepted_one(server: FakeGateway) -> None:
    tokens = ["expired"]
    server.accepted_token = "fresh"
    api = GatewayApi(SERVER_URL, lambda: tokens[-1], transport=server.transport())
    try:
        refused: Unauthorized | None = None
        try:
            await api.changes(None)
        except Unauthorized as exc:
            refused = exc
        tokens.append("fresh")
        page = await api.changes(None)
    finally:
        await api.aclose()
    assert refused is not None
    assert "log in again" in str(refused)
    assert page.changes == []


def test_the_profile_token_follows_a_new_login_for_the_same_user(tmp_path: Path, tenant_id: uuid.UUID) -> None:
    directory = tmp_path / "phone"
    first, second = device_token(tenant_id, expires=4_000_000_000), device_token(tenant_id, expires=4_100_000_000)
    profile = Profile.create(directory, SERVER_URL, first)
    profile.save()
    token = ProfileToken(profile)
    assert token() == first

    Profile.create(directory, SERVER_URL, second).save()
    assert token() == second
    assert token.problem() is None

    profile.file.write_text("{not json")  # a damaged file: keep the token that works
    assert token() == second


def test_a_login_as_another_tenant_or_user_is_not_followed(tmp_path: Path, tenant_id: uuid.UUID) -> None:
    directory = tmp_path / "phone"
    profile = Profile.create(directory, SERVER_URL, device_token(tenant_id))
    token = ProfileToken(profile)

    for other in (device_token(uuid.uuid4()), device_token(tenant_id, user="someone-else")):
        Profile.create(directory, SERVER_URL, other).save()
        assert token() == profile.token
        assert "another tenant or user" in (token.problem() or "")

    renewed = device_token(tenant_id, expires=4_100_000_000)
    Profile.create(directory, SERVER_URL, renewed).save()
    assert token() == renewed
    assert token.problem() is None


async def test_another_tenants_login_keeps_the_old_token_and_the_status_says_so(
    make_client: ClientFactory, server: FakeGateway, tenant_id: uuid.UUID
) -> None:
    phone = make_client("phone")
    original = phone.profile.token
    log_in(phone, device_token(uuid.uuid4()))
    product = phone.add_product("Mug")

    status = await phone.sync()

    assert server.tokens_seen[-1] == original  # this database's change went to its own tenant only
    assert product in server.products()
    assert status.state is SyncState.ERROR
    assert "restart to switch" in (status.last_error or "")
    assert "restart to switch" in status.describe()

    log_in(phone, device_token(tenant_id, expires=4_100_000_000))
    status = await phone.sync()
    assert (status.state, status.last_error) == (SyncState.UP_TO_DATE, None)


async def test_a_running_engine_uses_a_new_login_and_its_live_stream_comes_back(
    make_client: ClientFactory, server: FakeGateway, tenant_id: uuid.UUID, clock: Clock
) -> None:
    phone = make_client("phone", backoff=QUICK, tick=0.05, sync_every=300.0)
    fresh = device_token(tenant_id, expires=4_100_000_000)
    server.accepted_token = fresh  # the profile's token has expired
    product = phone.add_product("Made before the new login")
    async with running(phone):
        await eventually(lambda: "log in again" in (phone.status.last_error or ""))
        await eventually(lambda: server.requested("phone", STREAM) >= 1)
        assert server.open_streams == []
        assert phone.status.queued == 1

        log_in(phone, fresh)
        clock.advance(60)  # the refused change's next attempt is due

        await eventually(lambda: phone.status.state is SyncState.UP_TO_DATE and len(server.open_streams) == 1)
        assert product in server.products()
        assert phone.status.queued == 0
        assert server.tokens_seen[-1] == fresh
