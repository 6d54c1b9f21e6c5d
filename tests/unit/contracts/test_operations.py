"""The sync contract: what it accepts, how it emits it, and exactly why it refuses the rest."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from stockzen_contracts import (
    ApplySyncBatch,
    Code,
    CreateProduct,
    DeleteProduct,
    InvalidOperation,
    ItemResult,
    ItemStatus,
    RecordStockMovement,
    SyncRequest,
    SyncResponse,
    UpdateProduct,
    parse_operation,
)
from tests.support.states import product_state


def _op(**overrides: Any) -> dict[str, Any]:
    op_id = str(uuid.uuid4())
    raw: dict[str, Any] = {
        "operationId": op_id,
        "idempotencyKey": op_id,
        "entityType": "product",
        "entityId": str(uuid.uuid4()),
        "operationType": "create",
        "tenantId": str(uuid.uuid4()),
        "modifiedAt": "2026-11-24T10:00:00.250+02:00",
        "payload": {"name": "Blue mug", "sku": "MUG-1", "priceCents": 1299},
    }
    raw.update(overrides)
    return raw


def _movement(**payload: Any) -> dict[str, Any]:
    body = {"productId": str(uuid.uuid4()), "kind": "entry", "quantity": 3, **payload}
    return _op(entityType="stockMovement", payload=body)


def _refusal(raw: object) -> InvalidOperation:
    with pytest.raises(InvalidOperation) as caught:
        parse_operation(raw)
    return caught.value


def test_a_product_create_round_trips_in_camel_case_with_utc_times() -> None:
    raw = _op()
    op = parse_operation(raw)
    assert isinstance(op, CreateProduct)
    assert op.payload.name == "Blue mug"
    assert op.payload.price_cents == 1299
    assert op.modified_at == datetime(2026, 11, 24, 8, 0, 0, 250000, tzinfo=UTC)
    assert op.modified_at.utcoffset() == timedelta(0)  # held in UTC, whatever zone it came in
    wire = op.to_wire()
    assert wire["modifiedAt"] == "2026-11-24T08:00:00.250000Z"
    assert wire["payload"]["priceCents"] == 1299
    assert parse_operation(json.loads(json.dumps(wire))) == op


@pytest.mark.parametrize(
    ("overrides", "kind"),
    [
        ({"operationType": "update", "payload": {"priceCents": 100}}, UpdateProduct),
        ({"operationType": "delete", "payload": {}}, DeleteProduct),
        ({"operationType": "delete"}, DeleteProduct),
    ],
)
def test_each_product_operation_gets_its_own_type(overrides: dict[str, Any], kind: type) -> None:
    raw = _op(**overrides)
    if "payload" not in overrides:
        raw.pop("payload")
    assert isinstance(parse_operation(raw), kind)


def test_an_update_carries_only_the_fields_it_changes() -> None:
    op = parse_operation(_op(operationType="update", payload={"barcode": None, "priceCents": 5}))
    assert isinstance(op, UpdateProduct)
    assert op.payload.changes() == {"barcode": None, "price_cents": 5}


def test_a_stock_movement_round_trips() -> None:
    raw = _movement(reason="delivery", occurredAt="2026-11-20T09:00:00Z")
    op = parse_operation(raw)
    assert isinstance(op, RecordStockMovement)
    assert op.payload.quantity == 3
    assert op.to_wire()["payload"]["occurredAt"] == "2026-11-20T09:00:00.000000Z"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            _op(payload={"name": "x", "priceCents": "12"}),
            "payload.priceCents: Input should be a valid integer",
        ),
        (
            _op(payload={"name": "x", "priceCents": 12.5}),
            "payload.priceCents: Input should be a valid integer",
        ),
        (_op(payload={"name": "x", "archived": "yes"}), "payload.archived: Input should be a valid boolean"),
        (_op(payload={"sku": "x"}), "payload.name: Field required"),
        (_op(entityId="not-a-uuid"), "entityId: Input should be a valid UUID"),
        (_op(modifiedAt="2026-11-24T10:00:00"), "modifiedAt: Input should have timezone info"),
        (_op(modifiedAt=1764000000), "modifiedAt: timestamps must be ISO-8601 strings with a timezone"),
        (_op(colour="red"), "colour: Extra inputs are not permitted"),
        (_op(payload={"name": "x", "colour": "red"}), "payload.colour: Extra inputs are not permitted"),
        (_op(payload={"name": "x" * 201}), "payload.name: String should have at most 200 characters"),
        (
            _op(payload={"name": "x", "sku": "s" * 65}),
            "payload.sku: String should have at most 64 characters",
        ),
        (
            _op(payload={"name": "x", "priceCents": -1}),
            "payload.priceCents: Input should be greater than or equal to 0",
        ),
        (_op(idempotencyKey=str(uuid.uuid4())), "idempotencyKey must equal operationId"),
        (_op(operationType="update", payload={}), "payload: an update must change at least one field"),
        (_op(operationType="update", payload={"name": None}), "payload: name cannot be null"),
        (_op(operationType="delete", payload={"name": "x"}), "payload.name: Extra inputs are not permitted"),
        (_op(entityType="warehouse"), "entityType must be 'product' or 'stockMovement'"),
        (_movement(quantity=0), "payload.quantity: Input should be greater than or equal to 1"),
        (_movement(quantity=-4), "payload.quantity: Input should be greater than or equal to 1"),
        (_movement(quantity=2.5), "payload.quantity: Input should be a valid integer"),
        (_movement(kind="transfer"), "payload.kind: Input should be 'entry' or 'exit'"),
        (_movement(reason="r" * 501), "payload.reason: String should have at most 500 characters"),
        (_op(entityType="stockMovement", operationType="update", payload={}), "the ledger is append-only"),
        (_op(entityType="stockMovement", operationType="delete", payload={}), "the ledger is append-only"),
        (["not", "an", "object"], "an operation must be a JSON object"),
    ],
)
def test_a_bad_operation_is_refused_with_a_message_naming_the_problem(raw: object, expected: str) -> None:
    assert expected in _refusal(raw).message


def test_a_refusal_names_the_operation_it_refused_when_it_can() -> None:
    raw = _op(payload={"name": ""})
    assert _refusal(raw).operation_id == uuid.UUID(raw["operationId"])
    assert _refusal(_op(operationId="nope")).operation_id is None


def test_missing_fields_are_each_named() -> None:
    raw = _op()
    del raw["tenantId"], raw["modifiedAt"]
    message = _refusal(raw).message
    assert "tenantId: Field required" in message
    assert "modifiedAt: Field required" in message


def test_the_envelope_keeps_items_raw_so_each_is_judged_alone() -> None:
    request = SyncRequest.model_validate({"checkpoint": None, "operations": [_op(), {"junk": True}, 7]})
    assert len(request.operations) == 3
    with pytest.raises(ValidationError, match="operations"):
        SyncRequest.model_validate({"operations": []})
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        SyncRequest.model_validate({"operations": [_op()], "cursor": "x"})


def test_results_omit_what_they_do_not_have_but_keep_nulls_inside_server_state() -> None:
    op_id = uuid.uuid4()
    state = product_state(name="Blue mug", modified_at=datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=-5))))
    conflict = ItemResult(
        operation_id=op_id, status=ItemStatus.CONFLICT, code=Code.CONFLICT_RESOLVED, server_state=state
    )
    wire = conflict.to_wire()
    assert set(wire) == {"operationId", "status", "code", "serverState"}
    assert wire["serverState"]["sku"] is None
    assert wire["serverState"]["modifiedAt"] == "2026-01-01T05:00:00.000000Z"
    assert ItemResult.model_validate(wire) == conflict
    applied = ItemResult(operation_id=op_id, status=ItemStatus.APPLIED).to_wire()
    assert applied == {"operationId": str(op_id), "status": "applied"}


def test_a_response_round_trips() -> None:
    response = SyncResponse(
        checkpoint="41",
        server_time=datetime(2026, 11, 24, tzinfo=UTC),
        results=[ItemResult.pending(uuid.uuid4())],
    )
    assert SyncResponse.model_validate_json(response.model_dump_json()) == response


def test_an_update_keeps_absent_fields_absent_on_the_wire() -> None:
    op = parse_operation(_op(operationType="update", payload={"barcode": None}))
    assert op.to_wire()["payload"] == {"barcode": None}
    assert parse_operation(op.to_wire()) == op


def test_the_queue_message_holds_validated_operations() -> None:
    raw = _op()
    tenant = raw["tenantId"]
    update = _op(tenantId=tenant, operationType="update", payload={"sku": None, "priceCents": 3})
    delete = _op(tenantId=tenant, operationType="delete", payload={})
    message = ApplySyncBatch(
        request_id="req-1",
        tenant_id=uuid.UUID(tenant),
        user_id="user-1",
        received_at=datetime.now(UTC),
        reply_to="reply:req-1",
        operations=[
            parse_operation(raw),
            parse_operation(update),
            parse_operation(delete),
            parse_operation(_movement()),
        ],
    )
    again = ApplySyncBatch.model_validate_json(message.model_dump_json())
    assert again == message
    assert [type(o) for o in again.operations] == [CreateProduct, UpdateProduct, DeleteProduct, RecordStockMovement]
    bad = json.loads(message.model_dump_json())
    bad["operations"][0]["payload"]["priceCents"] = "free"
    with pytest.raises(ValidationError, match="priceCents"):
        ApplySyncBatch.model_validate(bad)
