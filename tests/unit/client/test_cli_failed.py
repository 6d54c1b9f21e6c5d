"""``stockzen failed`` lists the changes the server refused for good; ``stockzen discard`` lets them go."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from stockzen_client import Profile, StockzenClient, SyncState
from stockzen_client.cli import app
from stockzen_contracts import Code, ItemResult, SyncResponse
from tests.support.fake_gateway import SERVER_URL
from tests.unit.client.conftest import Gateway, device_token


@pytest.fixture
def refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, server: Gateway, tenant_id: uuid.UUID) -> list[str]:
    """A profile ``shop`` whose last sync left two refused changes and one queued; their operation ids."""
    monkeypatch.setenv("STOCKZEN_HOME", str(tmp_path))
    profile = Profile.create(tmp_path / "shop", SERVER_URL, device_token(tenant_id))
    profile.save()

    async def sync_with_refusals() -> list[str]:
        client = StockzenClient(profile, transport=server.transport("shop"))
        mug = client.add_product("Mug")
        await client.sync()
        client.edit_product(mug, price_cents=999)
        client.stock_in(mug, 3)
        client.stock_in(mug, 1)
        edit, movement, kept = (item.operation_id for item in client.store.sendable(10))
        results = [
            ItemResult.rejected(edit, Code.VALIDATION_ERROR, "payload.priceCents: too large"),
            ItemResult.rejected(movement, Code.OPERATION_ID_REUSED, "seen before"),
            ItemResult.pending(kept),
        ]
        answer = SyncResponse(checkpoint="1", server_time="2026-01-01T00:00:00Z", results=results)  # type: ignore[arg-type]
        server.failures.append(httpx.Response(202, json=answer.to_wire()))
        assert (await client.sync()).state is SyncState.SYNCING
        await client.aclose()
        return [str(edit), str(movement)]

    return asyncio.run(sync_with_refusals())


def run(*args: str) -> tuple[int, str, str]:
    done = CliRunner().invoke(app, list(args))
    return done.exit_code, done.stdout, done.stderr


def test_failed_lists_the_refused_changes_with_their_codes(refused: list[str]) -> None:
    code, out, _ = run("failed", "--profile", "shop", "--json")
    assert code == 0
    listed = json.loads(out)
    assert [(f["operationId"], f["code"], f["status"]) for f in listed] == [
        (refused[0], "VALIDATION_ERROR", "failed"),
        (refused[1], "OPERATION_ID_REUSED", "failed"),
    ]
    assert [f["entityType"] for f in listed] == ["product", "stockMovement"]

    code, out, _ = run("failed", "--profile", "shop")
    lines = out.splitlines()
    assert code == 0
    assert [line.split("\t")[:2] for line in lines] == [
        [refused[0], "VALIDATION_ERROR"],
        [refused[1], "OPERATION_ID_REUSED"],
    ]
    assert "payload.priceCents: too large" in lines[0]


def test_discard_lets_one_or_every_refused_change_go_and_never_a_queued_one(refused: list[str]) -> None:
    code, _, err = run("discard", "--profile", "shop")
    assert code == 1
    assert "--all" in err

    unknown = str(uuid.uuid4())
    code, out, _ = run("discard", refused[0], unknown, "--profile", "shop", "--json")
    assert code == 1
    assert json.loads(out)["operationIds"] == [unknown]
    assert len(json.loads(run("failed", "--profile", "shop", "--json")[1])) == 2  # nothing discarded

    code, out, _ = run("discard", refused[0], "--profile", "shop", "--json")
    assert (code, json.loads(out)) == (0, {"discarded": [refused[0]]})
    assert [f["operationId"] for f in json.loads(run("failed", "--profile", "shop", "--json")[1])] == [refused[1]]

    code, out, _ = run("discard", "--all", "--profile", "shop")
    assert (code, out) == (0, "Discarded 1 refused change(s).\n")
    assert run("failed", "--profile", "shop")[1] == "No refused changes.\n"
    status = json.loads(run("status", "--profile", "shop", "--json")[1])
    assert (status["queued"], status["failed"], status["failedChanges"]) == (1, 0, [])  # the pending one stays
