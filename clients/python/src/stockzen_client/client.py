"""The client library's front door: local writes that return at once, the local view, and syncing."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from uuid import UUID

from stockzen_client.adapters.store import LocalStore
from stockzen_client.domain.outbox import OutboxEntry
from stockzen_client.domain.status import SyncStatus
from stockzen_client.domain.view import LocalMovement, LocalProduct
from stockzen_client.profile import Profile, ProfileToken, private_directory

if TYPE_CHECKING:
    import asyncio

    import httpx

    from stockzen_client.adapters.api import GatewayApi
    from stockzen_client.domain.backoff import Backoff
    from stockzen_client.engine import EngineSettings, Progress, SyncEngine


class InvalidChange(ValueError):
    """A change the contract refuses (or one about a product this device does not have); nothing was queued."""


class StockzenClient:
    """One profile's store, outbox and sync engine.

    Writes go to the store and the outbox in one local transaction and return at once, online or not;
    ids are made here. Reads show the server's data with the queued changes on top.

    The connection and the sync engine are made when first used (``api``, ``engine``, ``status``,
    ``sync``, ``run``): local reads and writes never load the network stack.
    """

    def __init__(
        self,
        profile: Profile,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        settings: EngineSettings | None = None,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        private_directory(profile.directory)  # the token and the tenant's data: the owner's alone
        self.profile = profile
        self.store = LocalStore(profile.database, clock=clock)
        self.token = ProfileToken(profile)  # a new `stockzen login` for the same user is used without a restart
        self._transport = transport
        self._settings = settings
        self._backoff = backoff
        self._clock = clock
        self._api: GatewayApi | None = None
        self._engine: SyncEngine | None = None

    @property
    def api(self) -> GatewayApi:
        """The gateway, as the engine talks to it."""
        if self._api is None:
            from stockzen_client.adapters.api import GatewayApi

            self._api = GatewayApi(self.profile.server_url, self.token, transport=self._transport)
        return self._api

    @property
    def engine(self) -> SyncEngine:
        """The sync engine (its ``hub`` publishes the status)."""
        if self._engine is None:
            from stockzen_client.engine import SyncEngine

            self._engine = SyncEngine(
                self.store,
                self.api,
                lock_path=self.profile.lock_file,
                backoff=self._backoff,
                settings=self._settings,
                clock=self._clock,
                warning=self.token.problem,
            )
        return self._engine

    async def aclose(self) -> None:
        """Close the connection pool and the database."""
        if self._api is not None:
            await self._api.aclose()
        self.store.close()

    def close(self) -> None:
        """Close the database of a client that never connected (else use :meth:`aclose`)."""
        if self._api is not None:
            raise RuntimeError("this client connected: close it with `await client.aclose()`")
        self.store.close()

    # --- status and syncing --------------------------------------------------------------------

    @property
    def status(self) -> SyncStatus:
        """The sync status now (subscribe through ``client.engine.hub``)."""
        return self.engine.status

    async def sync(self, progress: Progress | None = None) -> SyncStatus:
        """Sync now (push, then pull) and return the status it ended in."""
        return await self.engine.sync(progress)

    async def run(self, stop: asyncio.Event) -> None:
        """Keep syncing by itself until ``stop`` is set."""
        await self.engine.run(stop)

    # --- local writes --------------------------------------------------------------------------

    def add_product(self, name: str, **fields: Any) -> UUID:
        """Create a product (fields: sku, barcode, unit, price_cents, low_stock_threshold); returns its id."""
        product_id = uuid.uuid4()
        self._queue("product", product_id, "create", {"name": name, **_camel(fields)})
        return product_id

    def edit_product(self, product_id: UUID, **changes: Any) -> None:
        """Change some fields of a product (``None`` clears a nullable field)."""
        self._known(product_id)
        self._queue("product", product_id, "update", _camel(changes))

    def remove_product(self, product_id: UUID) -> None:
        """Delete a product (the server keeps a tombstone)."""
        self._known(product_id)
        self._queue("product", product_id, "delete", {})

    def stock_in(self, product_id: UUID, quantity: int, reason: str | None = None) -> UUID:
        """Record an entry of ``quantity``; returns the movement's id."""
        return self._movement(product_id, "entry", quantity, reason)

    def stock_out(self, product_id: UUID, quantity: int, reason: str | None = None) -> UUID:
        """Record an exit of ``quantity``; returns the movement's id."""
        return self._movement(product_id, "exit", quantity, reason)

    def _movement(self, product_id: UUID, kind: str, quantity: int, reason: str | None) -> UUID:
        self._known(product_id)
        movement_id = uuid.uuid4()
        payload: dict[str, Any] = {"productId": str(product_id), "kind": kind, "quantity": quantity}
        if reason is not None:
            payload["reason"] = reason
        self._queue("stockMovement", movement_id, "create", payload)
        return movement_id

    def _known(self, product_id: UUID) -> None:
        if self.store.product(product_id) is None:
            raise InvalidChange(
                f"there is no product {product_id} on this device (run `stockzen sync` to fetch new ones)"
            )

    def _queue(self, entity: str, entity_id: UUID, kind: str, payload: dict[str, Any]) -> None:
        from stockzen_contracts import InvalidOperation, parse_operation

        operation_id = str(uuid.uuid4())
        raw = {
            "operationId": operation_id,
            "idempotencyKey": operation_id,
            "entityType": entity,
            "entityId": str(entity_id),
            "operationType": kind,
            "tenantId": str(self.profile.tenant_id),
            "modifiedAt": _EPOCH,  # the store stamps it as it queues it (a clock that never ties)
            "payload": payload,
        }
        try:
            operation = parse_operation(raw)
        except InvalidOperation as exc:
            raise InvalidChange(exc.message) from None
        self.store.enqueue(operation)
        if self._engine is not None:  # else nobody watches the status yet
            self._engine.refresh()

    # --- the local view ------------------------------------------------------------------------

    def products(self) -> list[LocalProduct]:
        """Every live product, by name, as this device shows it."""
        return self.store.products()

    def product(self, product_id: UUID) -> LocalProduct | None:
        """One product as this device shows it."""
        return self.store.product(product_id)

    def history(self, product_id: UUID) -> list[LocalMovement]:
        """A product's movements this device holds, newest first, unconfirmed ones included (offline)."""
        return self.store.history(product_id)

    async def recent_history(self, product_id: UUID, limit: int = 50) -> tuple[list[LocalMovement], bool]:
        """A product's newest ``limit`` movements: from the server's read API when it answers (a new
        device holds none of the history before its snapshot), with this device's own movements the
        server has not recorded yet on top; the device's own copy when it does not. Returns the
        movements and whether they came from the server."""
        from stockzen_client.adapters.api import ApiFailure

        local = self.store.history(product_id)
        try:
            page = await self.api.movements(product_id, limit)
        except ApiFailure:
            return local[:limit], False
        if page is None:  # not a live product on the server (yet): what the device holds
            return local[:limit], False
        served = [LocalMovement.of_state(m) for m in page.items]
        known = {m.id for m in served}
        oldest = served[-1].occurred_at if len(served) == limit else None
        own = [m for m in local if m.queued and m.id not in known and (oldest is None or m.occurred_at >= oldest)]
        return sorted(served + own, key=lambda m: m.occurred_at, reverse=True)[:limit], True

    # --- the outbox ----------------------------------------------------------------------------

    def outbox(self) -> list[OutboxEntry]:
        """The changes this device still holds, oldest first: ``queued`` ones and ``failed`` ones."""
        return self.store.outbox()

    def failed(self) -> list[OutboxEntry]:
        """The changes the server refused for good, oldest first, each with its code and reason. They
        are not shown (the device shows the server's state instead) and wait for the user."""
        return self.store.failed()

    def discard(self, operation_ids: list[UUID] | None = None) -> list[UUID]:
        """Let go of refused changes: these, or every one when None; returns those discarded. A queued
        change cannot be discarded: the server settles it."""
        gone = self.store.discard(operation_ids)
        if self._engine is not None:
            self._engine.refresh()
        return gone


def _camel(fields: dict[str, Any]) -> dict[str, Any]:
    parts = {name: name.split("_") for name in fields}
    return {parts[n][0] + "".join(p.title() for p in parts[n][1:]): v for n, v in fields.items()}


_EPOCH = "1970-01-01T00:00:00.000000Z"
