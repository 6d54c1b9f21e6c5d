"""Profiles: where a device's data lives (``$STOCKZEN_HOME``) and which server and token it uses."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import jwt
import platformdirs

DEFAULT_PROFILE = "default"


class ProfileError(Exception):
    """The profile is missing or unusable; ``str()`` says what to do."""


def home() -> Path:
    """``$STOCKZEN_HOME``, or the platform's user data directory for StockZen."""
    configured = os.environ.get("STOCKZEN_HOME")
    return Path(configured) if configured else Path(platformdirs.user_data_dir("stockzen", appauthor=False))


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
    def lock_file(self) -> Path:
        """The file whose lock makes syncs single-flight across processes."""
        return self.directory / "sync.lock"

    @classmethod
    def create(cls, directory: Path, server_url: str, token: str) -> Profile:
        """A profile for ``token`` (read, not verified: the server verifies it) on ``server_url``."""
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
            tenant_id, user_id = UUID(str(claims["tenant_id"])), str(claims["sub"])
        except (jwt.PyJWTError, KeyError, ValueError):
            raise ProfileError("the token is not a StockZen token (it names no tenant_id and sub)") from None
        if not server_url.startswith(("http://", "https://")):
            raise ProfileError(f"the server URL must start with http:// or https:// (got {server_url!r})")
        return cls(directory, server_url.rstrip("/"), token, tenant_id, user_id)

    def save(self) -> None:
        """Write the profile, readable by its owner only (it holds a token)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / "profile.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # also when an older file was readable by others
        with os.fdopen(fd, "w") as file:
            json.dump({"serverUrl": self.server_url, "token": self.token}, file)

    @classmethod
    def load(cls, directory: Path) -> Profile:
        """The profile saved in ``directory``."""
        path = directory / "profile.json"
        try:
            saved = json.loads(path.read_text())
        except FileNotFoundError:
            raise ProfileError("not logged in: run `stockzen login --server URL --token TOKEN` first") from None
        except ValueError:
            raise ProfileError(f"the profile file {path} is damaged: log in again") from None
        return cls.create(directory, saved["serverUrl"], saved["token"])


def profile_directory(name: str = DEFAULT_PROFILE) -> Path:
    """The directory of profile ``name`` under :func:`home`."""
    if not name or "/" in name or name.startswith("."):
        raise ProfileError(f"{name!r} is not a profile name")
    return home() / name
