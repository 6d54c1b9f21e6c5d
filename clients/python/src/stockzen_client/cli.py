"""``stockzen``: the client for people (rich output on a terminal) and scripts (``--json``, plain text).

It starts at once: this module loads typer and the standard library only. Each command imports what
it needs when it runs — the network stack and the sync engine for ``sync`` and ``watch``, the wire
models (pydantic) for the commands that queue a change, rich for tables, live lines and progress bars —
so ``--help``, ``status`` and ``product ls`` never load them.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any, ClassVar, TypeVar
from uuid import UUID

import typer

from stockzen_client.profile import DEFAULT_PROFILE, PRIVATE_FILE, Profile, ProfileError, profile_directory
from stockzen_client.terminal import printable, printable_lines

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    from stockzen_client.client import StockzenClient
    from stockzen_client.domain.status import SyncProgress, SyncStatus
    from stockzen_client.domain.view import LocalMovement
    from stockzen_client.engine import EngineSettings

# Plain help (click's): typer's rich help would load rich, markdown and pygments for every --help.
app = typer.Typer(
    help="StockZen offline-first inventory: work offline, sync by itself.",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
product_app = typer.Typer(help="Create, edit, delete and list products.", no_args_is_help=True, rich_markup_mode=None)
stock_app = typer.Typer(help="Record stock entries and exits.", no_args_is_help=True, rich_markup_mode=None)
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
        self._console: Console | None = None

    @property
    def rich(self) -> bool:
        """Whether stdout is a terminal to draw on (tables, a live status line)."""
        return not self.as_json and sys.stdout.isatty()

    @property
    def console(self) -> Console:
        """rich on stdout (loaded when first drawn on)."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(highlight=False)
        return self._console

    def result(self, data: Any, text: str) -> None:
        """``data`` as JSON, or ``text``: lines the command put together, each piece from elsewhere
        (the server, the token) already :func:`printable`."""
        if self.as_json:
            print(json.dumps(data))
        else:
            _write(sys.stdout, text)

    def fail(self, message: str, code: str = "FAILED", details: dict[str, Any] | None = None) -> None:
        """The one sentence of a failure (it may quote the server: escaped, on one line)."""
        if self.as_json:
            print(json.dumps({"code": code, "message": message, **(details or {})}))
        _write(sys.stderr, f"Error: {printable(message)}")


def _write(stream: IO[str], text: str) -> None:
    # Also what a command forgot to escape never reaches the terminal as a control character.
    stream.write(printable_lines(text) + "\n")


def _text(value: object) -> Text:
    """A piece of rich output taken literally: no markup (``[link=…]``), no emoji codes, no control
    characters."""
    from rich.text import Text

    return Text(printable(value))


@contextmanager
def _command(as_json: bool, *expected: type[Exception]) -> Iterator[Output]:
    """Run a command's body: a :class:`Failure`, a profile problem, a refused change or one of
    ``expected`` becomes one sentence on stderr (and ``{code, message}`` with ``--json``) and exit 1."""
    from stockzen_client.client import InvalidChange

    output = Output(as_json)
    known: tuple[type[Exception], ...] = (ProfileError, InvalidChange, *expected)
    try:
        yield output
    except Failure as exc:
        output.fail(str(exc), exc.code, exc.details)
        raise typer.Exit(1) from None
    except known as exc:
        output.fail(str(exc))
        raise typer.Exit(1) from None


def _open(profile: str, settings: EngineSettings | None = None) -> StockzenClient:
    from stockzen_client.client import StockzenClient

    return StockzenClient(Profile.load(profile_directory(profile)), settings=settings)


def _with_client(
    profile: str, work: Callable[[StockzenClient], Awaitable[_T]], settings: EngineSettings | None = None
) -> _T:
    """Run ``work`` with a client that may connect (on an event loop, closed after)."""
    import asyncio

    _log_printably()

    async def run() -> _T:
        client = _open(profile, settings)
        try:
            return await work(client)
        finally:
            await client.aclose()

    return asyncio.run(run())


def _log_printably() -> None:
    """The client's warnings on stderr with control characters escaped (they may quote the server),
    instead of Python's last-resort handler, which prints them raw."""
    import logging

    from stockzen_client.terminal import printable_log_handler

    logger = logging.getLogger("stockzen_client")
    if not logger.handlers:
        logger.addHandler(printable_log_handler())


def _local(profile: str, work: Callable[[StockzenClient], _T]) -> _T:
    """Run ``work`` with a client that stays local: no event loop, no network stack."""
    client = _open(profile)
    try:
        return work(client)
    finally:
        client.close()


