"""``stockzen``: the client for people (rich output on a terminal) and scripts (``--json``, plain text)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar
from uuid import UUID

import filelock
import typer
from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from stockzen_client.client import InvalidChange, StockzenClient
from stockzen_client.domain.status import SyncState, SyncStatus
from stockzen_client.engine import EngineSettings, SyncBusy, stored_status
from stockzen_client.profile import DEFAULT_PROFILE, Profile, ProfileError, profile_directory

app = typer.Typer(help="StockZen offline-first inventory: work offline, sync by itself.", no_args_is_help=True)
product_app = typer.Typer(help="Create, edit, delete and list products.", no_args_is_help=True)
stock_app = typer.Typer(help="Record stock entries and exits.", no_args_is_help=True)
app.add_typer(product_app, name="product")
app.add_typer(stock_app, name="stock")

Json = Annotated[bool, typer.Option("--json", help="machine-readable output (one JSON document)")]
ProfileName = Annotated[
    str, typer.Option("--profile", envvar="STOCKZEN_PROFILE", help="which profile under $STOCKZEN_HOME")
]
_T = TypeVar("_T")


class Failure(Exception):
    """A command failed; ``str()`` is the one sentence the user sees, ``details`` go with ``--json``."""

    def __init__(self, message: str, code: str = "FAILED", details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.details = details or {}


class Output:
    """Where a command's answer goes: JSON, rich text on a terminal, or plain lines otherwise."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.console = Console(highlight=False)
        self.errors = Console(stderr=True, highlight=False)

    @property
    def rich(self) -> bool:
        return not self.as_json and self.console.is_terminal

    def result(self, data: Any, text: str) -> None:
        if self.as_json:
            print(json.dumps(data))
        else:
            self.console.print(text, markup=False, soft_wrap=True)

    def fail(self, message: str, code: str = "FAILED", details: dict[str, Any] | None = None) -> None:
        if self.as_json:
            print(json.dumps({"code": code, "message": message, **(details or {})}))
        self.errors.print(f"Error: {message}", markup=False, soft_wrap=True)


@contextmanager
def _command(as_json: bool) -> Iterator[Output]:
    output = Output(as_json)
    try:
        yield output
    except Failure as exc:
        output.fail(str(exc), exc.code, exc.details)
        raise typer.Exit(1) from None
    except (ProfileError, InvalidChange, SyncBusy) as exc:
        output.fail(str(exc))
        raise typer.Exit(1) from None


def _open(profile: str, settings: EngineSettings | None) -> StockzenClient:
    return StockzenClient(Profile.load(profile_directory(profile)), settings=settings)


def _with_client(
    profile: str, work: Callable[[StockzenClient], Awaitable[_T]], settings: EngineSettings | None = None
) -> _T:
    async def run() -> _T:
        client = _open(profile, settings)
        try:
            return await work(client)
        finally:
            await client.aclose()

    return asyncio.run(run())


def _local(profile: str, work: Callable[[StockzenClient], _T]) -> _T:
    async def run(client: StockzenClient) -> _T:
        return work(client)

    return _with_client(profile, run)


@app.command()
def login(
    server: Annotated[str, typer.Option(help="the gateway's URL, e.g. http://localhost:8000")],
    token: Annotated[str, typer.Option(help="a bearer token (`make token` mints one for development)")],
    profile: ProfileName = DEFAULT_PROFILE,
    as_json: Json = False,
) -> None:
    """Keep the server and token for this profile (no network needed)."""
    with _command(as_json) as out:
        signed_in = Profile.create(profile_directory(profile), server, token)
        signed_in.save()
        _local(profile, lambda client: None)  # creates the database
        out.result(
            {
                "profile": profile,
                "serverUrl": signed_in.server_url,
                "tenantId": str(signed_in.tenant_id),
                "userId": signed_in.user_id,
            },
            f"Logged in to {signed_in.server_url} as {signed_in.user_id} (tenant {signed_in.tenant_id}), profile {profile!r}.",
        )


@product_app.command("add")
def product_add(
    name: str,
    sku: Annotated[str | None, typer.Option()] = None,
    barcode: Annotated[str | None, typer.Option()] = None,
    unit: Annotated[str | None, typer.Option()] = None,
    price_cents: Annotated[int | None, typer.Option()] = None,
    low_stock_threshold: Annotated[int | None, typer.Option()] = None,
    profile: ProfileName = DEFAULT_PROFILE,
    as_json: Json = False,
) -> None:
    """Create a product; prints its new id."""
    fields = _given(
        sku=sku, barcode=barcode, unit=unit, price_cents=price_cents, low_stock_threshold=low_stock_threshold
    )
    with _command(as_json) as out:
        product_id = _local(profile, lambda client: client.add_product(name, **fields))
        out.result({"id": str(product_id)}, str(product_id))


