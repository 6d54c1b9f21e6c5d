"""``make chaos``: the long chaos run against the local services; prints what it did and what it found.

Starts its own gateway, inventory and worker (own queue, own Redis key prefix, the test database),
runs simulated devices through repeated faults (see ``tests/support/chaos.py``) and, in a tenant of
their own, real clients (Python ``StockzenClient`` devices and tabs of the browser app in Debian's
Chromium) through a faulty link in front of the gateway (``tests/support/chaos_clients.py``), checks
Postgres, every simulated device's pulled copy and every real client's own view, outbox and changes,
stops everything it started, and exits 1 unless lost, doubled and diverged (and every other check)
are 0.

    make chaos                                       # proxy cuts stand in for restarts
    .venv/bin/python chaos/run_chaos.py --devices 40 --fault-rounds 5
    .venv/bin/python chaos/run_chaos.py --real-restarts   # restarts the real RabbitMQ and Postgres
    .venv/bin/python chaos/run_chaos.py --browser-tabs 2,1 --python-devices 5 --link-fault-rate 0.3
    .venv/bin/python chaos/run_chaos.py --no-clients      # the simulated devices only
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
from tests.support.chaos_clients import ClientChaosConfig
from tests.support.faulty_link import LinkRates
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
    clients = parser.add_argument_group("real clients (through a faulty link, in a tenant of their own)")
    clients.add_argument("--no-clients", action="store_true", help="run the simulated devices only")
    clients.add_argument("--python-devices", type=int, default=5, help="StockzenClient devices")
    clients.add_argument(
        "--browser-tabs",
        default="2,1",
        help="tabs of each browser device, comma-separated (one context and user each; '' for none)",
    )
    clients.add_argument("--client-actions", type=int, default=20, help="changes per device and tab at least")
    clients.add_argument(
        "--link-fault-rate",
        type=float,
        default=0.24,
        help="share of the link's API requests hit by a fault (a third of it answers dropped, the rest "
        "resets, 503s and 429s in equal parts)",
    )
    clients.add_argument("--link-outage-seconds", type=float, default=3.0)
    args = parser.parse_args()
    rate = args.link_fault_rate
    client_config = ClientChaosConfig(
        python_devices=args.python_devices,
        browser_tabs=tuple(int(n) for n in args.browser_tabs.split(",") if n.strip()),
        products_per_device=3,
        min_actions=args.client_actions,
        max_actions=max(args.client_actions, 150),
        pause_seconds=0.6,
        rates=LinkRates(
            answer_dropped=rate / 3, reset=rate * 2 / 9, unavailable=rate * 2 / 9, rate_limited=rate * 2 / 9
        ),
        link_outage_seconds=args.link_outage_seconds,
        backoff_cap=4.0,
        settle_seconds=120.0,
    )
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
        clients=None if args.no_clients else client_config,
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
