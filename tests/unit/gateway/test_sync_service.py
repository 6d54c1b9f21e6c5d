"""The gateway's service layer with in-memory stand-ins for the broker and Redis."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest

from stockzen_contracts import ApplySyncBatch, ItemResult, ItemStatus, SyncBatchApplied, SyncRequest
from stockzen_gateway.domain.idempotency import KeyClaim, KeyState, StoredResponse
from stockzen_gateway.ports import PublishFailed
from stockzen_gateway.services import RequestRefused, SyncPolicy, sync, sync_idempotently
from stockzen_platform.identity import Identity
from tests.support.ops import movement

POLICY = SyncPolicy(result_timeout_seconds=1, idempotency_ttl_seconds=60)


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

    async def claim_key(self, tenant_id: uuid.UUID, key: str, fingerprint: str, *, in_flight_seconds: int) -> KeyClaim:
        held = self.keys.get((tenant_id, key))
        if held is None:
            self.keys[(tenant_id, key)] = {"state": "in_flight", "fingerprint": fingerprint}
            return KeyClaim(KeyState.CLAIMED)
        if held["fingerprint"] != fingerprint:
            return KeyClaim(KeyState.MISMATCH)
        if held["state"] == "in_flight":
            return KeyClaim(KeyState.IN_FLIGHT)
        return KeyClaim(KeyState.COMPLETED, held["response"])

    async def complete_key(self, tenant_id: uuid.UUID, key: str, response: StoredResponse, *, ttl_seconds: int) -> None:
        self.keys[(tenant_id, key)].update(state="completed", response=response)

    async def release_key(self, tenant_id: uuid.UUID, key: str, fingerprint: str) -> None:
        if self.keys.get((tenant_id, key), {}).get("fingerprint") == fingerprint:
            del self.keys[(tenant_id, key)]

    def new_reply_key(self) -> str:
        return f"reply:{uuid.uuid4().hex}"

    async def wait_for_reply(self, reply_to: str, timeout_seconds: float) -> SyncBatchApplied | None:
        assert self.broker is not None
        command = self.broker.published[-1]
        assert command.reply_to == reply_to
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
    answer = await sync(request, identity, "req-1", publisher=broker, state=state, policy=POLICY)

    assert answer.status_code == 200
    assert [o.operation_id for o in broker.published[0].operations] == [uuid.UUID(good["operationId"])]
    assert broker.published[0].tenant_id == identity.tenant_id
    body = json.loads(answer.body)
    assert [r["status"] for r in body["results"]] == ["applied", "rejected"]
    assert body["checkpoint"] == "42"


async def test_nothing_valid_means_nothing_published(identity: Identity) -> None:
    broker, state = _wired()
    request = SyncRequest(checkpoint="3", operations=[{"bad": 1}])
    answer = await sync(request, identity, "req-1", publisher=broker, state=state, policy=POLICY)
    assert broker.published == []
    assert json.loads(answer.body)["checkpoint"] == "3"


async def test_late_results_answer_202_with_pending_items(identity: Identity) -> None:
    broker, state = _wired(answer=False)
    request = SyncRequest(operations=[movement(identity.tenant_id, uuid.uuid4())])
    answer = await sync(request, identity, "req-1", publisher=broker, state=state, policy=POLICY)
    assert answer.status_code == 202
    assert [r.status for r in answer.results] == [ItemStatus.PENDING]


async def test_a_completed_key_is_replayed_and_a_pending_one_released(identity: Identity) -> None:
    broker, state = _wired(answer=False)
    body = {"operations": [movement(identity.tenant_id, uuid.uuid4()), movement(identity.tenant_id, uuid.uuid4())]}
    request = SyncRequest.model_validate(body)

    async def call() -> Any:
        return await sync_idempotently(
            body, request, "key-1", identity, "r", publisher=broker, state=state, policy=POLICY
        )

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
        await sync_idempotently(
            body, SyncRequest.model_validate(body), "k", identity, "r", publisher=broker, state=state, policy=POLICY
        )
    assert state.keys == {}


async def test_a_key_held_by_another_body_or_request_is_refused(identity: Identity) -> None:
    broker, state = _wired()
    body = {"operations": [movement(identity.tenant_id, uuid.uuid4()), movement(identity.tenant_id, uuid.uuid4())]}
    state.keys[(identity.tenant_id, "k")] = {"state": "in_flight", "fingerprint": "someone-else"}
    with pytest.raises(RequestRefused) as refused:
        await sync_idempotently(
            body, SyncRequest.model_validate(body), "k", identity, "r", publisher=broker, state=state, policy=POLICY
        )
    assert refused.value.refusal.status_code == 422
    assert broker.published == []
