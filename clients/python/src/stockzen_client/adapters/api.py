"""The gateway, as the sync engine needs it: push a batch, pull a snapshot page or a feed page, listen
to the live stream, probe the connection.

Every failure becomes one of a few exceptions the engine can act on; the transport is injected
(``httpx.MockTransport`` or an in-memory server in tests, the network otherwise).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Generator, Sequence
from typing import Any, TypeVar
from uuid import UUID

import httpx
from pydantic import ValidationError

from stockzen_client.adapters.sse import ServerSentEvent, server_sent_events
from stockzen_client.ports import (
    ApiFailure,
    PushAnswer,
    RateLimited,
    Refused,
    ResetRequired,
    ServerFailing,
    Unauthorized,
    Unreachable,
)
from stockzen_contracts import (
    CHANGES_PATH,
    FEED_PAGE_MAX,
    HEALTH_PATH,
    MOVEMENTS_PATH,
    SNAPSHOT_PAGE_MAX,
    SNAPSHOT_PATH,
    STREAM_PATH,
    SYNC_PATH,
    ChangeFeedPage,
    Code,
    MovementPage,
    SnapshotPage,
    SyncResponse,
)

__all__ = [
    "ApiFailure",
    "BearerToken",
    "GatewayApi",
    "PushAnswer",
    "RateLimited",
    "Refused",
    "ResetRequired",
    "ServerFailing",
    "TokenProvider",
    "Unauthorized",
    "Unreachable",
]

_Answer = TypeVar("_Answer", SyncResponse, ChangeFeedPage, SnapshotPage, MovementPage)

TokenProvider = Callable[[], str]
"""Returns the bearer token to send now; called before every request, so a new login is used at once."""


class BearerToken(httpx.Auth):
    """Signs each request with the provider's current token (never logged, never in a URL)."""

    def __init__(self, token: TokenProvider) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Set ``Authorization`` from the provider, once per request (streams included)."""
        request.headers["Authorization"] = f"Bearer {self._token()}"
        yield request


class GatewayApi:
    """An ``httpx.AsyncClient`` on the gateway, signed in with the profile's token.

    ``token`` is the token itself or a provider of the current one (asked before every request).
    """

    def __init__(
        self,
        server_url: str,
        token: str | TokenProvider,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 15.0,
        stream_silence: float = 60.0,
    ) -> None:
        # The gateway sends a heartbeat every 15 s by default: a stream silent for much longer than
        # that is a dead connection (a half-open socket never ends by itself).
        self._stream_timeout = httpx.Timeout(timeout, read=stream_silence)
        provider = token if callable(token) else _fixed(token)
        base_url = server_url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=base_url,
            auth=BearerToken(provider),
            headers={"User-Agent": "stockzen-client/0.1"},
            transport=transport,
            timeout=timeout,
            # Loading the CA bundle costs a fifth of a CLI command's run (py-spy): only a server reached
            # over TLS needs it. The client never follows redirects, so plain HTTP stays plain HTTP.
            verify=not base_url.startswith("http://"),
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def push(self, checkpoint: str | None, operations: Sequence[dict[str, Any]]) -> PushAnswer:
        """``POST /api/sync`` with these operations, as they were queued.

        No ``Idempotency-Key`` header: each operation's ``operationId`` already makes a resend safe
        (the server answers ``duplicate``), while a batch key would turn a resend of a smaller batch
        into ``422 IDEMPOTENCY_KEY_REUSED`` and, with the server's Redis away, into 503s instead of
        ``pending`` answers.
        """
        response = await self._send("POST", SYNC_PATH, json={"checkpoint": checkpoint, "operations": list(operations)})
        if response.status_code not in (200, 202):
            raise _failure(response, "the sync request")
        return PushAnswer(response.status_code, _parse(SyncResponse, response, "the sync answer"))

    async def changes(self, checkpoint: str | None, limit: int = FEED_PAGE_MAX) -> ChangeFeedPage:
        """One page of the change feed after ``checkpoint`` (from the start when None)."""
        params: dict[str, str | int] = {"limit": limit}
        if checkpoint is not None:
            params["checkpoint"] = checkpoint
        reset = "the server cannot resume from this device's checkpoint; downloading a snapshot"
        return await self._page(ChangeFeedPage, CHANGES_PATH, params, "the change feed", reset)

    async def snapshot(self, cursor: str | None, limit: int = SNAPSHOT_PAGE_MAX) -> SnapshotPage:
        """One page of a first download (``GET /api/sync/snapshot``): live products with their stock
        level as of the snapshot's checkpoint; the first page when ``cursor`` is None."""
        params: dict[str, str | int] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        reset = "the server cannot go on with this snapshot; starting it again"
        return await self._page(SnapshotPage, SNAPSHOT_PATH, params, "the snapshot", reset)

    async def _page(
        self, model: type[_Answer], path: str, params: dict[str, str | int], what: str, reset: str
    ) -> _Answer:
        """One page of a download; ``409 RESET_REQUIRED`` raises :class:`ResetRequired` (``reset`` says why)."""
        response = await self._send("GET", path, params=params)
        if response.status_code == 409 and _code(response) == Code.RESET_REQUIRED.value:
            raise ResetRequired(reset)
        if response.status_code != 200:
            raise _failure(response, what)
        return _parse(model, response, what)

    async def movements(self, product_id: UUID, limit: int) -> MovementPage | None:
        """The newest ``limit`` movements of a product from the read API (``None``: no such live product)."""
        response = await self._send("GET", MOVEMENTS_PATH.format(product_id=product_id), params={"limit": limit})
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise _failure(response, "the movement history")
        return _parse(MovementPage, response, "the movement history")

    async def live_events(self) -> AsyncGenerator[ServerSentEvent, None]:
        """``GET /api/sync/stream``: the tenant's announcements as they come (``ready`` once, then a
        ``checkpoint`` each time changes commit), until the server ends the stream.

        Each is a hint to pull the feed. Close the iterator (``contextlib.aclosing``) to close the
        connection; failures are raised as the other calls raise them (401 is :class:`Unauthorized`).
        """
        try:
            async with self._http.stream("GET", STREAM_PATH, timeout=self._stream_timeout) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise _failure(response, "the live stream")
                async for event in server_sent_events(response.aiter_lines()):
                    yield event
        except httpx.TransportError as exc:
            raise Unreachable(f"lost the live stream from {self._http.base_url} ({type(exc).__name__})") from exc
        except httpx.RequestError as exc:
            raise ServerFailing(f"the live stream could not be read ({type(exc).__name__})") from exc

    async def probe(self) -> bool:
        """Whether the server answers at all (``GET /healthz``), to notice the connection returning."""
        try:
            await self._http.get(HEALTH_PATH, timeout=3.0)
        except httpx.TransportError:
            return False
        return True

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise Unreachable(f"cannot reach the server at {self._http.base_url} ({type(exc).__name__})") from exc
        except httpx.RequestError as exc:  # an answer came, but not one httpx could read
            raise ServerFailing(f"the server's answer could not be read ({type(exc).__name__})") from exc


