"""The local view's rules, and the status ``stockzen status`` reads from the store alone."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from stockzen_client import LocalProduct, Profile, ProfileError, SyncState
from stockzen_client.adapters.store import LocalStore
from stockzen_client.domain.status import settled_state
from stockzen_client.domain.view import rebase
from stockzen_client.local_status import stored_status
from stockzen_contracts import Operation, parse_operation
from tests.unit.client.conftest import device_token

TENANT = uuid.uuid4()


def op(entity_id: uuid.UUID, kind: str, payload: dict[str, Any], entity: str = "product") -> Operation:
    operation_id = str(uuid.uuid4())
    return parse_operation(
        {
            "operationId": operation_id,
            "idempotencyKey": operation_id,
            "entityType": entity,
            "entityId": str(entity_id),
            "operationType": kind,
            "tenantId": str(TENANT),
            "modifiedAt": datetime.now(UTC).isoformat(),
            "payload": payload,
        }
    )


def queued(entity_id: uuid.UUID, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    """A product operation as the outbox keeps it: its wire JSON."""
    return op(entity_id, kind, payload).to_wire()


def test_queued_edits_are_replayed_over_the_servers_product_in_order() -> None:
    product = uuid.uuid4()
    server = LocalProduct(id=product, name="Server name", sku="S-1", price_cents=100)
    shown = rebase(
        server, [queued(product, "update", {"priceCents": 250}), queued(product, "update", {"priceCents": 300})]
    )
    assert shown is not None
    assert (shown.name, shown.sku, shown.price_cents, shown.queued_changes) == ("Server name", "S-1", 300, 2)


def test_a_queued_create_makes_the_product_and_a_tombstone_stays_a_tombstone() -> None:
    product = uuid.uuid4()
    created = rebase(None, [queued(product, "create", {"name": "New"})])
    assert created is not None
    assert (created.name, created.deleted) == ("New", False)
    tombstone = LocalProduct(id=product, name="Gone", deleted=True)
    still_gone = rebase(tombstone, [queued(product, "update", {"name": "Edited offline"})])
    assert still_gone is not None
    assert (still_gone.name, still_gone.deleted) == ("Gone", True)
    deleted = rebase(created, [queued(product, "delete", {})])
    assert deleted is not None
    assert deleted.deleted


def test_an_edit_of_a_product_this_device_never_saw_shows_nothing() -> None:
    assert rebase(None, [queued(uuid.uuid4(), "update", {"name": "x"})]) is None


def test_the_state_a_sync_settles_in() -> None:
    assert settled_state(queued=0, stuck=True) is SyncState.UP_TO_DATE
    assert settled_state(queued=2, stuck=False) is SyncState.SYNCING
    assert settled_state(queued=2, stuck=True) is SyncState.ERROR


def test_a_stale_up_to_date_is_not_shown_once_changes_are_queued(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s.sqlite3", clock=lambda: 0.0)
    try:
        assert stored_status(store, engine_running=False).state is SyncState.OFFLINE  # never synced
        store.save_status(SyncState.UP_TO_DATE, None, datetime.now(UTC))
        assert stored_status(store, engine_running=False).state is SyncState.UP_TO_DATE
        store.enqueue(op(uuid.uuid4(), "create", {"name": "Mug"}))
        assert stored_status(store, engine_running=False).state is SyncState.OFFLINE
        assert stored_status(store, engine_running=True).state is SyncState.SYNCING
        assert stored_status(store, engine_running=True).queued == 1
    finally:
        store.close()


def test_a_profile_keeps_its_token_readable_by_its_owner_only(tmp_path: Path) -> None:
    directory = tmp_path / "p"
    directory.mkdir()
    (directory / "profile.json").write_text("{}")
    (directory / "profile.json").chmod(0o644)
    tenant = uuid.uuid4()
    Profile.create(directory, "http://localhost:8000/", device_token(tenant)).save()
    loaded = Profile.load(directory)
    assert (loaded.server_url, loaded.tenant_id) == ("http://localhost:8000", tenant)
    assert (directory / "profile.json").stat().st_mode & 0o777 == 0o600
    with pytest.raises(ProfileError, match="not a StockZen token"):
        Profile.create(directory, "http://localhost:8000", "not-a-token")
