"""The Python client and its ``stockzen`` command against what other people control: what a tenant
member names a product (shown on a teammate's terminal), a hostile or broken server, the token's way in,
and who else on the machine can read the device's data. Each runs the real ``stockzen`` process.

The browser app's side (``Retry-After``, clearing the device's data on sign-out) is
``test_clients_web.py``.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import pty
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from stockzen_client.adapters.store import LocalStore
from tests.support.ops import create_product, movement
from tests.support.retry import sync_until_final
from tests.support.stack import Stack, user_token

STOCKZEN = str(Path(sys.executable).with_name("stockzen"))

HOSTILE_NAME = "\x1b]0;pwned\x07\x1b[2J\x9b31mTea [red]x[/red] \u202egpj.exe"
"""Sets the terminal's title, clears its screen, a C1 CSI, rich markup, and a right-to-left override."""
HOSTILE_SKU = "[link=https://evil.example]SKU[/link]\x1b]52;c;cHduZWQ=\x07"
"""rich's link markup, and OSC 52: writes the clipboard on terminals that allow it."""
HOSTILE_REASON = "delivery\n2026-01-01 00:00:00  +999  forged line\x1b[1A"
"""A forged line of ``stockzen history``, and a cursor move up."""
RAW = ("\x1b", "\x07", "\x9b", "\u202e")
"""What must never reach the terminal from the server."""

A_DAY_OF_YEARS = "1000000000"
"""A ``Retry-After`` of about 31 years."""
RETRY_AFTER_CAP = 300.0
"""The most a client waits for a server that says ``Retry-After`` (docs/sync-states.md)."""


def run_cli(
    home: Path, *args: str, stdin: str | None = None, env: dict[str, str] | None = None, umask: int = -1
) -> subprocess.CompletedProcess[str]:
    """``stockzen`` with its own ``$STOCKZEN_HOME``, never on a terminal (plain text or JSON)."""
    environ = {**os.environ, "STOCKZEN_HOME": str(home), "NO_COLOR": "1"}
    environ.pop("STOCKZEN_TOKEN", None)
    environ.update(env or {})
    return subprocess.run(
        [STOCKZEN, *args],
        input=stdin,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        umask=umask,
    )


def run_on_terminal(home: Path, *args: str) -> str:
    """``stockzen`` with stdout and stderr on a pseudo-terminal (so rich draws its table); what it wrote."""
    leader, follower = pty.openpty()
    environ = {**os.environ, "STOCKZEN_HOME": str(home), "TERM": "xterm-256color", "COLUMNS": "300", "LINES": "50"}
    environ.pop("NO_COLOR", None)
    process = subprocess.Popen(
        [STOCKZEN, *args], env=environ, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower
    )
    os.close(follower)
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError as exc:  # the terminal closed with the process
            if exc.errno != errno.EIO:
                raise
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert process.wait(timeout=60) == 0, b"".join(chunks)
    return b"".join(chunks).decode()


def logged_in(home: Path, server: str, token: str) -> None:
    done = run_cli(home, "login", "--server", server, "--token-stdin", stdin=token + "\n")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


async def test_names_and_reasons_from_the_server_cannot_drive_the_cli_users_terminal(
    stack: Stack, gateway: httpx.AsyncClient, tenant_id: uuid.UUID, tmp_path: Path
) -> None:
    """Another member of the tenant names a product with escape sequences and markup: the CLI shows them
    escaped, in plain text and in rich's table, while ``--json`` gives them exactly."""
    product = uuid.uuid4()
    ops = [
        create_product(tenant_id, product, HOSTILE_NAME, sku=HOSTILE_SKU),
        movement(tenant_id, product, "entry", 3, reason=HOSTILE_REASON),
    ]
    answer = await sync_until_final(gateway, ops)
    assert [item["status"] for item in answer.json()["results"]] == ["applied", "applied"], answer.text
    home = tmp_path / "home"
    logged_in(home, stack.gateway_url, user_token(tenant_id, "teammate"))
    assert run_cli(home, "sync").returncode == 0

    [listed] = json.loads(run_cli(home, "product", "ls", "--json").stdout)
    assert (listed["name"], listed["sku"]) == (HOSTILE_NAME, HOSTILE_SKU)
    [moved] = json.loads(run_cli(home, "history", str(product), "--json").stdout)
    assert moved["reason"] == HOSTILE_REASON

    plain = run_cli(home, "product", "ls")
    assert plain.returncode == 0
    assert not any(raw in plain.stdout for raw in RAW), repr(plain.stdout)
    assert plain.stdout == f"{product}\t\\x1b]0;pwned\\x07\\x1b[2J\\x9b31mTea [red]x[/red] \\u202egpj.exe\tstock 3\n"
    history = run_cli(home, "history", str(product)).stdout
    assert history.count("\n") == 1, history  # the forged line stays inside the one real line
    assert history.rstrip("\n").endswith("+3  delivery\\x0a2026-01-01 00:00:00  +999  forged line\\x1b[1A")

    drawn = run_on_terminal(home, "product", "ls")
    assert not any(raw in drawn for raw in ("\x1b]", "\x1b[2J", "\x07", "\x9b", "\u202e")), repr(drawn)
    assert "\\x1b]0;pwned\\x07\\x1b[2J\\x9b31mTea [red]x[/red] \\u202egpj.exe" in drawn  # markup shown literally
    assert "[link=https://evil.example]SKU[/link]\\x1b]52;c;cHduZWQ=\\x07" in drawn


