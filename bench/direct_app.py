"""The shortest honest path for one operation: a FastAPI app writing it straight to Postgres.

The bench times one-operation sync requests through the gateway against this: the same request
body, read with the same contract models, written in one tenant transaction (the tenant's row
taken, the movement inserted with its checkpoint, its stock level kept by the ledger's trigger).
No queue, no worker, no Redis, no token check. Run by the bench as its own uvicorn process:

    BENCH_DATABASE_URL=postgresql://... python -m uvicorn bench.direct_app:app --port 8099
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI, HTTPException

from stockzen_contracts import RecordStockMovement, SyncRequest, parse_operation
from stockzen_platform.postgres import create_pool, tenant_transaction

_INSERT = """
    INSERT INTO stock_movements
        (tenant_id, id, operation_id, product_id, kind, quantity, reason, occurred_at, checkpoint)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, next_checkpoint())
    ON CONFLICT DO NOTHING
"""


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.pool = await create_pool(os.environ["BENCH_DATABASE_URL"], max_size=4)
    try:
        yield
    finally:
        await app.state.pool.close()


app = FastAPI(lifespan=_lifespan)


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    """Up."""
    return {"status": "ok"}


@app.post("/direct")
async def direct(request: SyncRequest) -> dict[str, str]:
    """Write the request's single stock movement and say so."""
    operation = parse_operation(request.operations[0])
    if not isinstance(operation, RecordStockMovement):
        raise HTTPException(422, "the direct path takes one stock movement")
    pool: asyncpg.Pool = app.state.pool
    movement = operation.payload
    async with tenant_transaction(pool, operation.tenant_id) as connection:
        await connection.execute(
            "INSERT INTO tenants (tenant_id) VALUES ($1) "
            "ON CONFLICT (tenant_id) DO UPDATE SET last_checkpoint = tenants.last_checkpoint",
            operation.tenant_id,
        )
        await connection.execute(
            _INSERT,
            operation.tenant_id,
            operation.entity_id,
            operation.operation_id,
            movement.product_id,
            movement.kind.value,
            movement.quantity,
            movement.reason,
            movement.occurred_at or operation.modified_at,
        )
    return {"operationId": str(operation.operation_id), "status": "applied"}
