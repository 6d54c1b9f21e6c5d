"""The composition root of the inventory service: settings in, a ready FastAPI app out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from stockzen_platform.postgres import assert_role_is_restricted, create_pool

from .config import InventorySettings
from .entrypoints.http import router


def build_app(settings: InventorySettings) -> FastAPI:
    """Wire the app; the database pool opens when the app starts, never at import."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await create_pool(settings.database_url, max_size=settings.database_pool_size)
        try:
            await assert_role_is_restricted(pool)
            app.state.pool = pool
            yield
        finally:
            await pool.close()

    app = FastAPI(title="StockZen inventory", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.include_router(router)
    return app
