"""Single-operation requests from wrk, and what every process spent on each one.

A Python load generator costs as much CPU per small request as the gateway does, so this part of the
bench drives the gateway with wrk (Debian's package, installed by ``scripts/ensure_tools.sh``) and
``bench/wrk_single_op.lua``: one stock movement per ``POST /api/sync``, fresh ids per request, tenants
taken in turn, each request carrying a token minted here. Around each run it reads ``/proc`` for the CPU
of the gateway's and the worker's process trees, the Postgres backends of the bench's database, the
RabbitMQ and Redis servers (found by the port they listen on) and wrk itself, and divides each by the
requests answered ``200``.

Postgres' shared background processes (WAL writer, checkpointer) and anything else sharing RabbitMQ or
Redis with the bench are not told apart: on a busy machine those two figures carry others' work too.
"""

from __future__ import annotations

import asyncio
import os
import re
import resource
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import httpx

from bench import profiling
from tests.support.ops import create_product
from tests.support.services import ServiceUrls
from tests.support.stack import user_token

LUA_SCRIPT = Path(__file__).resolve().parent / "wrk_single_op.lua"
_SUMMARY = re.compile(
    r"stockzen-wrk requests=(\d+) duration_us=(\d+) ok=(\d+) other=(\d+) socket_errors=(\d+) p50_us=(\d+) p99_us=(\d+)"
)


@dataclass(frozen=True)
class Target:
    """A tenant the requests write to: its token and the product its movements move."""

    tenant_id: uuid.UUID
    product_id: uuid.UUID
    token: str


@dataclass
class WrkRun:
    """One wrk run at one connection count."""

    connections: int
    seconds: float
    requests: int
    ok: int  # answered 200 (every item final)
    other: int  # any other status
    socket_errors: int
    p50_ms: float
    p99_ms: float
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds per process (tree) during the run

    @property
    def per_second(self) -> float:
        """Requests answered 200 per second."""
        return self.ok / self.seconds

    def cpu_per_request_us(self) -> dict[str, float]:
        """Microseconds of CPU per request answered 200, per process (tree)."""
        return {name: used / self.ok * 1e6 for name, used in self.cpu.items()} if self.ok else {}


async def make_targets(gateway_url: str, tenants: int) -> list[Target]:
    """``tenants`` new tenants, each with one product created through the gateway."""
    targets = [Target(uuid.uuid4(), uuid.uuid4(), "") for _ in range(tenants)]
    targets = [
        Target(t.tenant_id, t.product_id, user_token(t.tenant_id, "bench-wrk", ttl_seconds=3600)) for t in targets
    ]
    async with httpx.AsyncClient(base_url=gateway_url, timeout=60) as client:
        for target in targets:
            body = {"operations": [create_product(target.tenant_id, target.product_id, name="wrk")]}
            response = await client.post("/api/sync", json=body, headers={"Authorization": f"Bearer {target.token}"})
            response.raise_for_status()
    return targets


def listener_pid(port: int) -> int | None:
    """The process listening on TCP ``port`` (from ``/proc``; ``None`` if none is found)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rpartition(":")[2], 16) == port:  # 0A: LISTEN
                inodes.add(f"socket:[{inode}]")
    if not inodes:
        return None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                if fd.readlink().as_posix() in inodes:
                    return int(entry.name)
        except OSError:
            continue
    return None


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _own_cpu(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _backends(admin_url: str, database: str) -> dict[int, float]:
    """CPU seconds so far of each Postgres backend connected to ``database`` (this query's own left out)."""
    connection = await asyncpg.connect(admin_url)
    try:
        rows = await connection.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", database
        )
    finally:
        await connection.close()
    found = {row["pid"]: _own_cpu(row["pid"]) for row in rows}
    return {pid: used for pid, used in found.items() if used is not None}


class CpuMeter:
    """CPU used by each process (tree) of the path between :meth:`start` and :meth:`stop`."""

    def __init__(self, services: Mapping[str, int], urls: ServiceUrls) -> None:
        self._urls = urls
        self._database = urls.app_url.rsplit("/", 1)[1]
        self._trees = dict(services)
        for name, url in (("rabbitmq", urls.amqp_url), ("redis", urls.redis_url)):
            port = urlsplit(url).port
            pid = listener_pid(port) if port else None
            if pid is not None and _command(pid) != "docker-proxy":  # a container's CPU is not visible here
                self._trees[name] = pid
        self._trees_before: dict[str, float | None] = {}
        self._backends_before: dict[int, float] = {}
        self._children_before = 0.0

    async def start(self) -> None:
        self._backends_before = await _backends(self._urls.admin_url, self._database)
        self._trees_before = {name: profiling.cpu_seconds(pid) for name, pid in self._trees.items()}
        self._children_before = _reaped_children_cpu()

    async def stop(self) -> dict[str, float]:
        used = {}
        for name, pid in self._trees.items():
            start, now = self._trees_before.get(name), profiling.cpu_seconds(pid)
            if start is not None and now is not None:
                used[name] = now - start
        backends = await _backends(self._urls.admin_url, self._database)
        # A backend that started during the run counts from zero; one that ended is lost (pools keep theirs).
        used["postgres"] = sum(now - self._backends_before.get(pid, 0.0) for pid, now in backends.items())
        used["wrk"] = _reaped_children_cpu() - self._children_before
        return used


def _reaped_children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _wrk() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise RuntimeError("wrk is missing: run `bash scripts/ensure_tools.sh` (Debian's wrk package)")
    return found


