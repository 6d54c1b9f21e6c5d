"""What operators see of the running stack: a real Prometheus scraping it, and its JSON logs."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from tests.support.ops import create_product, earlier, movement, update_product
from tests.support.prometheus import (
    GATEWAY_JOB,
    INVENTORY_JOB,
    WORKER_JOB,
    PrometheusServer,
    names_used_by_infra,
    running_prometheus,
)
from tests.support.stack import Stack, user_token

PROMETHEUS_WAIT_SECONDS = 60.0
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


async def _sync_traffic(gateway: httpx.AsyncClient, tenant_id: uuid.UUID) -> None:
    """Requests that exercise the sync path: applied, conflict, duplicate, rejected, replayed, pulled."""
    product = uuid.uuid4()
    created = create_product(tenant_id, product)
    first = {"operations": [created, movement(tenant_id, product, "entry", 3)]}
    response = await gateway.post("/api/sync", json=first)
    assert response.status_code == 200, response.text
    stale = update_product(tenant_id, product, modified_at=earlier(3600), name="older edit")
    response = await gateway.post("/api/sync", json={"operations": [stale]})
    assert response.json()["results"][0]["status"] == "conflict", response.text
    response = await gateway.post("/api/sync", json=first)  # a device retrying: duplicates
    assert [r["status"] for r in response.json()["results"]] == ["duplicate", "duplicate"], response.text
    foreign = movement(uuid.uuid4(), product, "entry", 1)
    response = await gateway.post("/api/sync", json={"operations": [foreign]})
    assert response.json()["results"][0]["code"] == "TENANT_MISMATCH", response.text
    batch = {"operations": [movement(tenant_id, product, "exit", 1), movement(tenant_id, product, "entry", 2)]}
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    for _ in range(2):  # the second is a replay
        response = await gateway.post("/api/sync", json=batch, headers=headers)
        assert response.status_code == 200, response.text
    response = await gateway.get("/api/sync/changes")  # the inventory's change feed, through the gateway
    assert response.status_code == 200, response.text


async def _prometheus_state(client: httpx.AsyncClient) -> tuple[dict[str, str], set[str], dict[str, str]]:
    """(job -> target health or last error, metric names stored, alert -> rule health or error)."""
    targets = (await client.get("/api/v1/targets")).json()["data"]["activeTargets"]
    health = {
        target["labels"]["job"]: target["health"]
        if target["health"] == "up"
        else f"{target['health']}: {target['lastError']}"
        for target in targets
    }
    names = set((await client.get("/api/v1/label/__name__/values")).json()["data"])
    rules: dict[str, str] = {}
    for group in (await client.get("/api/v1/rules")).json()["data"]["groups"]:
        for rule in group["rules"]:
            rules[rule["name"]] = (
                rule["health"] if rule["health"] == "ok" else f"{rule['health']}: {rule.get('lastError')}"
            )
    return health, names, rules


async def _wait_for_everything(server: PrometheusServer, needed: dict[str, set[str]]) -> None:
    deadline = time.monotonic() + PROMETHEUS_WAIT_SECONDS
    async with httpx.AsyncClient(base_url=server.url, timeout=5) as client:
        while True:
            health, names, rules = await _prometheus_state(client)
            down = {job: state for job, state in health.items() if state != "up"}
            missing = {name: sorted(where) for name, where in needed.items() if name not in names}
            unhealthy = {name: state for name, state in rules.items() if state != "ok"}
            complete = set(health) == {GATEWAY_JOB, INVENTORY_JOB, WORKER_JOB} and rules
            if complete and not down and not missing and not unhealthy:
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"after {PROMETHEUS_WAIT_SECONDS:.0f}s: targets {health}, down {down}; "
                    f"series used by infra/ but never scraped {missing}; rules not evaluated cleanly {unhealthy}\n"
                    f"prometheus log:\n{server.log_tail()}"
                )
            await asyncio.sleep(0.5)


async def test_prometheus_scrapes_every_service_and_every_series_infra_uses(
    stack: Stack, gateway: httpx.AsyncClient, tenant_id: uuid.UUID, tmp_path: Path
) -> None:
    await _sync_traffic(gateway, tenant_id)
    targets = {
        GATEWAY_JOB: f"127.0.0.1:{stack.gateway_metrics_port}",
        INVENTORY_JOB: f"127.0.0.1:{stack.inventory_port}",
        WORKER_JOB: f"127.0.0.1:{stack.worker_metrics_port}",
    }
    needed = names_used_by_infra()
    with running_prometheus(targets, tmp_path / "prometheus") as server:
        await _wait_for_everything(server, needed)


def _json_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
    return lines


async def _wait_for_line(path: Path, wanted: dict[str, Any], within_seconds: float = 10.0) -> dict[str, Any]:
    """The first JSON log line of ``path`` whose fields include ``wanted`` (the worker logs just after replying)."""
    deadline = time.monotonic() + within_seconds
    while True:
        for entry in _json_lines(path):
            if all(entry.get(key) == value for key, value in wanted.items()):
                return entry
        if time.monotonic() > deadline:
            raise AssertionError(f"no log line with {wanted} in {path.name}")
        await asyncio.sleep(0.2)


async def test_a_sync_request_is_logged_with_its_request_id_and_never_its_token(
    stack: Stack, tenant_id: uuid.UUID
) -> None:
    token = user_token(tenant_id, user_id="log-checker")
    request_id = f"logtest-{uuid.uuid4().hex}"
    product = uuid.uuid4()
    operations = [create_product(tenant_id, product), movement(tenant_id, product, "entry", 2)]
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=30) as client:
        response = await client.post(
            "/api/sync",
            json={"operations": operations},
            headers={"Authorization": f"Bearer {token}", "X-Request-Id": request_id},
        )
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == request_id

    gateway_log = stack.processes["gateway"].log_path
    worker_log = stack.processes["worker"].log_path
    request_line = await _wait_for_line(gateway_log, {"request_id": request_id, "message": "request"})
    assert request_line["route"] == "/api/sync"
    assert request_line["status"] == 200
    assert request_line["tenant_id"] == str(tenant_id)
    assert request_line["user_id"] == "log-checker"
    applied_line = await _wait_for_line(worker_log, {"request_id": request_id, "message": "batch applied"})
    assert applied_line["tenant_id"] == str(tenant_id)
    assert applied_line["operation_ids"] == [op["operationId"] for op in operations]

    for process in stack.processes.values():
        text = process.log_path.read_text(errors="replace")
        assert token not in text, f"{process.name} logged the bearer token"
        assert "Bearer " not in text, f"{process.name} logged an Authorization header"
        assert not _JWT.search(text), f"{process.name} logged a JWT: {_JWT.search(text)}"
