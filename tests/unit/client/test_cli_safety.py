"""What the CLI shows from elsewhere is inert on a terminal; the token's ways in; a profile's files are
the user's alone. (The same against the real stack, in real processes: tests/security/test_clients.py.)"""

from __future__ import annotations

import io
import logging
import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from stockzen_client import Profile
from stockzen_client.cli import _text, app
from stockzen_client.profile import private_directory
from stockzen_client.terminal import printable, printable_lines, printable_log_handler
from tests.support.fake_gateway import SERVER_URL
from tests.unit.client.conftest import device_token


def test_every_control_character_is_shown_as_its_escape() -> None:
    assert printable("\x1b]0;pwned\x07") == "\\x1b]0;pwned\\x07"
    assert printable("a\x9b2Jb\x7fc\x00") == "a\\x9b2Jb\\x7fc\\x00"
    assert printable("line\nnext\tcell\r") == "line\\x0anext\\x09cell\\x0d"
    assert printable("\u202eexe.txt\u2066\u2028") == "\\u202eexe.txt\\u2066\\u2028"
    assert printable(None) == "None"


def test_text_that_is_only_text_is_shown_as_it_is() -> None:
    for text in ("Café crème", "Teekanne 1,5 l", "日本茶", "👩‍👩‍👧 family pack", "[red]x[/red] \\x1b", "שלום"):
        assert printable(text) == text


def test_whole_lines_keep_their_newlines_and_tabs_only() -> None:
    assert printable_lines("a\tb\nc\x1b[2J\x85") == "a\tb\nc\\x1b[2J\\x85"


def test_rich_shows_markup_and_emoji_codes_from_the_server_literally() -> None:
    console = Console(file=io.StringIO(), force_terminal=True, color_system=None, width=200)
    console.print(_text("[red]x[/red] [link=https://evil.example]y[/link] :smile: \x1b[2J"))
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    assert shown == "[red]x[/red] [link=https://evil.example]y[/link] :smile: \\x1b[2J\n"


def test_logged_warnings_are_escaped_too(capsys: pytest.CaptureFixture[str]) -> None:
    logger = logging.getLogger(f"stockzen_client.test.{uuid.uuid4().hex}")
    logger.propagate = False
    logger.addHandler(printable_log_handler())
    logger.info("not shown: %s", "as Python's last-resort handler, warnings and worse only")
    logger.warning("server said %s", "\x1b]0;x\x07")
    assert capsys.readouterr().err == "server said \\x1b]0;x\\x07\n"


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("STOCKZEN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("STOCKZEN_TOKEN", raising=False)
    return tmp_path / "home"


def login(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    done = CliRunner().invoke(app, ["login", "--server", SERVER_URL, *args], input=stdin, env=env)
    return done.exit_code, done.stdout, done.stderr


def test_login_reads_the_token_from_stdin(home: Path, tenant_id: uuid.UUID) -> None:
    token = device_token(tenant_id)
    code, _, err = login("--token-stdin", stdin=f"  {token}\n")
    assert (code, err) == (0, "")
    assert Profile.load(home / "default").token == token


def test_login_reads_the_token_from_the_environment(home: Path, tenant_id: uuid.UUID) -> None:
    token = device_token(tenant_id)
    code, _, err = login(env={"STOCKZEN_TOKEN": token})
    assert (code, err) == (0, "")
    assert Profile.load(home / "default").token == token


def test_a_token_on_the_command_line_still_works_with_a_warning(home: Path, tenant_id: uuid.UUID) -> None:
    code, _, err = login("--token", device_token(tenant_id))
    assert code == 0
    assert err.startswith("Warning: a token given with --token is shown to other users by `ps`")


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (("--token", "t", "--token-stdin"), "t", "give the token either with --token or on standard input"),
        (("--token-stdin",), "\n", "standard input held no token"),
        ((), None, "no token: give it on standard input with --token-stdin, or in $STOCKZEN_TOKEN"),
    ],
)
def test_login_without_one_clear_token_says_why(
    home: Path, args: tuple[str, ...], stdin: str | None, message: str
) -> None:
    code, _, err = login(*args, stdin=stdin)
    assert code == 1
    assert err.startswith(f"Error: {message}")
    assert not (home / "default" / "profile.json").exists()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    previous = os.umask(0o002)
    yield
    os.umask(previous)


@pytest.mark.usefixtures("loose_umask")
def test_a_profile_and_the_home_it_creates_are_the_users_alone(home: Path, tenant_id: uuid.UUID) -> None:
    profile = Profile.create(home / "shop", SERVER_URL, device_token(tenant_id))
    profile.save()
    assert (mode(home), mode(home / "shop"), mode(profile.file)) == (0o700, 0o700, 0o600)


@pytest.mark.usefixtures("loose_umask")
def test_a_profile_directory_left_open_is_closed_again(home: Path) -> None:
    (home / "shop").mkdir(parents=True, mode=0o777)
    (home / "shop").chmod(0o777)
    home.chmod(0o700)
    private_directory(home / "shop")
    assert mode(home / "shop") == 0o700


@pytest.mark.usefixtures("loose_umask")
def test_a_chosen_home_left_open_is_warned_about_and_left_as_it_is(
    home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    with caplog.at_level(logging.WARNING):
        private_directory(home / "shop")
    assert f"{home} is open to other users (mode 755)" in caplog.text
    assert (mode(home), mode(home / "shop")) == (0o755, 0o700)


@pytest.mark.usefixtures("loose_umask")
def test_the_platforms_default_home_left_open_is_closed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("STOCKZEN_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    default_home = tmp_path / "data" / "stockzen"
    default_home.mkdir(parents=True)
    default_home.chmod(0o755)
    private_directory(default_home / "default")
    assert (mode(default_home), mode(default_home / "default")) == (0o700, 0o700)