_CODES = frozenset(code.value for code in Code)


def _fixed(token: str) -> TokenProvider:
    return lambda: token


def _parse(model: type[_Answer], response: httpx.Response, what: str) -> _Answer:
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        raise ServerFailing(f"{what} did not follow the contract ({exc.error_count()} problems)") from exc


def _code(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("code") if isinstance(body, dict) and isinstance(body.get("code"), str) else None


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase
    message = body.get("message") if isinstance(body, dict) else None
    return message if isinstance(message, str) else response.reason_phrase


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _failure(response: httpx.Response, what: str) -> ApiFailure:
    status, code, message = response.status_code, _code(response), _message(response)
    said = f"{what} failed with {status} {code or ''}: {message}".replace("  ", " ")
    if status == 401:
        return Unauthorized("the server refused the token (401); log in again with a new one")
    if status == 429:
        return RateLimited(f"the server asks to slow down: {message}", _retry_after(response))
    if status >= 500 or status in (408, 409):
        # 408: the request timed out on its way; 409: another copy of it still runs. Both may pass.
        return ServerFailing(said, _retry_after(response))
    if code not in _CODES:
        # Not the server's refusal (a proxy's or a captive portal's page, a wrong URL): nothing it says
        # is about these changes, so they are not refused for it; they wait and are sent again.
        return ServerFailing(f"{what} got {status} from something that is not the StockZen server: {message}")
    return Refused(said, status, code)
