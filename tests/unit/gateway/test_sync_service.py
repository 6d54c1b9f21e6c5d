"""The gateway's service layer with in-memory stand-ins for the broker and Redis."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from stockzen_contracts import ApplySyncBatch, ItemResult, ItemStatus, SyncBatchApplied, SyncRequest
from stockzen_gateway.domain.request_keys import RequestKeyClaim, RequestKeyState, StoredResponse
from stockzen_gateway.ports import PublishFailed
from stockzen_gateway.services import RequestRefused, SyncPolicy, SyncService
from stockzen_platform.identity import Identity
from tests.support.ops import movement

POLICY = SyncPolicy(result_timeout_seconds=1, request_key_ttl_seconds=60)


@dataclass
class FakeBroker:
    """Publishes into a list; 'applies' everything if ``answer`` is set, else stays silent."""

    published: list[ApplySyncBatch] = field(default_factory=list)
    fail: bool = False

    async def publish(self, command: ApplySyncBatch) -> None:
        if self.fail:
            raise PublishFailed("broker away")
        self.published.append(command)


@dataclass
class FakeState:
    """Keys and replies in dicts, with the same rules as the Redis scripts."""

    answer: bool = True
    keys: dict[tuple[uuid.UUID, str], dict[str, Any]] = field(default_factory=dict)
    broker: FakeBroker | None = None
    during_wait: Callable[[], Awaitable[None]] | None = None  # runs once, while a request waits

    async def claim_request_key(
        self, tenant_id: uuid.UUID, key: str, fingerprint: str, *, in_flight_seconds: int
    ) -> RequestKeyClaim:
        held = self.keys.get((tenant_id, key))
        if held is None:
            token = uuid.uuid4().hex
            self.keys[(tenant_id, key)] = {"state": "in_flight", "fingerprint": fingerprint, "token": token}
            return RequestKeyClaim(RequestKeyState.CLAIMED, token=token)
        if held["fingerprint"] != fingerprint:
            return RequestKeyClaim(RequestKeyState.MISMATCH)
        if held["state"] == "in_flight":
            return RequestKeyClaim(RequestKeyState.IN_FLIGHT)
        return RequestKeyClaim(RequestKeyState.COMPLETED, held["response"])

    async def complete_request_key(
        self, tenant_id: uuid.UUID, key: str, token: str, response: StoredResponse, *, ttl_seconds: int
    ) -> bool:
        held = self.keys.get((tenant_id, key), {})
        if held.get("state") != "in_flight" or held.get("token") != token:
            return False
        held.update(state="completed", response=response, token=None)
        return True

    async def release_request_key(self, tenant_id: uuid.UUID, key: str, token: str) -> None:
        held = self.keys.get((tenant_id, key), {})
        if held.get("state") == "in_flight" and held.get("token") == token:
            del self.keys[(tenant_id, key)]

    def new_reply_key(self) -> str:
        return f"reply:{uuid.uuid4().hex}"

    async def wait_for_reply(self, reply_to: str, timeout_seconds: float) -> SyncBatchApplied | None:
        assert self.broker is not None
        command = next(c for c in self.broker.published if c.reply_to == reply_to)
        if self.during_wait is not None:
            hook, self.during_wait = self.during_wait, None
            await hook()
        if not self.answer:
            return None
        results = [ItemResult(operation_id=o.operation_id, status=ItemStatus.APPLIED) for o in command.operations]
        return SyncBatchApplied(request_id=command.request_id, checkpoint="42", results=results)


@pytest.fixture
def identity() -> Identity:
    return Identity(user_id="u1", tenant_id=uuid.uuid4())


def _wired(answer: bool = True) -> tuple[FakeBroker, FakeState]:
    broker = FakeBroker()
    return broker, FakeState(answer=answer, broker=broker)


async def test_only_valid_items_are_published_and_every_item_gets_a_result(identity: Identity) -> None:
    broker, state = _wired()
    good = movement(identity.tenant_id, uuid.uuid4())
    request = SyncRequest(checkpoint="3", operations=[good, movement(uuid.uuid4(), uuid.uuid4())])
    answer = await SyncService(broker, state, POLICY).push(request, identity, request_id="req-1")

    assert answer.status_code == 200
    assert [o.operation_id for o in broker.published[0].operations] == [uuid.UUID(good["operationId"])]
    assert broker.published[0].tenant_id == identity.tenant_id
    body = json.loads(answer.body)
    assert [r["status"] for r in body["results"]] == ["applied", "rejected"]
    assert body["checkpoint"] == "42"


async def test_nothing_valid_means_nothing_published(identity: Identity) -> None:
    broker, state = _wired()
    request = SyncRequest(checkpoint="3", operations=[{"bad": 1}])
    answer = await SyncService(broker, state, POLICY).push(request, identity, request_id="req-1")
    assert broker.published == []
    assert json.loads(answer.body)["checkpoint"] == "3"


async def test_late_results_answer_202_with_pending_items(identity: Identity) -> None:
    broker, state = _wired(answer=False)
    request = SyncRequest(operations=[movement(identity.tenant_id, uuid.uuid4())])
    answer = await SyncService(broker, state, POLICY).push(request, identity, request_id="req-1")
    assert answer.status_code == 202
    assert [r.status for r in answer.results] == [ItemStatus.PENDING]


async def test_a_completed_key_is_replayed_and_a_pending_one_released(identity: Identity) -> None:
    broker, state = _wired(answer=False)
    body = {"operations": [movement(identity.tenant_id, uuid.uuid4()), movement(identity.tenant_id, uuid.uuid4())]}
    request = SyncRequest.model_validate(body)

    async def call() -> Any:
        return await SyncService(broker, state, POLICY).push(request, identity, request_id="r", request_key="key-1")

    assert (await call()).status_code == 202
    assert state.keys == {}  # a pending answer must let the retry run again
    state.answer = True
    first = await call()
    assert first.status_code == 200
    assert not first.replayed
    again = await call()
    assert again.replayed
    assert again.body == first.body
    assert len(broker.published) == 2


async def test_a_publish_failure_releases_the_key(identity: Identity) -> None:
    broker, state = _wired()
    broker.fail = True
    body = {"operations": [movement(identity.tenant_id, uuid.uuid4()), movement(identity.tenant_id, uuid.uuid4())]}
    with pytest.raises(PublishFailed):
        await SyncService(broker, state, POLICY).push(
            SyncRequest.model_validate(body), identity, request_id="r", request_key="k"
        )
    assert state.keys == {}


async def test_a_key_held_by_another_body_or_request_is_refused(identity: Identity) -> None:
    broker, state = _wired()
    body = {"operations": [movement(identity.tenant_id, uuid.uuid4()), movement(identity.tenant_id, uuid.uuid4())]}
    state.keys[(identity.tenant_id, "k")] = {"state": "in_flight", "fingerprint": "someone-else"}
    with pytest.raises(RequestRefused) as refused:
        await SyncService(broker, state, POLICY).push(
            SyncRequest.model_validate(body), identity, request_id="r", request_key="k"
        )
    assert refused.value.refusal.status_code == 422
    assert broker.published == []


def _batch(identity: Identity, checkpoint: str | None = None) -> SyncRequest:
    return SyncRequest.model_validate(
        {
            "checkpoint": checkpoint,
            "operations": [movement(identity.tenant_id, uuid.uuid4()), movement(identity.tenant_id, uuid.uuid4())],
        }
    )


async def _keyed(request: SyncRequest, identity: Identity, state: FakeState, key: str = "k") -> Any:
    assert state.broker is not None
    return await SyncService(state.broker, state, POLICY).push(request, identity, request_id="r", request_key=key)


async def test_a_resend_after_a_pull_carries_a_new_checkpoint_and_is_still_the_same_request(
    identity: Identity,
) -> None:
    _, state = _wired()
    first = _batch(identity, checkpoint="3")
    original = await _keyed(first, identity, state)
    resent = await _keyed(SyncRequest(checkpoint="9", operations=first.operations), identity, state)
    assert resent.replayed
    assert resent.body == original.body


async def test_after_the_store_forgets_a_claim_an_identical_retry_is_never_refused(identity: Identity) -> None:
    _, state = _wired()
    request = _batch(identity)
    retries: list[Any] = []

    async def restart_then_retry() -> None:
        state.keys.clear()  # Redis restarted without the claim
        retries.append(await _keyed(request, identity, state))

    state.during_wait = restart_then_retry
    first = await _keyed(request, identity, state)
    assert first.status_code == retries[0].status_code == 200
    later = await _keyed(request, identity, state)  # before the fix: 422, the key completed without its fingerprint
    assert later.status_code == 200
    assert later.replayed
    assert later.body == retries[0].body


async def test_a_claim_lost_to_another_body_never_hands_that_body_this_answer(identity: Identity) -> None:
    broker, state = _wired()
    mine, theirs = _batch(identity), _batch(identity)
    answers: list[Any] = []

    async def restart_then_other_body() -> None:
        state.keys.clear()
        answers.append(await _keyed(theirs, identity, state))

    state.during_wait = restart_then_other_body
    await _keyed(mine, identity, state)
    replay = await _keyed(theirs, identity, state)
    assert replay.replayed
    assert replay.body == answers[0].body
    ids = [r["operationId"] for r in json.loads(replay.body)["results"]]
    assert ids == [o["operationId"] for o in theirs.operations if isinstance(o, dict)]
    with pytest.raises(RequestRefused):
        await _keyed(mine, identity, state)  # the key now belongs to the other body
    assert len(broker.published) == 2