async def run_wrk(gateway_url: str, targets_file: Path, connections: int, seconds: float) -> WrkRun:
    """One wrk run against ``POST /api/sync``; 2 threads (or fewer, for fewer connections)."""
    duration = max(1, round(seconds))
    args = [
        _wrk(),
        "--threads",
        str(min(2, connections)),
        "--connections",
        str(connections),
        "--duration",
        f"{duration}s",
        "--timeout",
        "30s",
        "--script",
        str(LUA_SCRIPT),
        f"{gateway_url}/api/sync",
        "--",
        str(targets_file),
        uuid.uuid4().hex[:8],
    ]
    process = await asyncio.create_subprocess_exec(
        *args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )  # reaped by communicate(), so its CPU shows in RUSAGE_CHILDREN
    output, _ = await process.communicate()
    text = output.decode(errors="replace")
    found = _SUMMARY.search(text)
    if process.returncode != 0 or found is None:
        raise RuntimeError(f"wrk failed ({process.returncode}):\n{text}")
    requests, duration_us, ok, other, socket_errors, p50_us, p99_us = (int(g) for g in found.groups())
    return WrkRun(
        connections=connections,
        seconds=duration_us / 1e6,
        requests=requests,
        ok=ok,
        other=other,
        socket_errors=socket_errors,
        p50_ms=p50_us / 1000,
        p99_ms=p99_us / 1000,
    )


async def measure(
    gateway_url: str,
    services: Mapping[str, int],
    urls: ServiceUrls,
    connection_counts: Sequence[int],
    seconds: float,
    tenants: int = 16,
) -> list[WrkRun]:
    """wrk at each connection count in turn (after a 1 s warm-up), with the CPU each process used."""
    targets = await make_targets(gateway_url, tenants)
    runs = []
    with tempfile.TemporaryDirectory(prefix="stockzen-wrk-") as directory:
        targets_file = _write_targets(Path(directory), targets)
        await run_wrk(gateway_url, targets_file, max(connection_counts), 1)  # warm up
        for connections in connection_counts:
            meter = CpuMeter(services, urls)
            await meter.start()
            run = await run_wrk(gateway_url, targets_file, connections, seconds)
            run.cpu = await meter.stop()
            runs.append(run)
    return runs


def _write_targets(directory: Path, targets: Sequence[Target]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "targets.txt"
    path.write_text("".join(f"{t.token} {t.tenant_id} {t.product_id}\n" for t in targets))
    return path


def report(runs: Sequence[WrkRun], batch_ops_per_second: float | None, batch_size: int | None) -> list[str]:
    """The lines ``make bench`` prints for these runs."""
    lines = []
    for run in runs:
        versus = (
            f", {run.per_second / batch_ops_per_second:.3f} x the batch-{batch_size} throughput"
            if batch_ops_per_second
            else ""
        )
        lines.append(
            f"single-operation requests (wrk, {run.connections} connections): {run.per_second:.0f} requests/s, "
            f"p50 {run.p50_ms:.1f} ms, p99 {run.p99_ms:.1f} ms{versus}; "
            f"{run.other} not 200, {run.socket_errors} socket errors"
        )
        per_request = run.cpu_per_request_us()
        total = sum(us for name, us in per_request.items() if name != "wrk")
        parts = ", ".join(f"{name} {us:.0f}" for name, us in per_request.items())
        lines.append(f"  CPU us per request, {run.connections} connections: {parts}; all but wrk {total:.0f}")
    return lines


async def _standalone(connection_counts: Sequence[int], seconds: float, profile_dir: Path | None) -> None:
    # Imported here: bench.throughput imports this module.
    from bench.throughput import BENCH_DATABASE, _drop_database, stacks
    from stockzen_inventory.adapters.migrations import migrate, prepare_database
    from tests.support.services import service_urls

    with service_urls() as urls, tempfile.TemporaryDirectory(prefix="stockzen-bench-") as log_dir:
        database = urls.app_url.rsplit("/", 1)[1]
        if database.startswith(BENCH_DATABASE):
            await _drop_database(urls.admin_server_url, database)
        await prepare_database(urls.admin_server_url, urls.app_url)
        await migrate(urls.admin_server_url, urls.app_url)
        with stacks(urls, Path(log_dir), 1) as running:
            pids = {name: running[0].processes[name].pid for name in ("worker", "gateway")}
            runs = await measure(running[0].gateway_url, pids, urls, connection_counts, seconds)
            for line in report(runs, None, None):
                print(line)
            if profile_dir is not None:
                targets_file = _write_targets(profile_dir, await make_targets(running[0].gateway_url, 16))
                with profiling.sampled(pids, profile_dir, seconds):
                    await run_wrk(running[0].gateway_url, targets_file, max(connection_counts), seconds)
                for name in pids:
                    print(profiling.summary(profile_dir / f"{name}.txt", top=25))
            await running[0].delete_queues()


def main() -> None:
    """``python -m bench.single_ops``: the wrk part of ``make bench`` alone, on a stack of its own."""
    import argparse

    import uvloop

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--connections", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--profile", type=Path, help="then py-spy the gateway and worker under wrk, here")
    args = parser.parse_args()
    if not os.environ.get("TEST_DATABASE_NAME", "").startswith("stockzen_bench"):
        os.environ["TEST_DATABASE_NAME"] = "stockzen_bench"
    uvloop.run(_standalone(args.connections, args.seconds, args.profile))


if __name__ == "__main__":
    main()