class _Hostile(BaseHTTPRequestHandler):
    """Every request: 429 with a ``Retry-After`` of 31 years and a message full of escape sequences."""

    def _refuse(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"code": "RATE_LIMITED", "message": "\x1b]0;pwned\x07\x1b[2Jslow down"}).encode()
        self.send_response(429)
        self.send_header("Retry-After", A_DAY_OF_YEARS)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _refuse  # noqa: N815 (http.server's names)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def hostile_server() -> Iterator[str]:
    """A server that answers everything with 429 and a huge ``Retry-After``; its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


async def test_a_huge_retry_after_from_a_hostile_server_is_capped_in_the_python_client(
    hostile_server: str, tenant_id: uuid.UUID, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    logged_in(home, hostile_server, user_token(tenant_id))
    assert run_cli(home, "product", "add", "Mug").returncode == 0
    before = time.time()
    done = await asyncio.to_thread(run_cli, home, "sync")
    after = time.time()
    assert done.returncode == 1
    assert "slow down" in done.stderr
    assert not any(raw in done.stdout + done.stderr for raw in RAW), repr(done.stderr)  # the server's message, escaped

    store = LocalStore(home / "default" / "store.sqlite3", clock=time.time)
    try:
        due = store.next_attempt_at()
    finally:
        store.close()
    assert due is not None
    assert before + RETRY_AFTER_CAP - 1 <= due <= after + RETRY_AFTER_CAP  # honoured, but only up to the cap


async def test_the_token_comes_from_stdin_or_the_environment_and_on_the_command_line_with_a_warning(
    stack: Stack, tenant_id: uuid.UUID, tmp_path: Path
) -> None:
    token = user_token(tenant_id, "cli-user")
    piped = run_cli(tmp_path / "piped", "login", "--server", stack.gateway_url, "--token-stdin", "--json", stdin=token)
    assert piped.returncode == 0, piped.stderr
    assert (json.loads(piped.stdout)["userId"], piped.stderr) == ("cli-user", "")

    from_env = run_cli(
        tmp_path / "env", "login", "--server", stack.gateway_url, "--json", env={"STOCKZEN_TOKEN": token}
    )
    assert from_env.returncode == 0, from_env.stderr
    assert (json.loads(from_env.stdout)["tenantId"], from_env.stderr) == (str(tenant_id), "")

    on_command_line = run_cli(tmp_path / "argv", "login", "--server", stack.gateway_url, "--token", token)
    assert on_command_line.returncode == 0
    assert "Warning: a token given with --token is shown to other users by `ps`" in on_command_line.stderr

    nothing = run_cli(tmp_path / "none", "login", "--server", stack.gateway_url)
    assert nothing.returncode == 1
    assert nothing.stderr == "Error: no token: give it on standard input with --token-stdin, or in $STOCKZEN_TOKEN\n"

    for home in ("piped", "env", "argv"):  # each works: the server takes the token it kept
        synced = run_cli(tmp_path / home, "sync", "--json")
        assert json.loads(synced.stdout)["state"] == "upToDate", synced.stderr


def _modes(home: Path) -> dict[str, int]:
    return {str(path.relative_to(home)): stat.S_IMODE(path.stat().st_mode) for path in [home, *home.rglob("*")]}


async def test_stockzen_home_and_its_store_are_the_users_alone_whatever_the_umask(
    stack: Stack, tenant_id: uuid.UUID, tmp_path: Path
) -> None:
    home = tmp_path / "not-yet" / "stockzen"
    token = user_token(tenant_id)
    login = run_cli(home, "login", "--server", stack.gateway_url, "--token-stdin", stdin=token, umask=0o022)
    assert login.returncode == 0, login.stderr
    assert run_cli(home, "product", "add", "Mug", umask=0o022).returncode == 0
    assert run_cli(home, "sync", umask=0o022).returncode == 0

    previous = os.umask(0o022)
    try:  # the store open, as `stockzen watch` keeps it: its -wal and -shm files exist
        store = LocalStore(home / "default" / "store.sqlite3", clock=time.time)
        modes = _modes(home)
        store.close()
    finally:
        os.umask(previous)
    assert {
        "default/profile.json",
        "default/store.sqlite3",
        "default/store.sqlite3-wal",
        "default/store.sqlite3-shm",
    } <= modes.keys()
    open_to_others = {name: oct(mode) for name, mode in modes.items() if mode & 0o077}
    assert open_to_others == {}
    assert modes["."] == modes["default"] == 0o700
    assert modes["default/store.sqlite3"] == modes["default/profile.json"] == 0o600
    assert stat.S_IMODE(home.parent.stat().st_mode) == 0o700  # created on the way, closed too

    # Left open by an earlier version or a careless chmod: the profile and its store are closed again,
    # and the home the user chose is warned about.
    for path in (home, home / "default"):
        path.chmod(0o755)
    for name in ("store.sqlite3", "store.sqlite3-wal", "store.sqlite3-shm"):
        if (home / "default" / name).exists():
            (home / "default" / name).chmod(0o644)
    listed = run_cli(home, "product", "ls", umask=0o022)
    assert listed.returncode == 0
    assert f"{home} is open to other users (mode 755): `chmod 700 {home}` closes it" in listed.stderr
    modes = _modes(home)
    assert {name: oct(mode) for name, mode in modes.items() if mode & 0o077} == {".": oct(0o755)}