TOKEN_ENV = "STOCKZEN_TOKEN"  # noqa: S105 (a variable's name, not a secret)
"""The environment variable ``stockzen login`` takes the token from."""

_MAX_TOKEN = 64 * 1024
"""The most ``--token-stdin`` reads: a token is a few hundred bytes, a mistaken pipe may be endless."""


@app.command()
def login(
    server: Annotated[str, typer.Option(help="the gateway's URL, e.g. http://localhost:8000")],
    token_stdin: Annotated[
        bool,
        typer.Option("--token-stdin", help="read the token from standard input: `make -s token | stockzen login …`"),
    ] = False,
    token: Annotated[
        str | None,
        typer.Option(
            help="the token itself: other users see it in `ps` and it stays in the shell's history; "
            f"prefer --token-stdin or ${TOKEN_ENV}"
        ),
    ] = None,
    profile: ProfileName = DEFAULT_PROFILE,
    as_json: Json = False,
) -> None:
    """Keep the server and token for this profile (no network needed; the profile file is the user's
    alone). The token comes from standard input (--token-stdin), else $STOCKZEN_TOKEN, else a prompt
    that does not echo it (`make token` mints one for development)."""
    with _command(as_json) as out:
        signed_in = Profile.create(profile_directory(profile), server, _login_token(token, token_stdin))
        signed_in.save()
        _local(profile, lambda client: None)  # creates the database
        out.result(
            {
                "profile": profile,
                "serverUrl": signed_in.server_url,
                "tenantId": str(signed_in.tenant_id),
                "userId": signed_in.user_id,
            },
            f"Logged in to {printable(signed_in.server_url)} as {printable(signed_in.user_id)} "
            f"(tenant {signed_in.tenant_id}), profile {profile!r}.",
        )


def _login_token(given: str | None, from_stdin: bool) -> str:
    """The token to log in with, from where the user put it (warned when that is the command line)."""
    if given is not None and from_stdin:
        raise Failure("give the token either with --token or on standard input (--token-stdin), not both")
    if from_stdin:
        token = _ask_token() if sys.stdin.isatty() else sys.stdin.read(_MAX_TOKEN).strip()
        if not token:
            raise Failure("standard input held no token")
        return token
    if given is not None:
        _write(
            sys.stderr,
            "Warning: a token given with --token is shown to other users by `ps` and stays in the shell's history; "
            f"use --token-stdin or ${TOKEN_ENV} instead.",
        )
        return given
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV].strip()
    if sys.stdin.isatty():
        return _ask_token()
    raise Failure(f"no token: give it on standard input with --token-stdin, or in ${TOKEN_ENV}")


def _ask_token() -> str:
    import getpass

    token = getpass.getpass("Token (not shown): ").strip()
    if not token:
        raise Failure("no token given")
    return token


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
            from rich.table import Table

            table = Table("id", "name", "sku", "unit", "price", "stock", "sync")
            for p in products:
                table.add_row(
                    *map(_text, (p.id, p.name or "", p.sku or "", p.unit or "", _price(p.price_cents), p.stock_level)),
                    f"↑ {p.queued_changes} queued" if p.queued_changes else "✓ synced",
                )  # fmt: skip
            out.console.print(table)
            return
        lines = [
            f"{p.id}\t{printable(p.name)}\tstock {p.stock_level}"
            + (f"\t{p.queued_changes} queued" if p.queued_changes else "")
            for p in products
        ]
        if lines:
            out.result(None, "\n".join(lines))


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
def history(
    product_id: UUID,
    profile: ProfileName = DEFAULT_PROFILE,
    as_json: Json = False,
    limit: Annotated[int, typer.Option(min=1, max=200, help="how many of the newest movements")] = 50,
    offline: Annotated[bool, typer.Option("--offline", help="only what this device holds, no request")] = False,
) -> None:
    """A product's stock movements, newest first: from the server when it answers (a device holds only
    the history since its first sync), else what this device holds."""
    with _command(as_json) as out:
        if offline:
            movements = _local(profile, lambda client: client.history(product_id))[:limit]
        else:
            movements = _with_client(profile, lambda client: _recent(client, product_id, limit))
        if out.as_json:
            out.result([m.to_json() for m in movements], "")
            return
        for m in movements:
            sign = "+" if m.signed_quantity > 0 else "-"
            queued = "  (queued)" if m.queued else ""
            out.result(
                None, f"{m.occurred_at:%Y-%m-%d %H:%M:%S}  {sign}{m.quantity}  {printable(m.reason or '')}{queued}"
            )


