"""The ``stockzen`` command, run as a real process against the real stack."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from tests.support.db import stock_level
from tests.support.processes import free_port
from tests.support.retry import eventually
from tests.support.stack import Stack, user_token

STOCKZEN = str(Path(sys.executable).with_name("stockzen"))


class Cli:
    """Runs ``stockzen`` with its own ``$STOCKZEN_HOME``, never on a terminal (so plain text or JSON)."""

    def __init__(self, home: Path) -> None:
        self.env = {**os.environ, "STOCKZEN_HOME": str(home)}

    async def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(
            subprocess.run, [STOCKZEN, *args], env=self.env, capture_output=True, text=True, timeout=60, check=False
        )

    async def json(self, *args: str) -> Any:
        done = await self.run(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


async def test_a_new_user_logs_in_works_offline_and_syncs(
    stack: Stack, tmp_path: Path, tenant_id: uuid.UUID, admin: asyncpg.Connection
) -> None:
    cli = Cli(tmp_path)
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens: the user is offline
    login = await cli.json("login", "--server", nowhere, "--token", user_token(tenant_id, "cli-user"))
    assert login["tenantId"] == str(tenant_id)

    product = (await cli.json("product", "add", "Blue mug", "--sku", "MUG-1", "--price-cents", "1299"))["id"]
    await cli.json("stock", "in", product, "12", "--reason", "delivery")
    await cli.json("stock", "out", product, "5")
    [listed] = await cli.json("product", "ls")
    assert (listed["name"], listed["stockLevel"], listed["queuedChanges"]) == ("Blue mug", 7, 1)

    offline = await cli.run("sync")
    assert offline.returncode == 1
    assert offline.stderr.count("\n") == 1
    assert "not up to date: the server cannot be reached" in offline.stderr
    status = await cli.json("status")
    assert (status["state"], status["queued"]) == ("offline", 3)
    plain = await cli.run("status")
    assert plain.stdout.startswith("○ offline · 3 queued")

    await cli.json("login", "--server", stack.gateway_url, "--token", user_token(tenant_id, "cli-user"))
    synced = await cli.json("sync")
    assert (synced["state"], synced["queued"]) == ("upToDate", 0)
    assert (await cli.json("status"))["state"] == "upToDate"
    assert (await cli.run("status")).stdout.startswith("✓ up to date · 0 queued · 0 failed")
    assert await stock_level(admin, tenant_id, uuid.UUID(product)) == 7
    history = await cli.json("history", product)
    assert [(m["kind"], m["quantity"], m["queued"]) for m in history] == [("exit", 5, False), ("entry", 12, False)]


async def test_failures_are_one_sentence_and_a_non_zero_exit(tmp_path: Path, tenant_id: uuid.UUID) -> None:
    cli = Cli(tmp_path)
    not_logged_in = await cli.run("product", "ls")
    assert not_logged_in.returncode == 1
    assert not_logged_in.stderr == "Error: not logged in: run `stockzen login --server URL` first\n"

    await cli.json("login", "--server", "http://127.0.0.1:9", "--token", user_token(tenant_id))
    unknown = await cli.run("stock", "in", str(uuid.uuid4()), "3", "--json")
    assert unknown.returncode == 1
    assert json.loads(unknown.stdout)["message"].startswith("there is no product")
    product = (await cli.json("product", "add", "Mug"))["id"]
    invalid = await cli.run("stock", "out", product, "0")
    assert invalid.returncode == 1
    assert "quantity" in invalid.stderr
    assert (await cli.json("status"))["queued"] == 1  # nothing but the valid change was queued


async def test_watch_syncs_changes_another_process_queues_and_stops_cleanly_on_ctrl_c(
    stack: Stack, tmp_path: Path, tenant_id: uuid.UUID, admin: asyncpg.Connection
) -> None:
    cli = Cli(tmp_path)
    await cli.json("login", "--server", stack.gateway_url, "--token", user_token(tenant_id, "watcher"))
    product = uuid.UUID((await cli.json("product", "add", "Watched"))["id"])
    watcher = await asyncio.create_subprocess_exec(
        STOCKZEN, "watch", "--json", env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        await cli.json("stock", "in", str(product), "6")  # another terminal, while watch runs

        async def synced() -> bool:
            return await stock_level(admin, tenant_id, product) == 6

        await eventually(synced, seconds=30)
        status = await cli.json("status")
        assert status["queued"] == 0
        watcher.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(watcher.communicate(), 20)
    finally:
        if watcher.returncode is None:
            watcher.kill()
            await watcher.wait()
    assert watcher.returncode == 0, err
    states = [json.loads(line)["state"] for line in out.decode().splitlines()]
    assert "syncing" in states
    assert states[-1] == "upToDate"


async def test_a_change_the_server_refuses_for_good_is_listed_and_can_be_discarded(
    stack: Stack, tmp_path: Path, tenant_id: uuid.UUID
) -> None:
    cli = Cli(tmp_path)
    for profile in ("shop", "van"):
        token = user_token(tenant_id, f"{profile}-user")
        await cli.json("login", "--server", stack.gateway_url, "--token", token, "--profile", profile)
    product = (await cli.json("product", "add", "Mug", "--profile", "shop"))["id"]
    await cli.json("sync", "--profile", "shop")
    await cli.json("sync", "--profile", "van")
    await cli.json("product", "rm", product, "--profile", "shop")
    await cli.json("sync", "--profile", "shop")
    movement = (await cli.json("stock", "in", product, "3", "--profile", "van"))["id"]  # not heard of the delete

    synced = await cli.json("sync", "--profile", "van")  # refused changes wait for the user, not the server

    assert (synced["state"], synced["queued"], synced["failed"]) == ("upToDate", 0, 1)
    [refused] = await cli.json("failed", "--profile", "van")
    assert (refused["entityId"], refused["productId"], refused["code"]) == (movement, product, "NOT_FOUND")
    plain = await cli.run("failed", "--profile", "van")
    assert plain.stdout.startswith(f"{refused['operationId']}\tNOT_FOUND\tstock movement {movement}")
    nothing = await cli.run("discard", "--profile", "van")
    assert nothing.returncode == 1
    assert "--all" in nothing.stderr

    discarded = await cli.json("discard", refused["operationId"], "--profile", "van")

    assert discarded == {"discarded": [refused["operationId"]]}
    assert await cli.json("failed", "--profile", "van") == []
    status = await cli.json("status", "--profile", "van")
    assert (status["state"], status["queued"], status["failed"], status["failedChanges"]) == ("upToDate", 0, 0, [])
    assert await cli.json("product", "ls", "--profile", "van") == []
