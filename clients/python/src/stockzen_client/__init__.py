"""The offline-first StockZen Sync client: a local store and outbox, a sync engine with one
observable status, and the ``stockzen`` command built on them."""

from stockzen_client.client import InvalidChange, StockzenClient
from stockzen_client.domain.backoff import Backoff
from stockzen_client.domain.status import Notice, SyncState, SyncStatus
from stockzen_client.domain.view import LocalMovement, LocalProduct
from stockzen_client.engine import EngineSettings, SyncEngine
from stockzen_client.profile import Profile, ProfileError
from stockzen_client.status_hub import StatusHub

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
    "SyncState",
    "SyncStatus",
]
