"""The sync status as one observable value: read it, subscribe a callback, or iterate over changes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable

from stockzen_client.domain.status import SyncState, SyncStatus

StatusCallback = Callable[[SyncStatus], None]


class StatusHub:
    """Holds the current :class:`SyncStatus` and tells every subscriber when it changes."""

    def __init__(self, initial: SyncStatus | None = None) -> None:
        self._current = initial or SyncStatus(SyncState.OFFLINE)
        self._callbacks: list[StatusCallback] = []
        self._queues: set[asyncio.Queue[SyncStatus]] = set()

    @property
    def current(self) -> SyncStatus:
        """The status now."""
        return self._current

    def subscribe(self, callback: StatusCallback) -> Callable[[], None]:
        """Call ``callback`` with every new status; returns the function that unsubscribes it."""
        self._callbacks.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._callbacks.remove(callback)

        return unsubscribe

    async def updates(self) -> AsyncGenerator[SyncStatus, None]:
        """The current status, then each new one, for ``async for`` (ends when the consumer stops)."""
        queue: asyncio.Queue[SyncStatus] = asyncio.Queue()
        self._queues.add(queue)
        try:
            yield self._current
            while True:
                yield await queue.get()
        finally:
            self._queues.discard(queue)

    def publish(self, status: SyncStatus) -> None:
        """Make ``status`` current and tell subscribers, unless nothing changed."""
        if status == self._current:
            return
        self._current = status
        for callback in list(self._callbacks):
            callback(status)
        for queue in self._queues:
            queue.put_nowait(status)
