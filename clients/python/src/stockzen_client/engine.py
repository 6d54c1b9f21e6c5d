"""The sync engine: push the outbox, settle each result, pull the feed, and say where things stand.

One sync at a time per profile: concurrent callers in a process share the sync in flight, and a
lock file keeps other processes on the same profile out while it runs. While the engine runs online,
the gateway's live stream tells it when other devices' changes commit, and a sync follows at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import filelock

from stockzen_client.adapters.api import ApiFailure, GatewayApi, ResetRequired, ServerFailing, Unreachable
from stockzen_client.adapters.store import LocalStore
from stockzen_client.domain.backoff import Backoff
from stockzen_client.domain.status import SyncState, SyncStatus, settled_state
from stockzen_client.live import LiveUpdates
from stockzen_client.status_hub import StatusHub

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""Called with (changes sent so far, changes queued when the push began)."""


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """How often the engine looks at things; the defaults suit a person at a terminal."""

    batch_size: int = 100  # operations per request (the server takes up to 500 and 1 MiB)
    sync_every: float = 30.0  # a periodic sync while online covers what the live stream missed
    probe_every: float = 2.0  # while offline, a light request to notice the connection returning
    tick: float = 1.0  # how often the loop looks for changes queued by other processes
    stuck_after: int = 3  # attempts after which a queued change that keeps failing means `error`
    lock_wait: float = 30.0  # how long a sync waits for another process's sync on the profile
    live: bool = True  # listen to the gateway's live stream while online, and sync when it announces changes


@dataclass(slots=True)
class _LoopMarks:
    """Where the engine's loop stands: the outbox head it last synced, when to sync or probe next, and
    whether the live stream announced changes since the last sync began (``wake`` ends the loop's rest)."""

    head: int = -1
    next_sync: float = 0.0
    next_probe: float = 0.0
    poked: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def poke(self) -> None:
        """Make a sync due now and wake the loop."""
        self.poked = True
        self.wake.set()


class SyncBusy(Exception):
    """Another process kept the profile's sync lock longer than the engine would wait."""