@product_app.command("edit")
def product_edit(
    product_id: UUID,
    name: Annotated[str | None, typer.Option()] = None,
    sku: Annotated[str | None, typer.Option()] = None,
    barcode: Annotated[str | None, typer.Option()] = None,
    unit: Annotated[str | None, typer.Option()] = None,
    price_cents: Annotated[int | None, typer.Option()] = None,
    low_stock_threshold: Annotated[int | None, typer.Option()] = None,
    archived: Annotated[bool | None, typer.Option("--archived/--active")] = None,
    profile: ProfileName = DEFAULT_PROFILE,
    as_json: Json = False,
) -> None:
    """Change some fields of a product."""
    changes = _given(
        name=name, sku=sku, barcode=barcode, unit=unit, price_cents=price_cents,
        low_stock_threshold=low_stock_threshold, archived=archived,
    )  # fmt: skip
    with _command(as_json) as out:
        if not changes:
            raise Failure("nothing to change: give at least one option such as --name or --price-cents")
        _local(profile, lambda client: client.edit_product(product_id, **changes))
        out.result({"id": str(product_id), "queued": True}, f"Changed {product_id} (queued to sync).")


@product_app.command("rm")
def product_rm(product_id: UUID, profile: ProfileName = DEFAULT_PROFILE, as_json: Json = False) -> None:
    """Delete a product."""
    with _command(as_json) as out:
        _local(profile, lambda client: client.remove_product(product_id))
        out.result({"id": str(product_id), "queued": True}, f"Deleted {product_id} (queued to sync).")


@product_app.command("ls")
def product_ls(profile: ProfileName = DEFAULT_PROFILE, as_json: Json = False) -> None:
    """The products on this device, stock included (queued changes shown on top)."""
    with _command(as_json) as out:
        products = _local(profile, lambda client: client.products())
        if out.as_json:
            out.result([p.to_json() for p in products], "")
            return
        if out.rich:
            table = Table("id", "name", "sku", "unit", "price", "stock", "sync")
            for p in products:
                table.add_row(
                    str(p.id), p.name or "", p.sku or "", p.unit or "", _price(p.price_cents), str(p.stock_level),
                    f"↑ {p.queued_changes} queued" if p.queued_changes else "✓ synced",
                )  # fmt: skip
            out.console.print(table)
            return
        for p in products:
            queued = f"\t{p.queued_changes} queued" if p.queued_changes else ""
            out.result(None, f"{p.id}\t{p.name}\tstock {p.stock_level}{queued}")


@stock_app.command("in")
def stock_in(
    product_id: UUID,
    quantity: int,
    reason: Annotated[str | None, typer.Option()] = None,
    profile: ProfileName = DEFAULT_PROFILE,
    as_json: Json = False,
) -> None:
    """Record an entry of stock; prints the movement's id."""
    with _command(as_json) as out:
        movement_id = _local(profile, lambda client: client.stock_in(product_id, quantity, reason))
        out.result({"id": str(movement_id)}, str(movement_id))


@stock_app.command("out")
def stock_out(
    product_id: UUID,
    quantity: int,
    reason: Annotated[str | None, typer.Option()] = None,
    profile: ProfileName = DEFAULT_PROFILE,
    as_json: Json = False,
) -> None:
    """Record an exit of stock; prints the movement's id."""
    with _command(as_json) as out:
        movement_id = _local(profile, lambda client: client.stock_out(product_id, quantity, reason))
        out.result({"id": str(movement_id)}, str(movement_id))


@app.command()
def history(product_id: UUID, profile: ProfileName = DEFAULT_PROFILE, as_json: Json = False) -> None:
    """A product's stock movements, newest first."""
    with _command(as_json) as out:
        movements = _local(profile, lambda client: client.history(product_id))
        if out.as_json:
            out.result([m.to_json() for m in movements], "")
            return
        for m in movements:
            sign = "+" if m.signed_quantity > 0 else "-"
            queued = "  (queued)" if m.queued else ""
            out.result(None, f"{m.occurred_at:%Y-%m-%d %H:%M:%S}  {sign}{m.quantity}  {m.reason or ''}{queued}")


