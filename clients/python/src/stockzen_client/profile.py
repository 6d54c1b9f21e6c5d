"""Profiles: where a device's data lives (``$STOCKZEN_HOME``) and which server and token it uses."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

if TYPE_CHECKING:
    import logging

DEFAULT_PROFILE = "default"

PRIVATE_DIRECTORY = 0o700
PRIVATE_FILE = 0o600
"""Modes of what a profile keeps (its token, its data): its owner's alone, whatever the umask."""


def _log() -> logging.Logger:
    import logging  # loaded when there is something to say: `stockzen --help` does without it

    return logging.getLogger(__name__)


class ProfileError(Exception):
    """The profile is missing or unusable; ``str()`` says what to do."""


def home() -> Path:
    """``$STOCKZEN_HOME``, or the platform's user data directory for StockZen."""
    configured = os.environ.get("STOCKZEN_HOME")
    if configured:
        return Path(configured)
    import platformdirs

    return Path(platformdirs.user_data_dir("stockzen", appauthor=False))


def private_directory(directory: Path) -> None:
    """Make a profile's ``directory`` exist for its owner alone (0700, whatever the umask).

    Each directory created on the way (``$STOCKZEN_HOME`` the first time) is made 0700 too. A profile's
    directory open to others is tightened: it is StockZen's alone. So is the platform's default home; a
    ``$STOCKZEN_HOME`` the user chose and left open to others is theirs to decide, so it is only warned
    about (the profile directories inside it stay closed anyway).
    """
    missing = [path for path in (directory, *directory.parents) if not path.exists()]
    for path in reversed(missing):  # from the top down
        path.mkdir(mode=PRIVATE_DIRECTORY, exist_ok=True)
        os.chmod(path, PRIVATE_DIRECTORY)  # mkdir's mode passes through the umask
    _tighten(directory)
    if directory.parent == home() and directory.parent not in missing:
        if os.environ.get("STOCKZEN_HOME"):
            _warn_if_open(directory.parent)
        else:
            _tighten(directory.parent)


def _tighten(directory: Path) -> None:
    if not stat.S_IMODE(directory.stat().st_mode) & 0o077:
        return
    try:
        os.chmod(directory, PRIVATE_DIRECTORY)
    except PermissionError:  # not the user's own: say so rather than fail every command
        _warn_if_open(directory)


def _warn_if_open(directory: Path) -> None:
    mode = stat.S_IMODE(directory.stat().st_mode)
    if mode & 0o077:
        _log().warning(
            "%s is open to other users (mode %o): `chmod 700 %s` closes it",
            directory,
            mode,
            directory,
        )


@dataclass(frozen=True, slots=True)
class Profile:
    """A signed-in device: server, token, and the tenant and user the token names."""

    directory: Path
    server_url: str
    token: str
    tenant_id: UUID
    user_id: str

    @property
    def database(self) -> Path:
        """The profile's SQLite database."""
        return self.directory / "store.sqlite3"

    @property
    def file(self) -> Path:
        """The profile's saved server and token (``profile.json``)."""
        return self.directory / "profile.json"

    @property
    def lock_file(self) -> Path:
        """The file whose lock makes syncs single-flight across processes."""
        return self.directory / "sync.lock"

    @classmethod
    def create(cls, directory: Path, server_url: str, token: str) -> Profile:
        """A profile for ``token`` (read, not verified: the server verifies it) on ``server_url``."""
        try:
            claims = unverified_claims(token)
            tenant_id, user_id = UUID(str(claims["tenant_id"])), str(claims["sub"])
        except (KeyError, ValueError):
            raise ProfileError("the token is not a StockZen token (it names no tenant_id and sub)") from None
        if not server_url.startswith(("http://", "https://")):
            raise ProfileError(f"the server URL must start with http:// or https:// (got {server_url!r})")
        return cls(directory, server_url.rstrip("/"), token, tenant_id, user_id)

    def save(self) -> None:
        """Write the profile, readable by its owner only (it holds a token).

        The file is replaced whole (a new file, renamed over the old): a running client that re-reads
        it never sees half of it, and notices the change even within the file system's clock tick.
        """
        private_directory(self.directory)
        draft = self.directory / f".profile.{os.getpid()}.json"
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
        os.fchmod(fd, PRIVATE_FILE)  # also when a stale draft was readable by others
        with os.fdopen(fd, "w") as file:
            json.dump({"serverUrl": self.server_url, "token": self.token}, file)
        os.replace(draft, self.file)

    @classmethod
    def load(cls, directory: Path) -> Profile:
        """The profile saved in ``directory``."""
        path = directory / "profile.json"
        try:
            saved = json.loads(path.read_text())
        except FileNotFoundError:
            raise ProfileError("not logged in: run `stockzen login --server URL` first") from None
        except ValueError:
            raise ProfileError(f"the profile file {path} is damaged: log in again") from None
        return cls.create(directory, saved["serverUrl"], saved["token"])


def unverified_claims(token: str) -> dict[str, Any]:
    """The claims of a JSON Web Token, read without checking its signature (the server checks it).

    A JWT is three base64url parts joined by dots, the middle one the claims as a JSON object; reading
    it needs no JWT library (which would cost every command its import). :class:`ValueError` when
    ``token`` is not one.
    """
    import base64

    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("a JWT has three parts")
    # Bad base64 (binascii.Error), bytes that are not UTF-8 or not JSON: each is a ValueError.
    header, claims = (json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))) for part in parts[:2])
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise ValueError("a JWT's header and claims are JSON objects")
    return claims


class ProfileToken:
    """The token a running client sends: the profile's, re-read when ``profile.json`` changes (a
    ``stockzen login`` in another terminal), so a new login is used from the next request on.

    A new token is taken only if it names the tenant and user the profile's local data belongs to: the
    queued changes of this database must never go to another tenant. Otherwise the old token stays and
    :meth:`problem` says why.
    """

    def __init__(self, profile: Profile) -> None:
        self._profile = profile
        self._token = profile.token
        self._seen = self._signature()
        self._problem: str | None = None

    def __call__(self) -> str:
        """The token to send now (a stat of the file; it is read again only when it changed)."""
        signature = self._signature()
        if signature != self._seen:
            self._seen = signature
            self._reread()
        return self._token

    def problem(self) -> str | None:
        """Why the profile's newest token is not used, if it is not."""
        return self._problem

    def _signature(self) -> tuple[int, int, int] | None:
        try:
            stat = self._profile.file.stat()
        except OSError:
            return None
        return stat.st_ino, stat.st_mtime_ns, stat.st_size

    def _reread(self) -> None:
        try:
            saved = Profile.load(self._profile.directory)
        except (ProfileError, OSError, KeyError, TypeError):  # gone, unreadable or damaged: keep the token we have
            return
        if (saved.tenant_id, saved.user_id) != (self._profile.tenant_id, self._profile.user_id):
            self._problem = (
                "the profile now names another tenant or user than this device's data; "
                "still using the previous token: restart to switch"
            )
            _log().warning("the profile's new token names another tenant or user; it is not used until a restart")
            return
        if saved.token != self._token:
            _log().info("the profile's token changed; the next request uses the new one")
        self._token, self._problem = saved.token, None


def profile_directory(name: str = DEFAULT_PROFILE) -> Path:
    """The directory of profile ``name`` under :func:`home`."""
    if not name or "/" in name or name.startswith("."):
        raise ProfileError(f"{name!r} is not a profile name")
    return home() / name
