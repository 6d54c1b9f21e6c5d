"""The live-stream rule: caps per user, per tenant and per process, and a life bounded by the token."""

from __future__ import annotations

import uuid

import pytest

from stockzen_contracts import Code
from stockzen_gateway.domain.live_streams import (
    LiveStreamSlots,
    StreamLimits,
    StreamRefused,
    StreamSlot,
    stream_lifetime,
)


def _refusal(slots: LiveStreamSlots, tenant: uuid.UUID, user: str) -> tuple[str, int, Code]:
    with pytest.raises(StreamRefused) as refused:
        slots.take(tenant, user)
    refusal = refused.value.refusal
    assert refusal.headers["Retry-After"].isdigit()
    return refusal.scope, refusal.status_code, refusal.code


def test_a_user_gets_its_share_then_429() -> None:
    slots, tenant = LiveStreamSlots(StreamLimits(per_user=2, per_tenant=10, per_process=10)), uuid.uuid4()
    slots.take(tenant, "a")
    slots.take(tenant, "a")
    assert _refusal(slots, tenant, "a") == ("user", 429, Code.RATE_LIMITED)
    slots.take(tenant, "b")  # another user of the tenant has a share of its own
    slots.take(uuid.uuid4(), "a")  # and so has the same user id in another tenant
    assert slots.open == 4


def test_a_tenant_gets_its_share_whatever_its_number_of_users() -> None:
    slots, tenant = LiveStreamSlots(StreamLimits(per_user=5, per_tenant=3, per_process=10)), uuid.uuid4()
    for user in ("a", "b", "c"):
        slots.take(tenant, user)
    assert _refusal(slots, tenant, "d") == ("tenant", 429, Code.RATE_LIMITED)
    slots.take(uuid.uuid4(), "d")


def test_a_full_process_answers_503_for_another_process_to_take_it() -> None:
    slots = LiveStreamSlots(StreamLimits(per_user=5, per_tenant=5, per_process=2))
    slots.take(uuid.uuid4(), "a")
    slots.take(uuid.uuid4(), "b")
    assert _refusal(slots, uuid.uuid4(), "c") == ("process", 503, Code.UNAVAILABLE)


def test_a_released_slot_is_given_back_once_and_leaves_no_count_behind() -> None:
    slots, tenant = LiveStreamSlots(StreamLimits(per_user=1, per_tenant=1, per_process=1)), uuid.uuid4()
    slot: StreamSlot = slots.take(tenant, "a")
    slot.release()
    slot.release()  # a second release must not free a place another stream holds
    assert slots.open == 0
    again = slots.take(tenant, "a")
    assert _refusal(slots, tenant, "a")[0] == "user"
    again.release()
    assert slots.open == 0
    assert not slots._per_user  # nothing grows with every caller seen
    assert not slots._per_tenant


def test_a_stream_lives_until_its_token_expires_and_never_past_the_maximum() -> None:
    assert stream_lifetime(1_000.0, now=990.0, max_seconds=600) == 10.0
    assert stream_lifetime(10_000.0, now=990.0, max_seconds=600) == 600
    assert stream_lifetime(None, now=990.0, max_seconds=600) == 600
    assert stream_lifetime(985.0, now=990.0, max_seconds=600) <= 0  # expired, if within the verifier's leeway
