"""The offline-first StockZen Sync client: a local store and outbox, a sync engine with one
observable status, and the ``stockzen`` command built on them.

The names below are loaded when first used, so that ``import stockzen_client.cli`` (and each command
that needs no network) does not pay for the network stack and the wire models.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stockzen_client.client import InvalidChange, StockzenClient
    from stockzen_client.domain.backoff import Backoff
    from stockzen_client.domain.status import Notice, SyncProgress, SyncState, SyncStatus
    from stockzen_client.domain.view import LocalMovement, LocalProduct
    from stockzen_client.engine import EngineSettings, SyncEngine
    from stockzen_client.profile import Profile, ProfileError
    from stockzen_client.status_hub import StatusHub

_HOMES = {
    "Backoff": "stockzen_client.domain.backoff",
    "EngineSettings": "stockzen_client.engine",
    "InvalidChange": "stockzen_client.client",
    "LocalMovement": "stockzen_client.domain.view",
    "LocalProduct": "stockzen_client.domain.view",
    "Notice": "stockzen_client.domain.status",
    "Profile": "stockzen_client.profile",
    "ProfileError": "stockzen_client.profile",
    "StatusHub": "stockzen_client.status_hub",
    "StockzenClient": "stockzen_client.client",
    "SyncEngine": "stockzen_client.engine",
    "SyncProgress": "stockzen_client.domain.status",
    "SyncState": "stockzen_client.domain.status",
    "SyncStatus": "stockzen_client.domain.status",
}

__all__ = [
    "Backoff",
    "EngineSettings",
    "InvalidChange",
    "LocalMovement",
    "LocalProduct",
    "Notice",
    "Profile",
    "ProfileError",
    "StatusHub",
    "StockzenClient",
    "SyncEngine",
    "SyncProgress",
    "SyncState",
    "SyncStatus",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # found once, then an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
