"""Group commit: the messages of one tenant in flight in a worker process share one transaction.

dramatiq's worker threads hand their coroutines to one event loop, so several messages are in
flight at once. Each one :meth:`GroupCommitter.submit`\\ s its work under its tenant; the first one
of a tenant starts a drain task, which applies what is queued for that tenant as one group, then
what queued up meanwhile as the next group, and so on until nothing is left (natural batching:
while a tenant's transaction is in flight, arrivals wait for it anyway, on its checkpoint row).
With ``max_wait`` set, a group that has not reached ``max_messages`` waits at most that long after
its first member arrived for more. Each tenant has its own drain task: tenants commit in parallel.

When a group fails as a whole, each member is applied again alone, in order, and gets its own
result or its own exception: a message that fails alone never fails its companions. Only this
module knows about groups; what a group and a member alone mean is given to it
(:func:`~stockzen_sync_worker.services.apply_group` and ``apply_alone`` in production, fakes in tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
R = TypeVar("R")


class GroupObserver(Protocol):
    """Told about each group as its transaction starts, and about each group that fell back."""

    def group_started(self, size: int, waits: Sequence[float]) -> None:
        """A group of ``size`` messages starts; ``waits``: how long each waited since it was submitted (s)."""
        ...

    def group_fell_back(self, size: int) -> None:
        """A group of ``size`` failed as a whole; its members are applied one at a time."""
        ...


@dataclass(slots=True)
class _Waiter(Generic[T, R]):
    item: T
    future: asyncio.Future[R]
    submitted: float


@dataclass(slots=True)
class _Tenant(Generic[T, R]):
    queue: deque[_Waiter[T, R]] = field(default_factory=deque)
    full: asyncio.Event = field(default_factory=asyncio.Event)
    drain: asyncio.Task[None] | None = None


class GroupCommitter(Generic[K, T, R]):
    """Applies the items submitted under one key in groups, one group at a time per key, in the
    order they were submitted; ``submit`` returns an item's own result once its group is done."""

    def __init__(
        self,
        apply_group: Callable[[K, list[T]], Awaitable[list[R]]],
        apply_alone: Callable[[K, T], Awaitable[R]],
        *,
        max_messages: int,
        max_wait_seconds: float = 0.0,
        observer: GroupObserver | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if max_messages < 1:
            raise ValueError("max_messages must be at least 1")
        self._apply_group = apply_group
        self._apply_alone = apply_alone
        self._max = max_messages
        self._max_wait = max(0.0, max_wait_seconds)
        self._observer = observer
        self._clock = clock
        self._keys: dict[K, _Tenant[T, R]] = {}

    def in_flight(self, key: K) -> int:
        """How many items of ``key`` are queued or being applied (0 once its drain task ended)."""
        state = self._keys.get(key)
        return 0 if state is None else len(state.queue) + (state.drain is not None)

    async def submit(self, key: K, item: T) -> R:
        """Queue ``item`` under ``key`` and wait for its own result (or its own exception).

        Cancelled while queued, the item is left out of its group; cancelled once its group
        started, the group goes on and only the answer is lost (the caller's retry finds its work done).
        """
        loop = asyncio.get_running_loop()
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = _Tenant()
        waiter: _Waiter[T, R] = _Waiter(item, loop.create_future(), self._clock())
        state.queue.append(waiter)
        if len(state.queue) >= self._max:
            state.full.set()
        if state.drain is None:
            state.drain = loop.create_task(self._drain(key, state))
        return await waiter.future

    async def _drain(self, key: K, state: _Tenant[T, R]) -> None:
        group: list[_Waiter[T, R]] = []
        try:
            while state.queue:
                await self._linger(state)
                group = self._take(state)
                if group:
                    await self._run(key, group)
                group = []
        finally:
            # Normally the queue is empty here; if the task itself was cancelled (the loop shutting
            # down), nobody is left waiting forever.
            for waiter in (*group, *state.queue):
                if not waiter.future.done():
                    waiter.future.cancel()
            state.queue.clear()
            state.drain = None
            if self._keys.get(key) is state:
                del self._keys[key]

    async def _linger(self, state: _Tenant[T, R]) -> None:
        """With ``max_wait`` set, give a group that is not full until ``max_wait`` after its first arrival."""
        if self._max_wait <= 0 or len(state.queue) >= self._max:
            return
        remaining = state.queue[0].submitted + self._max_wait - self._clock()
        if remaining <= 0:
            return
        state.full.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.full.wait(), remaining)

    def _take(self, state: _Tenant[T, R]) -> list[_Waiter[T, R]]:
        """The next group: up to ``max_messages`` items still waiting, in order."""
        group: list[_Waiter[T, R]] = []
        while state.queue and len(group) < self._max:
            waiter = state.queue.popleft()
            if not waiter.future.done():  # one whose caller gave up is left out
                group.append(waiter)
        if len(state.queue) < self._max:
            state.full.clear()
        return group

    async def _run(self, key: K, group: list[_Waiter[T, R]]) -> None:
        started = self._clock()
        if self._observer is not None:
            self._observer.group_started(len(group), [started - w.submitted for w in group])
        if len(group) == 1:
            await self._alone(key, group[0])
            return
        try:
            results = await self._apply_group(key, [w.item for w in group])
            if len(results) != len(group):
                raise RuntimeError(f"a group of {len(group)} got {len(results)} results")
        except Exception as exc:
            log.warning(
                "a group commit failed; applying its messages one at a time",
                extra={"messages": len(group), "error": repr(exc)[:500]},
            )
            if self._observer is not None:
                self._observer.group_fell_back(len(group))
            for waiter in group:
                await self._alone(key, waiter)
            return
        for waiter, result in zip(group, results, strict=True):
            if not waiter.future.done():
                waiter.future.set_result(result)

    async def _alone(self, key: K, waiter: _Waiter[T, R]) -> None:
        if waiter.future.done():  # its caller gave up (its message will come again)
            return
        try:
            result = await self._apply_alone(key, waiter.item)
        except Exception as exc:
            if not waiter.future.done():
                waiter.future.set_exception(exc)
            return
        if not waiter.future.done():
            waiter.future.set_result(result)