async def _recent(client: StockzenClient, product_id: UUID, limit: int) -> list[LocalMovement]:
    return (await client.recent_history(product_id, limit))[0]


@app.command()
def sync(profile: ProfileName = DEFAULT_PROFILE, as_json: Json = False) -> None:
    """Sync now (push, then pull); exits 0 only when everything is up to date."""
    from stockzen_client.domain.status import SyncState
    from stockzen_client.engine import SyncBusy

    with _command(as_json, SyncBusy) as out:
        # A progress bar only for a person watching: never with --json, never when stderr is not a terminal.
        bar = _ProgressBar() if not as_json and sys.stderr.isatty() else None

        async def run(client: StockzenClient) -> SyncStatus:
            if bar is None:
                return await client.sync()
            with bar:
                return await client.sync(bar.show)

        status = _with_client(profile, run)
        if status.state is not SyncState.UP_TO_DATE:
            if not out.as_json:
                out.result(None, printable(status.describe()))
            raise Failure(_not_synced(status), "NOT_SYNCED", {"status": status.to_json()})
        out.result(status.to_json(), printable(status.describe()))


class _ProgressBar:
    """A rich progress bar on stderr, gone when the sync ends: changes sent, products downloaded,
    changes pulled."""

    _LABELS: ClassVar[dict[str, str]] = {
        "upload": "sending changes",
        "snapshot": "downloading products",
        "feed": "downloading changes",
    }

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self._bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            console=Console(stderr=True, highlight=False), transient=True,
        )  # fmt: skip
        self._task = self._bar.add_task("syncing", total=None)

    def __enter__(self) -> _ProgressBar:
        self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()

    def show(self, progress: SyncProgress) -> None:
        total = max(progress.total, progress.done)
        if total == 0:  # nothing to fetch: the bar keeps what it showed
            return
        label = self._LABELS.get(progress.phase, progress.phase)
        self._bar.update(self._task, description=label, completed=progress.done, total=total)


@app.command()
def status(profile: ProfileName = DEFAULT_PROFILE, as_json: Json = False) -> None:
    """Where syncing stands, from local data only: state, queued and failed counts, last sync, notices."""
    from stockzen_client.local_status import stored_status

    with _command(as_json) as out:
        Profile.load(profile_directory(profile))
        running = _watch_running(profile)
        current, failed = _local(
            profile, lambda client: (stored_status(client.store, engine_running=running), client.store.failed())
        )
        data = {
            **current.to_json(),
            "failedChanges": [{"operationId": str(f.operation_id), "code": f.code, "reason": f.reason} for f in failed],
        }
        lines = [printable(current.describe())]
        lines.append(
            f"last sync: {current.last_synced_at:%Y-%m-%d %H:%M:%S %Z}"
            if current.last_synced_at
            else "last sync: never"
        )
        lines += [f"failed {f.operation_id}: {printable(f.reason)}" for f in failed]
        if failed:
            lines.append("(`stockzen failed` lists them; `stockzen discard ID` or `--all` lets them go)")
        lines += [f"notice ({n.at:%H:%M:%S}): {printable(n.message)}" for n in current.notices]
        out.result(data, "\n".join(lines))


@app.command()
def failed(profile: ProfileName = DEFAULT_PROFILE, as_json: Json = False) -> None:
    """The changes the server refused for good, oldest first, with the server's code and reason.

    They are not shown (each product shows the server's state instead), and stay until discarded.
    """
    with _command(as_json) as out:
        Profile.load(profile_directory(profile))
        refused = _local(profile, lambda client: client.failed())
        if out.as_json:
            out.result([entry.to_json() for entry in refused], "")
            return
        if not refused:
            out.result(None, "No refused changes.")
            return
        out.result(
            None,
            "\n".join(
                "\t".join(printable(part) for part in (e.operation_id, e.code or "", e.describe(), e.reason or ""))
                for e in refused
            ),
        )


