"""The sync status as the last sync left it, read from the store alone (``stockzen status``).

Light on purpose: it needs SQLite and the status values only, so a status asked for in another
process starts at once (no network stack, no wire models).
"""

from __future__ import annotations

from datetime import datetime

from stockzen_client.adapters.store import LocalStore
from stockzen_client.domain.status import SyncState, SyncStatus


def stored_status(store: LocalStore, *, engine_running: bool) -> SyncStatus:
    """The status the last sync saved, corrected for what happened since.

    Changes queued since that sync make an "up to date" stale: they show as ``syncing`` while an
    engine runs on the profile, and as ``offline`` (queued locally, not sent) when none does. A first
    download under way shows its progress (products stored of how many).
    """
    saved = store.get_meta("state")
    state = SyncState(saved) if saved is not None and saved in set(SyncState) else SyncState.OFFLINE
    queued, failed, awaiting = store.counts()
    progress = store.download_progress()
    if state is SyncState.UP_TO_DATE and (queued or awaiting or progress):
        state = SyncState.SYNCING if engine_running else SyncState.OFFLINE
    synced = store.get_meta("last_synced_at")
    return SyncStatus(
        state=state,
        queued=queued,
        failed=failed,
        last_synced_at=datetime.fromisoformat(synced) if synced else None,
        last_error=store.get_meta("last_error"),
        notices=tuple(store.notices()),
        progress=progress,
    )
