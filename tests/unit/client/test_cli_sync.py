"""``stockzen sync`` draws its progress bar only for a person at a terminal, and ``--json`` stays one
JSON document."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest

from stockzen_client import Profile, StockzenClient, SyncProgress
from stockzen_client import cli as stockzen
from tests.support.fake_gateway import SERVER_URL
from tests.unit.client.conftest import Gateway, device_token


class Bar:
    """Stands for the rich progress bar: what it was shown."""

    def __init__(self) -> None:
        self.shown: list[tuple[str, int, int]] = []

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def show(self, progress: SyncProgress) -> None:
        self.shown.append((progress.phase, progress.done, progress.total))


@pytest.fixture
def bars(monkeypatch: pytest.MonkeyPatch) -> list[Bar]:
    """The bars ``stockzen sync`` makes."""
    made: list[Bar] = []

    def make() -> Bar:
        made.append(Bar())
        return made[-1]

    monkeypatch.setattr(stockzen, "_ProgressBar", make)
    return made


@pytest.fixture
def device(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, server: Gateway, tenant_id: uuid.UUID) -> Gateway:
    """``stockzen sync`` on a new device whose tenant has three products, served by the fake gateway."""
    server.snapshot_page_size = 1
    profile = Profile.create(tmp_path / "tablet", SERVER_URL, device_token(tenant_id))

    def open_client(name: str, settings: object = None) -> StockzenClient:
        return StockzenClient(profile, transport=server.transport("tablet"))

    monkeypatch.setattr(stockzen, "_open", open_client)
    return server


def seed(server: Gateway, tmp_path: Path, tenant_id: uuid.UUID) -> None:
    async def three_products() -> None:
        phone = StockzenClient(
            Profile.create(tmp_path / "phone", SERVER_URL, device_token(tenant_id)), transport=server.transport("phone")
        )
        for name in ("A", "B", "C"):
            phone.add_product(name)
        await phone.sync()
        await phone.aclose()

    asyncio.run(three_products())


@pytest.mark.parametrize("as_json", [False, True])
def test_a_terminal_sees_the_bar_and_json_never_does(
    device: Gateway,
    bars: list[Bar],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    tenant_id: uuid.UUID,
    as_json: bool,
) -> None:
    seed(device, tmp_path, tenant_id)
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)

    stockzen.sync(profile="tablet", as_json=as_json)

    out = capsys.readouterr().out
    if as_json:
        assert bars == []
        assert json.loads(out)["state"] == "upToDate"  # one JSON document, nothing else
    else:
        [bar] = bars
        assert bar.shown[:3] == [("snapshot", 1, 3), ("snapshot", 2, 3), ("snapshot", 3, 3)]
        assert out.startswith("✓ up to date")


def test_no_bar_when_stderr_is_not_a_terminal(
    device: Gateway, bars: list[Bar], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tenant_id: uuid.UUID
) -> None:
    seed(device, tmp_path, tenant_id)
    monkeypatch.setattr("sys.stderr.isatty", lambda: False)

    stockzen.sync(profile="tablet", as_json=False)

    assert bars == []
