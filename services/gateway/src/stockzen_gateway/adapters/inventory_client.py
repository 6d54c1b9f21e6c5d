"""Forwarding client reads to the inventory service over HTTP, vouching for the caller.

Each request carries a fresh internal token (HS256 with ``INTERNAL_TOKEN_SECRET``, 60 s, audience
``stockzen-inventory``) naming the verified user and tenant, so inventory never takes a tenant
from a caller it cannot verify (layer 4 of :mod:`stockzen_platform.tenancy`), and how long the
gateway will wait for the answer, so inventory stops a read nobody will wait for.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import httpx

from stockzen_gateway.ports import InventoryAnswer, InventoryUnavailable
from stockzen_platform.identity import INTERNAL_TOKEN_TTL_SECONDS, Identity, TokenIssuer
from stockzen_platform.read_api import CALLER_BUDGET_HEADER

log = logging.getLogger(__name__)

_CONNECT_TIMEOUT_SECONDS = 2.0
_FORWARDED_HEADERS = ("content-type", "retry-after")


class InventoryClient:
    """An HTTP client for the inventory read API (one connection pool per gateway process)."""

    def __init__(
        self,
        base_url: str,
        *,
        token_issuer: TokenIssuer,
        timeout_seconds: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._issuer = token_issuer
        self._budget_ms = str(round(timeout_seconds * 1000))
        self._http = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(timeout_seconds, connect=min(timeout_seconds, _CONNECT_TIMEOUT_SECONDS)),
            transport=transport,
            follow_redirects=False,
        )

    async def get(
        self, path: str, identity: Identity, *, params: Mapping[str, str | int | bool], request_id: str | None = None
    ) -> InventoryAnswer:
        """GET ``path`` for ``identity``; raise :class:`InventoryUnavailable` when there is no usable answer."""
        headers = {
            "Authorization": f"Bearer {self._issuer.issue(identity, ttl_seconds=INTERNAL_TOKEN_TTL_SECONDS)}",
            CALLER_BUDGET_HEADER: self._budget_ms,
        }
        if request_id is not None:
            headers["X-Request-Id"] = request_id  # one id across both services' logs
        try:
            response = await self._http.get(path, params=params, headers=headers)
        except httpx.TransportError as exc:  # refused, reset, timed out
            log.warning("inventory unreachable", extra={"error": type(exc).__name__, "path": path})
            raise InventoryUnavailable(type(exc).__name__) from exc
        if response.status_code == 401:
            # Our own credentials were refused: a secret mismatch between the services. Passing the
            # 401 on would tell the client that *its* token is bad.
            log.error("inventory refused the gateway's internal token; check INTERNAL_TOKEN_SECRET on both")
            raise InventoryUnavailable("inventory refused the gateway's credentials")
        kept = {name: response.headers[name] for name in _FORWARDED_HEADERS if name in response.headers}
        return InventoryAnswer(response.status_code, response.content, kept)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()
