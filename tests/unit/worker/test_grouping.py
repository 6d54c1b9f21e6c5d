"""The group committer on its own, with fake group and single applies: which items share a group,
in what order, what each caller gets back, and what a failed group falls back to."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from stockzen_sync_worker.grouping import GroupCommitter


class Refused(Exception):
    """What the fake raises for an item named ``bad``."""


@dataclass
class FakeLedger:
    """Records each group and each lone apply; a group holding ``bad`` fails whole, ``bad`` alone fails alone.
    Each apply waits on ``gate`` (when set) so that a test can hold a group in flight."""

    groups: list[tuple[str, list[str]]] = field(default_factory=list)
    alone: list[tuple[str, str]] = field(default_factory=list)
    gate: asyncio.Event | None = None
    in_flight: set[str] = field(default_factory=set)
    overlapped: set[frozenset[str]] = field(default_factory=set)

    async def _hold(self, key: str) -> None:
        assert key not in self.in_flight, "two groups of one key at once"
        if self.in_flight:
            self.overlapped.add(frozenset({key, *self.in_flight}))
        self.in_flight.add(key)
        try:
            if self.gate is not None:
                await self.gate.wait()
            await asyncio.sleep(0)
        finally:
            self.in_flight.discard(key)

    async def apply_group(self, key: str, items: list[str]) -> list[str]:
        self.groups.append((key, list(items)))
        await self._hold(key)
        if "bad" in items:
            raise Refused("the group failed")
        return [f"{key}:{item}" for item in items]

    async def apply_alone(self, key: str, item: str) -> str:
        self.alone.append((key, item))
        await self._hold(key)
        if item == "bad":
            raise Refused(item)
        return f"{key}:{item}"


@dataclass
class Observed:
    sizes: list[int] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)
    fallbacks: list[int] = field(default_factory=list)

    def group_started(self, size: int, waits: Sequence[float]) -> None:
        self.sizes.append(size)
        self.waits.extend(waits)

    def group_fell_back(self, size: int) -> None:
        self.fallbacks.append(size)


def committer(
    ledger: FakeLedger, observed: Observed | None = None, *, max_messages: int = 32, max_wait: float = 0.0
) -> GroupCommitter[str, str, str]:
    return GroupCommitter(
        ledger.apply_group,
        ledger.apply_alone,
        max_messages=max_messages,
        max_wait_seconds=max_wait,
        observer=observed,
    )


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_what_arrives_while_a_group_is_in_flight_goes_in_the_next_group_in_order() -> None:
    ledger, observed = FakeLedger(gate=asyncio.Event()), Observed()
    groups = committer(ledger, observed)
    first = asyncio.create_task(groups.submit("t1", "a"))
    await settle()  # "a" is in flight, alone
    rest = [asyncio.create_task(groups.submit("t1", name)) for name in ("b", "c", "d")]
    await settle()
    assert groups.in_flight("t1") == 4
    assert ledger.gate is not None
    ledger.gate.set()
    assert await asyncio.gather(first, *rest) == ["t1:a", "t1:b", "t1:c", "t1:d"]

    assert ledger.alone == [("t1", "a")]
    assert ledger.groups == [("t1", ["b", "c", "d"])]
    assert observed.sizes == [1, 3]
    assert len(observed.waits) == 4
    assert all(wait >= 0 for wait in observed.waits)
    assert observed.fallbacks == []
    assert groups.in_flight("t1") == 0  # nothing kept once the key is drained


async def test_a_failed_group_is_applied_one_at_a_time_and_only_the_bad_item_fails() -> None:
    ledger, observed = FakeLedger(gate=asyncio.Event()), Observed()
    groups = committer(ledger, observed)
    blocker = asyncio.create_task(groups.submit("t1", "first"))
    await settle()
    tasks = [asyncio.create_task(groups.submit("t1", name)) for name in ("a", "bad", "c")]
    await settle()
    assert ledger.gate is not None
    ledger.gate.set()
    results = await asyncio.gather(blocker, *tasks, return_exceptions=True)

    assert results[:2] == ["t1:first", "t1:a"]
    assert isinstance(results[2], Refused)
    assert str(results[2]) == "bad"  # its own exception, from applying it alone
    assert results[3] == "t1:c"
    assert ledger.groups == [("t1", ["a", "bad", "c"])]
    assert ledger.alone == [("t1", "first"), ("t1", "a"), ("t1", "bad"), ("t1", "c")]  # in order
    assert observed.fallbacks == [3]


async def test_keys_are_applied_in_parallel_and_each_key_one_group_at_a_time() -> None:
    ledger = FakeLedger(gate=asyncio.Event())
    groups = committer(ledger)
    tasks = [asyncio.create_task(groups.submit(key, f"{key}-{n}")) for n in range(3) for key in ("t1", "t2")]
    await settle()
    assert ledger.in_flight == {"t1", "t2"}  # both tenants' transactions at once
    assert ledger.gate is not None
    ledger.gate.set()
    results = await asyncio.gather(*tasks)

    assert results == [f"{key}:{key}-{n}" for n in range(3) for key in ("t1", "t2")]
    assert frozenset({"t1", "t2"}) in ledger.overlapped
    assert sorted(ledger.groups) == [("t1", ["t1-0", "t1-1", "t1-2"]), ("t2", ["t2-0", "t2-1", "t2-2"])]


async def test_a_group_holds_at_most_max_messages() -> None:
    ledger, observed = FakeLedger(gate=asyncio.Event()), Observed()
    groups = committer(ledger, observed, max_messages=2)
    tasks = [asyncio.create_task(groups.submit("t1", str(n))) for n in range(5)]
    await settle()
    assert ledger.gate is not None
    ledger.gate.set()
    assert await asyncio.gather(*tasks) == [f"t1:{n}" for n in range(5)]
    assert observed.sizes == [2, 2, 1]
    assert [items for _, items in ledger.groups] == [["0", "1"], ["2", "3"]]
    assert ledger.alone == [("t1", "4")]


async def test_with_a_max_wait_a_first_arrival_waits_for_companions_but_not_past_a_full_group() -> None:
    ledger, observed = FakeLedger(), Observed()
    groups = committer(ledger, observed, max_messages=3, max_wait=0.05)
    first = asyncio.create_task(groups.submit("t1", "a"))
    await asyncio.sleep(0.005)  # within the wait: joins "a"
    second = asyncio.create_task(groups.submit("t1", "b"))
    assert list(await asyncio.gather(first, second)) == ["t1:a", "t1:b"]
    assert ledger.groups == [("t1", ["a", "b"])]
    assert 0.04 <= max(observed.waits) < 1  # "a" waited out the max wait, no more

    started = asyncio.get_running_loop().time()
    full = [asyncio.create_task(groups.submit("t1", name)) for name in ("c", "d", "e")]
    assert await asyncio.gather(*full) == ["t1:c", "t1:d", "t1:e"]
    assert asyncio.get_running_loop().time() - started < 0.04  # a full group does not wait


async def test_without_a_max_wait_a_lone_arrival_goes_at_once() -> None:
    ledger, observed = FakeLedger(), Observed()
    groups = committer(ledger, observed)
    assert await groups.submit("t1", "a") == "t1:a"
    assert observed.sizes == [1]
    assert observed.waits[0] < 0.01


async def test_an_item_whose_caller_gave_up_while_queued_is_left_out() -> None:
    ledger = FakeLedger(gate=asyncio.Event())
    groups = committer(ledger)
    first = asyncio.create_task(groups.submit("t1", "a"))
    await settle()
    given_up = asyncio.create_task(groups.submit("t1", "b"))
    kept = asyncio.create_task(groups.submit("t1", "c"))
    await settle()
    given_up.cancel()
    assert ledger.gate is not None
    ledger.gate.set()
    assert list(await asyncio.gather(first, kept)) == ["t1:a", "t1:c"]
    with pytest.raises(asyncio.CancelledError):
        await given_up
    assert ledger.alone == [("t1", "a"), ("t1", "c")]  # "b" was never applied
    assert ledger.groups == []


def test_a_group_needs_room_for_one_message() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        committer(FakeLedger(), max_messages=0)