class SyncEngine:
    """Runs syncs for one profile and publishes its :class:`SyncStatus`."""

    def __init__(
        self,
        store: LocalStore,
        api: GatewayApi,
        *,
        lock_path: Path | None = None,
        backoff: Backoff | None = None,
        settings: EngineSettings | None = None,
        clock: Callable[[], float] = time.time,
        warning: Callable[[], str | None] = lambda: None,
    ) -> None:
        """``warning`` says what the status must show whatever the syncs do (a login the engine will
        not follow, say); the status is ``error`` while it says something."""
        self.store = store
        self.api = api
        self.backoff = backoff or Backoff()
        self.settings = settings or EngineSettings()
        self._clock = clock
        self._lock = filelock.FileLock(lock_path) if lock_path else None
        self._inflight: asyncio.Task[SyncStatus] | None = None
        self._state = SyncState.OFFLINE
        self._last_error: str | None = store.get_meta("last_error")
        synced = store.get_meta("last_synced_at")
        self._last_synced_at = datetime.fromisoformat(synced) if synced else None
        self._uploading = self._downloading = False
        self._failures = 0
        self._successes = 0
        self._warning = warning
        self.hub = StatusHub(self._compose())

    @property
    def status(self) -> SyncStatus:
        """The status now."""
        return self.hub.current

    def refresh(self) -> SyncStatus:
        """Publish the status again after a local change (counts, notices)."""
        self.hub.publish(self._compose())
        return self.hub.current

    async def sync(self, progress: Progress | None = None) -> SyncStatus:
        """One sync now: push the outbox, then pull every feed page. A sync already in flight in this
        process is joined rather than doubled."""
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.create_task(self._sync_exclusively(progress))
        return await asyncio.shield(self._inflight)

    async def run(self, stop: asyncio.Event) -> None:
        """Sync by itself until ``stop`` is set: when the connection returns, when a change is queued
        (by this process or another on the profile), when a backing-off change is due, when the live
        stream announces other devices' changes, and periodically. Returns with the stream closed."""
        loop = _LoopMarks()
        live = LiveUpdates(self.api, self.backoff, loop.poke) if self.settings.live else None
        stopping = asyncio.create_task(_relay(stop, loop.wake))  # ``stop`` ends the loop's rest at once
        try:
            while not stop.is_set():
                synced = await self._turn(loop)
                if live is not None and synced:
                    live.resume()  # a stream refused for its token may open again: the token now works
                if live is not None and not stop.is_set():
                    await live.follow(online=self._state is not SyncState.OFFLINE)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(loop.wake.wait(), self.settings.tick)
                loop.wake.clear()
        finally:
            stopping.cancel()
            await asyncio.wait({stopping})
            if live is not None:
                await live.close()

    async def _turn(self, loop: _LoopMarks) -> bool:
        """One look at the loop's marks, and a sync if one is due; whether a sync reached the server."""
        if not await self._due(loop):
            self.refresh()  # counts change when another process queues a change while offline
            return False
        # Cleared before the sync begins: an announcement that comes during it makes another due.
        loop.head, loop.poked = self.store.outbox_head(), False
        successes = self._successes
        await self._sync_in_loop()
        loop.next_sync = time.monotonic() + self._pause_after()
        return self._successes > successes

    async def _due(self, loop: _LoopMarks) -> bool:
        now = time.monotonic()
        if self._state is SyncState.OFFLINE and loop.head >= 0:
            # Offline, only the light probe goes out; its success makes every queued change due.
            if now < loop.next_probe:
                return False
            loop.next_probe = now + self.settings.probe_every
            if not await self.api.probe():
                return False
            self.store.release_backoff()
            return True
        # The outbox's last sequence number grows whenever any process on the profile queues a change.
        retry_at = self.store.next_attempt_at()
        return (
            loop.poked
            or now >= loop.next_sync
            or self.store.outbox_head() != loop.head
            or (retry_at is not None and retry_at <= self._clock())
        )

    async def _sync_in_loop(self) -> None:
        try:
            await self.sync()
        except SyncBusy:
            pass  # another process is syncing the profile; it does the work
        except Exception as exc:  # a bug or a local fault must not stop the engine; say it and retry later
            log.exception("sync failed unexpectedly")
            self._failed(SyncState.ERROR, f"unexpected failure: {exc}")

    def _pause_after(self) -> float:
        if self._state is SyncState.ERROR:
            return min(self.settings.sync_every, self.backoff.delay(self._failures))
        return self.settings.sync_every

    async def _sync_exclusively(self, progress: Progress | None) -> SyncStatus:
        async with self._profile_lock():
            return await self._sync_once(progress)

    @contextlib.asynccontextmanager
    async def _profile_lock(self) -> AsyncIterator[None]:
        if self._lock is None:
            yield
            return
        deadline = time.monotonic() + self.settings.lock_wait
        while True:
            try:
                self._lock.acquire(blocking=False)
                break
            except filelock.Timeout:
                if time.monotonic() > deadline:
                    raise SyncBusy("another process is syncing this profile; try again in a moment") from None
                await asyncio.sleep(0.1)
        try:
            yield
        finally:
            self._lock.release()

    async def _sync_once(self, progress: Progress | None) -> SyncStatus:
        self._set(SyncState.SYNCING, uploading=True)
        try:
            await self._push(progress)
            self._set(SyncState.SYNCING, downloading=True)
            await self._pull()
        except Unreachable as exc:
            self._failed(SyncState.OFFLINE, str(exc))
        except ApiFailure as exc:
            self._failed(SyncState.ERROR, str(exc))
        else:
            self._succeeded()
        return self.hub.current

    async def _push(self, progress: Progress | None) -> None:
        total, done = self.store.counts()[0], 0
        sent: set[int] = set()  # each change goes out at most once per sync: no rapid retry loop
        while batch := [i for i in self.store.sendable(self.settings.batch_size + len(sent)) if i.seq not in sent]:
            batch = batch[: self.settings.batch_size]
            sent.update(item.seq for item in batch)
            self.store.mark_sending(batch)
            try:
                answer = await self.api.push(self.store.checkpoint, [item.body for item in batch])
            except ApiFailure as exc:
                self.store.defer(batch, str(exc), self._delay_honouring(exc.retry_after))
                raise
            self.store.settle(batch, answer.response.results, self.backoff.delay)
            done += len(batch)
            if progress:
                progress(done, max(total, done))
            self.refresh()

    def _delay_honouring(self, retry_after: float | None) -> Callable[[int], float]:
        def delay(attempt: int) -> float:
            return max(self.backoff.delay(attempt), retry_after or 0.0)

        return delay

    async def _pull(self) -> None:
        reset = False
        while True:
            before = self.store.checkpoint
            try:
                page = await self.api.changes(before)
            except ResetRequired:
                if reset:
                    raise ServerFailing("the server asked for a full download twice in one sync") from None
                reset = True
                self.store.reset_server_data()
                continue
            self.store.apply_page(page)
            if not page.has_more:
                break
            if page.checkpoint == before and not page.changes:
                raise ServerFailing("the change feed promised more changes but sent none")
        self.store.pull_finished()

    def _set(self, state: SyncState, *, uploading: bool = False, downloading: bool = False) -> None:
        self._state, self._uploading, self._downloading = state, uploading, downloading
        self.refresh()

    def _failed(self, state: SyncState, error: str) -> None:
        self._failures += 1
        self._last_error = error
        self._set(state)
        self.store.save_status(self.status.state, self.status.last_error, None)

    def _succeeded(self) -> None:
        self._failures = 0
        self._successes += 1
        queued = self.store.counts()[0]
        state = settled_state(queued=queued, stuck=self.store.max_attempts() >= self.settings.stuck_after)
        self._last_synced_at = datetime.now(UTC)
        self._last_error = None if queued == 0 else self.store.last_queued_error()
        self._set(state)
        self.store.save_status(self.status.state, self.status.last_error, self._last_synced_at)

    def _compose(self) -> SyncStatus:
        queued, failed, _ = self.store.counts()
        warning = self._warning()
        return SyncStatus(
            state=SyncState.ERROR if warning else self._state,
            queued=queued,
            failed=failed,
            last_synced_at=self._last_synced_at,
            last_error=warning or self._last_error,
            uploading=self._uploading,
            downloading=self._downloading,
            notices=tuple(self.store.notices()),
        )


async def _relay(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()


def stored_status(store: LocalStore, *, engine_running: bool) -> SyncStatus:
    """The status as the last sync left it, read from the store alone (``stockzen status``).

    Changes queued since that sync make an "up to date" stale: they show as ``syncing`` while an
    engine runs on the profile, and as ``offline`` (queued locally, not sent) when none does.
    """
    saved = store.get_meta("state")
    state = SyncState(saved) if saved is not None and saved in set(SyncState) else SyncState.OFFLINE
    queued, failed, awaiting = store.counts()
    if state is SyncState.UP_TO_DATE and (queued or awaiting):
        state = SyncState.SYNCING if engine_running else SyncState.OFFLINE
    synced = store.get_meta("last_synced_at")
    return SyncStatus(
        state=state,
        queued=queued,
        failed=failed,
        last_synced_at=datetime.fromisoformat(synced) if synced else None,
        last_error=store.get_meta("last_error"),
        notices=tuple(store.notices()),
    )