@app.command()
def discard(
    operation_ids: Annotated[
        list[UUID] | None, typer.Argument(help="the refused changes to let go of (`stockzen failed` lists them)")
    ] = None,
    discard_all: Annotated[bool, typer.Option("--all", help="let go of every refused change")] = False,
    profile: ProfileName = DEFAULT_PROFILE,
    as_json: Json = False,
) -> None:
    """Let go of changes the server refused for good (queued changes stay: the server settles them)."""
    with _command(as_json) as out:
        Profile.load(profile_directory(profile))
        wanted = list(operation_ids or [])
        if not wanted and not discard_all:
            raise Failure("give the ids of the refused changes to discard (see `stockzen failed`), or --all")
        if wanted and discard_all:
            raise Failure("give either operation ids or --all, not both")

        def let_go(client: StockzenClient) -> list[UUID]:
            if discard_all:
                return client.discard()
            refused = {entry.operation_id for entry in client.failed()}
            unknown = [str(op) for op in wanted if op not in refused]
            if unknown:
                raise Failure(
                    f"no refused change with id {', '.join(unknown)} (`stockzen failed` lists them); nothing discarded",
                    "NOT_REFUSED",
                    {"operationIds": unknown},
                )
            return client.discard(wanted)

        gone = _local(profile, let_go)
        out.result({"discarded": [str(op) for op in gone]}, f"Discarded {len(gone)} refused change(s).")


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
    import filelock

    from stockzen_client.engine import EngineSettings, SyncBusy

    with _command(as_json, SyncBusy) as out:
        Profile.load(profile_directory(profile))
        guard = filelock.FileLock(_watch_lock(profile), mode=PRIVATE_FILE)
        try:
            guard.acquire(blocking=False)
        except filelock.Timeout:
            raise Failure("`stockzen watch` already runs on this profile") from None
        try:
            _with_client(profile, lambda client: _watch(client, out), EngineSettings(live=live))
        finally:
            guard.release()


async def _watch(client: StockzenClient, out: Output) -> None:
    import asyncio
    import signal

    from rich.live import Live

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    live = Live(_text(client.status.describe()), console=out.console, auto_refresh=False) if out.rich else None

    def show(status: SyncStatus) -> None:
        if live is not None:
            live.update(_text(status.describe()), refresh=True)
        else:
            out.result(status.to_json(), printable(status.describe()))
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


def _watch_lock(profile: str) -> Path:
    return profile_directory(profile) / "watch.lock"


def _watch_running(profile: str) -> bool:
    """Whether a ``stockzen watch`` holds the profile's watch lock (asked without loading filelock:
    on POSIX its lock is an ``flock`` of the whole file, which this probe takes and gives back)."""
    path = _watch_lock(profile)
    try:
        import fcntl
    except ImportError:  # not POSIX: ask filelock itself
        import filelock

        guard = filelock.FileLock(path, mode=PRIVATE_FILE)
        try:
            guard.acquire(blocking=False)
        except filelock.Timeout:
            return True
        guard.release()
        return False
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_FILE), "a") as file:
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(file.fileno(), fcntl.LOCK_UN)
    return False


def _not_synced(status: SyncStatus) -> str:
    from stockzen_client.domain.status import SyncState

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
    quick = _quick_command(sys.argv[1:])
    if quick is not None:
        sys.exit(_run_quickly(quick))
    app()


_QUICK: dict[tuple[str, ...], Callable[..., None]] = {("status",): status, ("product", "ls"): product_ls}


def _quick_command(args: list[str]) -> Callable[[], None] | None:
    """``status`` and ``product ls`` in their plain forms (``[--json] [--profile NAME]``), to be run
    without typer's argument handling; None for anything else (``--help``, another option, another
    command), which typer handles as always.

    Why: typer (0.29) converts every option value with a pydantic ``TypeAdapter``, so reading the
    profile's name would load pydantic — about as long as the rest of these commands together.
    """
    words = next((words for words in _QUICK if tuple(args[: len(words)]) == words), None)
    if words is None:
        return None
    command = _QUICK[words]
    profile, as_json = os.environ.get("STOCKZEN_PROFILE") or DEFAULT_PROFILE, False
    rest = args[len(words) :]
    while rest:
        arg = rest.pop(0)
        if arg == "--json":
            as_json = True
        elif arg == "--profile" and rest and not rest[0].startswith("-"):
            profile = rest.pop(0)
        elif arg.startswith("--profile=") and len(arg) > len("--profile="):
            profile = arg.removeprefix("--profile=")
        else:
            return None
    return lambda: command(profile=profile, as_json=as_json)


def _run_quickly(command: Callable[[], None]) -> int:
    """Run a command as typer would (``typer.Exit`` is its exit status; a closed pipe exits 1 quietly)."""
    try:
        command()
    except typer.Exit as exit:
        return exit.exit_code
    except BrokenPipeError:  # `stockzen product ls | head`: the reader is gone
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush at exit
        return 1
    return 0
