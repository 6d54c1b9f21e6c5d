"""Client read routes: authenticated and rate-limited here, answered by the inventory service.

The routes are declared once, in :mod:`stockzen_platform.read_api`, for both services: the gateway
checks the caller and the parameters' shape, forwards them with an internal token naming the caller,
and passes the answer on as it is.

No ``from __future__ import annotations`` here: each forwarding endpoint's query type is the route's
own, chosen at runtime, and FastAPI reads it from the live annotation.
"""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from stockzen_contracts import Code
from stockzen_gateway.ports import InventoryUnavailable
from stockzen_platform.disconnects import CLIENT_CLOSED_REQUEST, ClientDisconnected, unless_disconnected
from stockzen_platform.http import ApiError, request_id_of
from stockzen_platform.read_api import READ_ROUTES, ReadRoute, register_all

from .dependencies import CurrentIdentity, Runtime, rate_limit

router = APIRouter(dependencies=[Depends(rate_limit(lambda limits: limits.read))])


def _forwarder(route: ReadRoute) -> Callable[..., Awaitable[Response]]:
    """An endpoint asking inventory for ``route`` with the parameters given, answering with what it says."""

    async def forward(
        request: Request,
        identity: CurrentIdentity,
        runtime: Runtime,
        query: Annotated[Any, Depends(route.query)],
    ) -> Response:
        path, params = route.target(query)
        call = runtime.inventory.get(path, identity, params=params, request_id=request_id_of(request))
        try:
            # A client that leaves ends the call, and so the read in inventory (which sees the disconnect).
            answer = await unless_disconnected(request.receive, call)
        except ClientDisconnected:
            return Response(status_code=CLIENT_CLOSED_REQUEST)
        except InventoryUnavailable:
            raise ApiError(
                503, Code.UNAVAILABLE, "the inventory service is unavailable; retry later", {"Retry-After": "5"}
            ) from None
        return Response(answer.body, status_code=answer.status_code, headers=answer.headers)

    return forward


register_all(router, {route.name: _forwarder(route) for route in READ_ROUTES}, also_errors=(429,))