@app.command()
def sync(profile: ProfileName = DEFAULT_PROFILE, as_json: Json = False) -> None:
    """Sync now (push, then pull); exits 0 only when everything is up to date."""
    with _command(as_json) as out:

        async def run(client: StockzenClient) -> SyncStatus:
            with Progress(
                TextColumn("pushing"), BarColumn(), MofNCompleteColumn(), console=out.errors, disable=not out.rich,
                transient=True,
            ) as bar:  # fmt: skip
                task = bar.add_task("push", total=client.status.queued or None)
                return await client.sync(lambda done, total: bar.update(task, completed=done, total=total))

        status = _with_client(profile, run)
        if status.state is not SyncState.UP_TO_DATE:
            if not out.as_json:
                out.result(None, status.describe())
            raise Failure(_not_synced(status), "NOT_SYNCED", {"status": status.to_json()})
        out.result(status.to_json(), status.describe())


@app.command()
def status(profile: ProfileName = DEFAULT_PROFILE, as_json: Json = False) -> None:
    """Where syncing stands, from local data only: state, queued and failed counts, last sync, notices."""
    with _command(as_json) as out:
        Profile.load(profile_directory(profile))
        running = _watch_running(profile)
        current = _local(profile, lambda client: stored_status(client.store, engine_running=running))
        failed = _local(profile, lambda client: client.store.failed())
        data = {**current.to_json(), "failedChanges": [{"operationId": str(op), "reason": why} for op, why in failed]}
        lines = [current.describe()]
        lines.append(
            f"last sync: {current.last_synced_at:%Y-%m-%d %H:%M:%S %Z}"
            if current.last_synced_at
            else "last sync: never"
        )
        lines += [f"failed {op}: {why}" for op, why in failed]
        lines += [f"notice ({n.at:%H:%M:%S}): {n.message}" for n in current.notices]
        out.result(data, "\n".join(lines))


@app.command()
def watch(
    profile: ProfileName = DEFAULT_PROFILE,
    as_json: Json = False,
    live: Annotated[
        bool,
        typer.Option(
            "--live/--no-live",
            help="listen to the server's live stream, so other devices' changes arrive at once "
            "(without it they come with the periodic sync, every 30 s)",
        ),
    ] = True,
) -> None:
    """Run the sync engine in the foreground with a live status line; Ctrl-C stops it."""
    with _command(as_json) as out:
        Profile.load(profile_directory(profile))
        guard = filelock.FileLock(profile_directory(profile) / "watch.lock")
        try:
            guard.acquire(blocking=False)
        except filelock.Timeout:
            raise Failure("`stockzen watch` already runs on this profile") from None
        try:
            _with_client(profile, lambda client: _watch(client, out), EngineSettings(live=live))
        finally:
            guard.release()


async def _watch(client: StockzenClient, out: Output) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    live = Live(client.status.describe(), console=out.console, auto_refresh=False) if out.rich else None

    def show(status: SyncStatus) -> None:
        if live is not None:
            live.update(status.describe(), refresh=True)
        else:
            out.result(status.to_json(), status.describe())
            sys.stdout.flush()

    unsubscribe = client.engine.hub.subscribe(show)
    show(client.status)
    try:
        if live is not None:
            with live:
                await client.run(stop)
        else:
            await client.run(stop)
    finally:
        unsubscribe()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _watch_running(profile: str) -> bool:
    guard = filelock.FileLock(profile_directory(profile) / "watch.lock")
    try:
        guard.acquire(blocking=False)
    except filelock.Timeout:
        return True
    guard.release()
    return False


def _not_synced(status: SyncStatus) -> str:
    why = {
        SyncState.OFFLINE: "the server cannot be reached",
        SyncState.ERROR: "the server keeps failing",
        SyncState.SYNCING: "some changes wait for their next attempt",
    }.get(status.state, "")
    detail = f" ({status.last_error})" if status.last_error else ""
    return f"not up to date: {why}{detail}; {status.queued} change(s) stay queued and nothing is lost"


def _given(**options: Any) -> dict[str, Any]:
    return {name: value for name, value in options.items() if value is not None}


def _price(cents: int | None) -> str:
    return "" if cents is None else f"{cents / 100:.2f}"


def main() -> None:
    """The ``stockzen`` console script."""
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()
