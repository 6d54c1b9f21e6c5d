"""FastAPI dependencies: the reader, and the caller the gateway vouches for."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Depends, Request

from stockzen_contracts import Code
from stockzen_inventory.domain.time_limits import caller_deadline
from stockzen_inventory.ports import InventoryReader
from stockzen_platform.http import ApiError
from stockzen_platform.identity import Identity, InvalidToken, TokenVerifier
from stockzen_platform.read_api import CALLER_BUDGET_HEADER

_BEARER = {"WWW-Authenticate": "Bearer"}


def _reader(request: Request) -> InventoryReader:
    """The reader for this request: its reads stop when the caller says it stops waiting."""
    reader: InventoryReader = request.app.state.reader
    deadline = caller_deadline(request.headers.get(CALLER_BUDGET_HEADER), time.monotonic())
    return reader if deadline is None else reader.until(deadline)


Reader = Annotated[InventoryReader, Depends(_reader)]


async def require_caller(request: Request) -> Identity:
    """The user the gateway forwarded this request for, from its internal token.

    Only the gateway holds ``INTERNAL_TOKEN_SECRET``: a user's own token, or none, is refused, so
    nobody reaches a tenant's rows by calling this service directly (layer 4 of
    :mod:`stockzen_platform.tenancy`).
    """
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, Code.UNAUTHORIZED, "an internal bearer token from the gateway is required", _BEARER)
    verifier: TokenVerifier = request.app.state.verifier
    try:
        identity = verifier.verify(token.strip())
    except InvalidToken:
        raise ApiError(401, Code.UNAUTHORIZED, "the internal token is invalid or expired", _BEARER) from None
    request.state.identity = identity  # the request log names the tenant and user
    return identity


Caller = Annotated[Identity, Depends(require_caller)]
