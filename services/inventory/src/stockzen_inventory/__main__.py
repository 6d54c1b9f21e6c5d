"""``stockzen-inventory``: serve the read API, or prepare and migrate the database."""

from __future__ import annotations

import argparse
import asyncio
import sys

from stockzen_platform.logging import configure_logging
from stockzen_platform.settings import load_settings

from .adapters.migrations import migrate, prepare_database
from .config import InventorySettings


def main(argv: list[str] | None = None) -> int:
    """Run the command named on the command line."""
    parser = argparse.ArgumentParser(prog="stockzen-inventory")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="serve the inventory HTTP API")
    migrate_cmd = commands.add_parser("migrate", help="create roles and database if missing, apply migrations")
    migrate_cmd.add_argument("--check", action="store_true", help="exit 1 if any migration is pending")
    args = parser.parse_args(argv)

    settings = load_settings(InventorySettings, "stockzen-inventory")
    configure_logging("inventory", settings.log_level, settings.log_format)
    if args.command == "migrate":
        return asyncio.run(_migrate(settings, check_only=args.check))
    return _serve(settings)


async def _migrate(settings: InventorySettings, *, check_only: bool) -> int:
    if check_only:
        pending = await migrate(settings.database_admin_url, settings.database_url, check_only=True)
        if pending:
            print(f"pending migrations: {', '.join(pending)}", file=sys.stderr)
        return 1 if pending else 0
    await prepare_database(settings.database_admin_url, settings.database_url)
    applied = await migrate(settings.database_admin_url, settings.database_url)
    print(f"migrations applied: {', '.join(applied) or 'none pending'}")
    return 0


def _serve(settings: InventorySettings) -> int:
    import uvicorn

    from stockzen_platform.serving import STARTUP_FAILURE, server_config

    from .bootstrap import build_app

    server = uvicorn.Server(
        server_config(build_app(settings), host=settings.host, port=settings.port, settings=settings)
    )
    server.run()
    return 0 if server.started else STARTUP_FAILURE


if __name__ == "__main__":
    sys.exit(main())
