"""The sync engine: push the outbox, settle each result, pull (a snapshot first on a new device, then
the feed), and say where things stand.

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

from stockzen_client.domain.backoff import Backoff
from stockzen_client.domain.outbox import OutboxItem
from stockzen_client.domain.status import StateMachine, SyncProgress, SyncState, SyncStatus
from stockzen_client.live import LiveUpdates
from stockzen_client.ports import (
    ApiFailure,
    Clock,
    Delay,
    Gateway,
    RateLimited,
    Refused,
    ResetRequired,
    ServerFailing,
    SyncStore,
    Unauthorized,
    Unreachable,
)
from stockzen_client.profile import PRIVATE_FILE
from stockzen_client.status_hub import StatusHub

log = logging.getLogger(__name__)

Progress = Callable[[SyncProgress], None]
"""Called as a sync goes: changes sent (``upload``), products stored of a first download
(``snapshot``), changes pulled from the feed (``feed``)."""


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """How often the engine looks at things; the defaults suit a person at a terminal."""

    batch_size: int = 100  # operations per request (the server takes up to 500 and 1 MiB; a 413 splits it)
    sync_every: float = 30.0  # a periodic sync while online covers what the live stream missed
    probe_every: float = 2.0  # while offline, a light request to notice the connection returning
    tick: float = 1.0  # how often the loop looks for changes queued by other processes
    stuck_after: int = 3  # attempts after which a queued change that keeps failing means `error`
    error_after: int = 3  # syncs in a row failing with an answer after which the state is `error`
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
        store: SyncStore,
        api: Gateway,
        *,
        lock_path: Path | None = None,
        backoff: Backoff | None = None,
        settings: EngineSettings | None = None,
        clock: Clock = time.time,
        warning: Callable[[], str | None] = lambda: None,
    ) -> None:
        """``warning`` says what the status must show whatever the syncs do (a login the engine will
        not follow, say); the status is ``error`` while it says something."""
        self.store = store
        self.api = api
        self.backoff = backoff or Backoff()
        self.settings = settings or EngineSettings()
        self._clock = clock
        self._lock = filelock.FileLock(lock_path, mode=PRIVATE_FILE) if lock_path else None
        self._inflight: asyncio.Task[SyncStatus] | None = None
        # A device starts `syncing`: its first sync starts at once (and says `offline` if nothing answers).
        self._machine = StateMachine(error_after=self.settings.error_after, stuck_after=self.settings.stuck_after)
        self._batch_size = self.settings.batch_size  # smaller once the server says the batch has too many operations
        self._last_error: str | None = store.get_meta("last_error")
        synced = store.get_meta("last_synced_at")
        self._last_synced_at = datetime.fromisoformat(synced) if synced else None
        self._uploading = self._downloading = False
        self._progress: SyncProgress | None = None
        self._report_to: Progress | None = None
        self._successes = 0
        self._retry_after: float | None = None  # the last failing sync's Retry-After
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
        """One sync now: push the outbox, then pull (the snapshot if this device has no checkpoint, then
        every feed page). A sync already in flight in this process is joined rather than doubled (and
        ``progress`` is then not called)."""
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
                    await live.follow(online=self._machine.state is not SyncState.OFFLINE)
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
        if self._machine.state is SyncState.OFFLINE and loop.head >= 0:
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
            self._failed(f"unexpected failure: {exc}", at_once=True)

    def _pause_after(self) -> float:
        """How long the loop waits for its next sync (changes queued meanwhile, or coming due, end it
        sooner): the periodic sync's pause, or after a failing sync its backoff, at least the server's
        ``Retry-After`` (capped)."""
        failures = self._machine.failures
        if not failures:
            return self.settings.sync_every
        pause = min(self.settings.sync_every, self.backoff.delay(failures))
        if self._retry_after:
            pause = max(pause, min(self._retry_after, self.backoff.retry_after_cap))
        return pause

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
        self._report_to, self._progress = progress, None
        self._set(uploading=True)
        try:
            await self._release_if_back_online()
            await self._push()
            self._progress = None
            self._set(downloading=True)
            downloaded = await self._pull()
        except Unreachable as exc:
            self._offline(str(exc))
        except Unauthorized as exc:
            self._failed(str(exc), at_once=True)
        except ApiFailure as exc:
            self._failed(str(exc), retry_after=exc.retry_after)
        else:
            self._succeeded(downloaded=downloaded)
        finally:
            self._report_to = None
        return self.hub.current

    async def _release_if_back_online(self) -> None:
        """When the last sync on this profile got no answer (in this process or another: a one-shot
        ``stockzen sync`` starts afresh) and changes back off for it, a light probe first: if the server
        answers now, every queued change is due, as the loop makes them when its probe succeeds. Their
        backoff counted failures of the link, not of the changes; the browser app's sync sends every
        queued change too."""
        if self.store.get_meta("state") != SyncState.OFFLINE.value or not self.store.backing_off(self._clock()):
            return
        if await self.api.probe():
            self.store.release_backoff()

    async def _push(self) -> None:
        """Send every queued change that is due, oldest first, in batches; each goes out at most once
        per sync (no rapid retry loop), and a product's later changes wait behind its earlier ones
        that are not sent now (backing off, or already sent in this sync and queued again)."""
        total, done = self.store.counts()[0], 0
        sent: set[int] = set()
        while batch := self.store.sendable(self._batch_size, exclude=sent):
            sent.update(item.seq for item in batch)
            done += await self._send(batch)
            self._report("upload", done, max(total, done))

    async def _send(self, batch: list[OutboxItem]) -> int:
        """Push one batch and settle its answer; how many changes it carried.

        A whole request refused with a 4xx that is not 401, 408, 409 or 429 (413 too many operations or
        too large, 422, ...) says the server read none of it and cannot take this batch: it is split in
        halves and each is sent again, now; a change refused so on its own is refused for good, with the
        server's code. Any other failure keeps the batch queued with backoff and ends the sync.
        """
        batch = self.store.still_queued(batch)  # a refused create may have failed its product's later changes
        if not batch:
            return 0
        self.store.mark_sending(batch)
        try:
            answer = await self.api.push(self.store.checkpoint, [item.body for item in batch])
        except Refused as exc:
            self.store.release(batch)
            if len(batch) == 1:
                self.store.refuse(batch[0], exc.code or str(exc.status), str(exc))
                return 1
            if exc.status == 413 and exc.code == "TOO_MANY_OPERATIONS":
                # The server takes fewer: later batches of this engine are no bigger than that.
                self._batch_size = max(1, min(self._batch_size, len(batch) - 1))
            half = len(batch) // 2
            return await self._send(batch[:half]) + await self._send(batch[half:])
        except ApiFailure as exc:
            self.store.defer(batch, str(exc), self._delay_honouring(exc.retry_after), stored=_stored(exc))
            raise
        self.store.settle(batch, answer.response.results, self.backoff.delay)
        return len(batch)

    def _delay_honouring(self, retry_after: float | None) -> Delay:
        def delay(attempt: int) -> float:
            return self.backoff.delay(attempt, retry_after)

        return delay

    async def _pull(self) -> bool:
        """Pull until the feed has nothing more; False when the first download has to wait (a stock
        movement sent earlier is still in doubt)."""
        snapshots = pulled = 0
        while True:
            if self.store.checkpoint is None:
                if snapshots:
                    raise ServerFailing("the server asked for a full download twice in one sync")
                snapshots += 1
                if not await self._snapshot():
                    return False
            before = self.store.checkpoint
            try:
                page = await self.api.changes(before)
            except ResetRequired:
                self.store.forget_checkpoint()  # what the store shows stays until the snapshot replaces it
                continue
            self.store.apply_page(page)
            pulled += len(page.changes)
            self._report("feed", pulled, pulled + (page.remaining if page.has_more else 0))
            if not page.has_more:
                break
            if page.checkpoint == before and not page.changes:
                raise ServerFailing("the change feed promised more changes but sent none")
        self.store.pull_finished()
        return True

    async def _snapshot(self) -> bool:
        """Download the snapshot page by page (resuming one under way from its cursor), each page with
        its progress in one local transaction. A snapshot only starts when none of this device's stock
        movements is in doubt: one applied before the snapshot's checkpoint is inside its levels, one
        applied after comes through the feed, but one whose fate is unknown could count twice or never."""
        restarted = False
        while True:
            resumed = self.store.snapshot_progress()
            if resumed is None and self.store.in_doubt_movements():
                log.info("the first download waits: some stock movements sent earlier have no final answer yet")
                return False
            try:
                page = await self.api.snapshot(resumed.cursor if resumed else None)
            except ResetRequired:
                # The snapshot outlived the server's tombstones: start it again from its first page.
                if resumed is None:
                    raise ServerFailing("the server refused to start a snapshot (RESET_REQUIRED)") from None
                if restarted:
                    raise ServerFailing("the server asked for a new snapshot twice in one sync") from None
                restarted = True
                self.store.abandon_snapshot()
                continue
            except Refused:
                if resumed is not None:
                    self.store.abandon_snapshot()  # the server refuses this cursor: start again next time
                raise
            if resumed is not None and page.checkpoint != resumed.checkpoint:
                self.store.abandon_snapshot()
                raise ServerFailing("a snapshot page came with another checkpoint than its first page")
            now = self.store.store_snapshot_page(page, resumed)
            self._report("snapshot", now.done, now.total)
            if now.cursor is None:
                return True

    def _report(self, phase: str, done: int, total: int) -> None:
        self._progress = SyncProgress(phase, done, total)
        self.refresh()
        if self._report_to is not None:
            self._report_to(self._progress)

    def _set(self, *, uploading: bool = False, downloading: bool = False) -> None:
        """A sync runs: ``syncing`` (unless the device is in ``error``: that stays until a sync succeeds)."""
        if self._machine.state is not SyncState.ERROR:
            self._machine.state = SyncState.SYNCING
        self._uploading, self._downloading = uploading, downloading
        self.refresh()

    def _end(self, error: str | None) -> None:
        self._last_error = error
        self._progress = None
        self._uploading = self._downloading = False
        self.refresh()
        self.store.save_status(self.status.state, self.status.last_error, self._last_synced_at)

    def _offline(self, error: str) -> None:
        self._machine.unreachable()
        self._end(error)

    def _failed(self, error: str, *, at_once: bool = False, retry_after: float | None = None) -> None:
        self._machine.failed(at_once=at_once, attempts=self.store.max_attempts())
        self._retry_after = retry_after
        self._end(error)

    def _succeeded(self, *, downloaded: bool) -> None:
        self._successes += 1
        queued = self.store.counts()[0]
        self._machine.succeeded(queued=queued, attempts=self.store.max_attempts(), caught_up=downloaded)
        error = None if queued == 0 else self.store.last_queued_error()
        if downloaded:
            self._last_synced_at = datetime.now(UTC)
        else:  # the first download waits for answers to changes already sent: retried with their backoff
            error = "the download waits for the server's final answer to stock movements already sent" + (
                f" ({error})" if error else ""
            )
        self._end(error)

    def _compose(self) -> SyncStatus:
        queued, failed, _ = self.store.counts()
        warning = self._warning()
        return SyncStatus(
            state=self._machine.shown(queued=queued, warning=bool(warning)),
            queued=queued,
            failed=failed,
            last_synced_at=self._last_synced_at,
            last_error=warning or self._last_error,
            uploading=self._uploading,
            downloading=self._downloading,
            notices=tuple(self.store.notices()),
            progress=self._progress,
        )


async def _relay(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()


def _stored(failure: ApiFailure) -> bool | None:
    """Whether a push that failed as a whole stored anything: False when the server refused it before
    reading it (401, 429), None when nobody knows (no answer, a failing server)."""
    if isinstance(failure, Unreachable) or (
        isinstance(failure, ServerFailing) and not isinstance(failure, RateLimited)
    ):
        return None
    return False
