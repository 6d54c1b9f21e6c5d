"""Live updates: keep the gateway's checkpoint stream open while online, and ask for a sync when it speaks.

The stream only pokes; the engine's loop pulls (PowerSync's and Replicache's "poke, then pull"), so a
sync is never started from here and never doubled. A missed announcement costs nothing more than a
wait for the periodic sync.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from stockzen_client.domain.backoff import Backoff
from stockzen_client.ports import ApiFailure, Gateway, Unauthorized
from stockzen_contracts import StreamEvent

log = logging.getLogger(__name__)

POKING_EVENTS = frozenset({StreamEvent.READY.value, StreamEvent.CHECKPOINT.value})
"""``ready``: the stream listens, so one pull catches what committed before it opened; ``checkpoint``:
the tenant's changes committed."""


class LiveUpdates:
    """One task that reads the stream, reconnecting with the engine's backoff, and calls ``poke`` on
    ``ready`` and ``checkpoint``. A refused token (401) ends the tries until :meth:`resume` (the engine
    calls it when a sync gets through again, with a new login's token)."""

    def __init__(self, api: Gateway, backoff: Backoff, poke: Callable[[], None]) -> None:
        self._api = api
        self._backoff = backoff
        self._poke = poke
        self._task: asyncio.Task[None] | None = None
        self._failures = 0
        self.refused = False
        self._resumed = False

    @property
    def listening(self) -> bool:
        """Whether the task that keeps the stream open runs."""
        return self._task is not None and not self._task.done()

    async def follow(self, *, online: bool) -> None:
        """Keep the stream open while ``online`` (unless the token was refused); close it while offline,
        where only the engine's light probe goes out."""
        if not online:
            await self.close()
        elif not self.listening and not self.refused:
            self._task = asyncio.create_task(self._listen(), name="stockzen-live-updates")

    def resume(self) -> None:
        """Let a stream refused for its token open again (at the next :meth:`follow`)."""
        if self.refused:
            self.refused, self._resumed = False, True

    async def close(self) -> None:
        """Close the stream and wait for its task to end."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})

    async def _listen(self) -> None:
        if self._resumed:  # after a refusal, wait as after a failure: a token the stream refuses again
            self._resumed = False  # (while syncs get through) must not make a tight loop of 401s
            await asyncio.sleep(self._backoff.delay(self._failures))
        while True:
            retry_after = 0.0
            try:
                await self._read()
            except Unauthorized:
                self.refused = True
                self._failures += 1
                log.info("the live stream refused the token; no more tries until a sync gets through")
                self._poke()  # the sync meets the same 401, and the status says to log in again
                return
            except ApiFailure as exc:  # cut off, or a failing server: the periodic sync covers the gap
                log.info("the live stream dropped: %s", exc)
                retry_after = exc.retry_after or 0.0
            except Exception:  # a bug must not end live updates for good; say it and try again later
                log.exception("the live stream failed unexpectedly")
            self._failures += 1
            await asyncio.sleep(self._backoff.delay(self._failures, retry_after))

    async def _read(self) -> None:
        async with contextlib.aclosing(self._api.live_events()) as events:
            async for event in events:
                self._failures = 0
                if event.kind in POKING_EVENTS:
                    self._poke()
