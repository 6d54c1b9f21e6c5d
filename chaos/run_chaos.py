"""``make chaos``: the long chaos run against the local services; prints what it did and what it found.

Starts its own gateway, inventory and worker (own queue, own Redis key prefix, the test database),
runs simulated devices through repeated faults (see ``tests/support/chaos.py``), checks Postgres and
every device's pulled copy, stops everything it started, and exits 1 unless lost, doubled and
diverged (and every other check) are 0.

    make chaos                                       # proxy cuts stand in for restarts
    .venv/bin/python chaos/run_chaos.py --devices 40 --fault-rounds 5
    .venv/bin/python chaos/run_chaos.py --real-restarts   # restarts the real RabbitMQ and Postgres
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stockzen_inventory.adapters.migrations import migrate, prepare_database
from tests.support.chaos import Chaos, ChaosConfig, ChaosReport
from tests.support.services import service_urls
from tests.support.stack import Stack


async def run(config: ChaosConfig, logs: Path) -> ChaosReport:
    with service_urls() as urls:
        await prepare_database(urls.admin_server_url, urls.app_url)
        await migrate(urls.admin_server_url, urls.app_url)
        return await Chaos(urls, Stack(urls, logs, name="chaos"), config).run()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=5)
    parser.add_argument("--devices", type=int, default=30)
    parser.add_argument("--min-rounds", type=int, default=40, help="batches per device at least")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--fault-rounds", type=int, default=3, help="how many times each fault is injected")
    parser.add_argument("--outage-seconds", type=float, default=3.0)
    parser.add_argument("--seconds", type=float, default=300.0, help="hard bound on the pushing phase")
    parser.add_argument("--real-restarts", action="store_true", help="restart the real broker and Postgres")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    config = ChaosConfig(
        tenants=args.tenants,
        devices=args.devices,
        min_rounds=args.min_rounds,
        max_rounds=max(args.min_rounds, 200),
        batch_size=args.batch_size,
        fault_rounds=args.fault_rounds,
        outage_seconds=args.outage_seconds,
        seconds=args.seconds,
        real_restarts=args.real_restarts,
        seed=args.seed,
    )
    logs = Path(tempfile.mkdtemp(prefix="stockzen-chaos-"))
    report = asyncio.run(run(config, logs))
    print("\n".join(report.lines()))
    if report.held:
        shutil.rmtree(logs)
        return 0
    print(f"the services' logs are kept in {logs}")  # to find what broke a promise
    return 1


if __name__ == "__main__":
    sys.exit(main())
