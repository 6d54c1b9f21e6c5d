"""The ``stockzen`` command starts at once: ``--help``, ``status`` and ``product ls`` load neither the
network stack nor the wire models (nor pydantic, nor a JWT library). Checked in fresh interpreters,
by what they hold in ``sys.modules`` — never by timing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from stockzen_client import Profile
from stockzen_client.adapters.store import LocalStore
from stockzen_client.cli import _quick_command
from stockzen_contracts import ProductView, SnapshotPage
from tests.unit.client.conftest import device_token

HEAVY = (
    "httpx",
    "httpcore",
    "h11",
    "anyio",
    "ssl",
    "asyncio",
    "pydantic",
    "pydantic_core",
    "jwt",
    "stockzen_contracts",
)
"""Top-level packages a command that stays local has no use for."""

_REPORT = """
import json, sys
heavy = {heavy!r}
code = 0
try:
    {body}
except SystemExit as done:
    code = done.code
sys.stderr.write("\\n" + json.dumps({{"code": code, "loaded": sorted({{m.split(".")[0] for m in sys.modules}} & set(heavy))}}))
"""


def run_python(body: str, home: Path | None = None) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
    """Run ``body`` in a fresh interpreter; what it exited with and which heavy packages it loaded."""
    env = {**os.environ, "STOCKZEN_HOME": str(home or Path("/nonexistent")), "NO_COLOR": "1"}
    env.pop("STOCKZEN_PROFILE", None)
    script = _REPORT.format(heavy=HEAVY, body=body)
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    report = json.loads(done.stderr.rsplit("\n", 1)[-1])
    return report, done


def stockzen(
    home: Path, *args: str, through_typer: bool = False
) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
    """``stockzen ARGS`` as the console script runs it (or straight through typer)."""
    call = "cli.app(prog_name='stockzen')" if through_typer else "cli.main()"
    return run_python(f"from stockzen_client import cli; sys.argv = ['stockzen', *{list(args)!r}]; {call}", home)


def product(name: str, level: int) -> ProductView:
    return ProductView(
        id=uuid.uuid4(), name=name, sku=None, barcode=None, unit="pcs", price_cents=100, low_stock_threshold=None,
        archived=False, deleted=False, modified_at=datetime.now(UTC), checkpoint="3", stock_level=level,
    )  # fmt: skip


@pytest.fixture
def home(tmp_path: Path, tenant_id: uuid.UUID) -> Path:
    """A logged-in profile whose store holds two products from a snapshot."""
    profile = Profile.create(tmp_path / "default", "http://127.0.0.1:9", device_token(tenant_id))
    profile.save()
    store = LocalStore(profile.database, clock=lambda: 0.0)
    items = [product(name, level) for name, level in (("Mug", 4), ("Cup", 9))]
    store.store_snapshot_page(SnapshotPage(checkpoint="3", items=items, next_cursor=None, total_products=2), None)
    store.close()
    return tmp_path


def test_importing_the_cli_loads_no_network_stack_and_no_wire_models() -> None:
    report, done = run_python("import stockzen_client.cli")
    assert report["code"] == 0, done.stderr
    assert report["loaded"] == []


@pytest.mark.parametrize(
    "args", [("--help",), ("status",), ("status", "--json"), ("product", "ls"), ("product", "ls", "--json")]
)
def test_help_status_and_product_ls_run_without_them(home: Path, args: tuple[str, ...]) -> None:
    report, done = stockzen(home, *args)
    assert report == {"code": 0, "loaded": []}, done.stderr
    assert done.stdout


def test_the_quick_commands_answer_as_typer_does(home: Path) -> None:
    for args in [("status", "--json"), ("product", "ls", "--json"), ("product", "ls"), ("status",)]:
        quick, by_main = stockzen(home, *args)
        typed, by_typer = stockzen(home, *args, through_typer=True)
        assert (quick["code"], by_main.stdout) == (typed["code"], by_typer.stdout), args
    listed = json.loads(stockzen(home, "product", "ls", "--json")[1].stdout)
    assert [(p["name"], p["stockLevel"]) for p in listed] == [("Cup", 9), ("Mug", 4)]


def test_a_quick_command_fails_as_typer_does(tmp_path: Path) -> None:
    quick, by_main = stockzen(tmp_path, "status", "--profile", "nobody")
    typed, by_typer = stockzen(tmp_path, "status", "--profile", "nobody", through_typer=True)
    assert quick["code"] == typed["code"] == 1
    assert (
        by_main.stderr.split("\n")[0]
        == by_typer.stderr.split("\n")[0]
        == ("Error: not logged in: run `stockzen login --server URL` first")
    )


@pytest.mark.parametrize(
    ("args", "quick"),
    [
        (["status"], True),
        (["status", "--json", "--profile", "shop"], True),
        (["product", "ls", "--profile=shop", "--json"], True),
        (["status", "--help"], False),
        (["status", "--profile"], False),
        (["status", "--profile", "--json"], False),
        (["status", "--bogus"], False),
        (["product", "add", "Mug"], False),
        (["product"], False),
        ([], False),
        (["--help"], False),
    ],
)
def test_only_the_plain_forms_skip_typer(args: list[str], quick: bool) -> None:
    assert (_quick_command(args) is not None) is quick
