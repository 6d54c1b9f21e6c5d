"""The edges of the running services, tried from outside: live streams capped per user, tenant and
process and ended with their token, half-sent requests dropped, answers neither cached nor sniffed,
``/docs`` without a CDN, ``/metrics`` off the public port, and nothing listening beyond loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import jwt
import pytest

from tests.support.stack import Stack, gateway_client, user_token
from tests.support.tokens import expect_error

STREAM = "/api/sync/stream"
_REFERENCE = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")


def _same_origin(reference: str) -> bool:
    """Whether a page's ``src``/``href`` names a path of its own origin (no scheme, no host, not ``//host``)."""
    parts = urlsplit(reference)
    return not parts.scheme and not parts.netloc and reference.startswith("/")


@contextlib.asynccontextmanager
async def _streams() -> AsyncIterator[contextlib.AsyncExitStack]:
    async with contextlib.AsyncExitStack() as streams:
        yield streams


async def _open(streams: contextlib.AsyncExitStack, client: httpx.AsyncClient) -> httpx.Response:
    """A stream of ``client``'s, kept open until ``streams`` closes; its body read when refused."""
    response = await streams.enter_async_context(client.stream("GET", STREAM))
    if response.status_code != 200:
        await response.aread()
    return response


async def _refused_until_freed(client: httpx.AsyncClient, seconds: float = 10.0) -> httpx.Response:
    """Open a stream of ``client``'s once the gateway has noticed a closed one (that takes a moment)."""
    deadline = time.monotonic() + seconds
    while True:
        async with client.stream("GET", STREAM) as response:
            if response.status_code == 200 or time.monotonic() > deadline:
                return response
        await asyncio.sleep(0.2)


async def test_one_token_gets_a_bounded_number_of_live_streams_and_so_does_its_tenant(
    own_stack: Stack, tenant_id: uuid.UUID
) -> None:
    await asyncio.to_thread(own_stack.start_gateway, STREAM_MAX_PER_USER="3", STREAM_MAX_PER_TENANT="5")
    async with (
        gateway_client(own_stack, tenant_id, "alice") as alice,
        gateway_client(own_stack, tenant_id, "bob") as bob,
        gateway_client(own_stack, uuid.uuid4(), "carol") as other_tenant,
        _streams() as streams,
    ):
        alices = [await _open(streams, alice) for _ in range(3)]
        assert [response.status_code for response in alices] == [200, 200, 200]
        refused = await _open(streams, alice)  # one token, its (N+1)th stream
        expect_error(refused, 429, "RATE_LIMITED")
        assert int(refused.headers["retry-after"]) > 0
        assert [(await _open(streams, bob)).status_code for _ in range(2)] == [200, 200]
        expect_error(await _open(streams, bob), 429, "RATE_LIMITED")  # the tenant's 6th, from a user with room
        assert (await _open(streams, other_tenant)).status_code == 200  # another tenant is not held back
        await alices[0].aclose()
        assert (await _refused_until_freed(alice)).status_code == 200  # a closed stream gives its place back


async def test_a_gateway_process_holds_no_more_live_streams_than_its_cap(own_stack: Stack) -> None:
    await asyncio.to_thread(own_stack.start_gateway, STREAM_MAX_PER_PROCESS="4")
    async with contextlib.AsyncExitStack() as clients, _streams() as streams:
        callers = [await clients.enter_async_context(gateway_client(own_stack, uuid.uuid4())) for _ in range(5)]
        assert [(await _open(streams, caller)).status_code for caller in callers[:4]] == [200] * 4
        refused = await _open(streams, callers[4])
        expect_error(refused, 503, "UNAVAILABLE")
        assert int(refused.headers["retry-after"]) > 0


async def test_a_live_stream_ends_when_its_token_expires(stack: Stack, tenant_id: uuid.UUID) -> None:
    token = user_token(tenant_id, "short-lived", ttl_seconds=3)
    expires_at = jwt.decode(token, options={"verify_signature": False})["exp"]
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=stack.gateway_url, headers=headers, timeout=30) as client:
        async with client.stream("GET", STREAM) as response:
            assert response.status_code == 200
            try:
                async with asyncio.timeout(15):
                    received = [chunk async for chunk in response.aiter_text()]  # until the gateway ends it
            except TimeoutError:
                raise AssertionError("the stream was still open 15 s after it began, its token 3 s old") from None
        ended_at = time.time()
        assert "event: ready" in received[0]
        # The token's exp is in whole seconds; the stream ends at it, not at the verifier's leeway.
        assert ended_at < expires_at + 3, f"the stream outlived its token by {ended_at - expires_at:.1f}s"
        # Within the verifier's 5 s leeway a request still passes, but a new stream is not opened.
        await asyncio.sleep(max(0.0, expires_at + 1 - time.time()))
        expect_error(await client.get(STREAM), 401, "UNAUTHORIZED")


async def _held_open(port: int, count: int, seconds: float) -> list[bool]:
    """Open ``count`` connections that send a request line and one header, then nothing; whether
    each is still open after ``seconds``."""

    async def one() -> bool:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: stockzen\r\n")
        try:
            async with asyncio.timeout(seconds):
                await reader.read()  # EOF (or a reset) when the server drops it
            return False
        except ConnectionError:
            return False
        except TimeoutError:
            return True
        finally:
            writer.close()

    return await asyncio.gather(*(one() for _ in range(count)))


@pytest.mark.slow
async def test_half_sent_requests_are_dropped_within_seconds_and_a_slow_steady_one_is_not(
    own_stack: Stack, tenant_id: uuid.UUID
) -> None:
    deadlines = {"HTTP_HEADER_TIMEOUT_SECONDS": "2", "HTTP_BODY_TIMEOUT_SECONDS": "2"}
    await asyncio.to_thread(own_stack.start_inventory, **deadlines)
    await asyncio.to_thread(own_stack.start_gateway, **deadlines)
    for name, port in (("gateway", own_stack.gateway_port), ("inventory", own_stack.inventory_port)):
        started = time.monotonic()
        still_open = await _held_open(port, 100, seconds=8)
        assert not any(still_open), f"{name}: {sum(still_open)} of 100 half-sent requests still open after 8 s"
        elapsed = time.monotonic() - started
        assert elapsed < 5, f"{name}: the last half-sent request was dropped after {elapsed:.1f} s (deadline 2 s)"
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get("/healthz")).status_code == 200  # and the service still serves
    # Headers over 1.5 s and a body over 5 s, each piece within the 2 s deadline: answered, not cut.
    body = b'{"operations": []}' + b" " * 80
    reader, writer = await asyncio.open_connection("127.0.0.1", own_stack.gateway_port)
    head = (
        f"POST /api/sync HTTP/1.1\r\nHost: stockzen\r\nAuthorization: Bearer {user_token(tenant_id)}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    for piece in (head[:20], head[20:60], head[60:]):
        writer.write(piece)
        await asyncio.sleep(0.5)
    for start in range(0, len(body), len(body) // 5 + 1):
        writer.write(body[start : start + len(body) // 5 + 1])
        await asyncio.sleep(1.0)
    status_line = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    assert status_line.startswith(b"HTTP/1.1 "), status_line
    assert int(status_line.split()[1]) < 500, status_line


async def test_api_answers_are_neither_stored_nor_sniffed(stack: Stack, gateway: httpx.AsyncClient) -> None:
    async with httpx.AsyncClient(base_url=stack.gateway_url) as anonymous:
        refused = await anonymous.get("/api/products")
    answers = {
        "read": await gateway.get("/api/products"),
        "refused": refused,
        "health": await gateway.get("/healthz"),
        "unknown route": await gateway.get("/api/nowhere"),
        "openapi": await gateway.get("/openapi.json"),
    }
    async with gateway.stream("GET", STREAM) as stream:
        answers["stream"] = stream
    for name, response in answers.items():
        assert response.headers["cache-control"].startswith("no-store"), name
        assert response.headers["x-content-type-options"] == "nosniff", name
    app_page = await gateway.get("/app/")
    assert app_page.status_code == 200
    assert app_page.headers["x-content-type-options"] == "nosniff"  # the app's files may be cached
    assert app_page.headers["cache-control"] == "no-cache"


async def test_docs_load_nothing_from_another_origin(stack: Stack) -> None:
    for base_url in (stack.gateway_url, stack.inventory_url):
        async with httpx.AsyncClient(base_url=base_url) as client:
            page = await client.get("/docs")
            assert page.status_code == 200, base_url
            references = _REFERENCE.findall(page.text)
            assert references, page.text
            for reference in references:
                assert _same_origin(reference), (base_url, reference)
                assert (await client.get(reference)).status_code == 200, (base_url, reference)
            assert "cdn" not in page.text.lower()
            assert "script-src 'self';" in page.headers["content-security-policy"]
            assert (await client.get("/redoc")).status_code == 404  # FastAPI's page, also from a CDN, is gone


async def test_metrics_are_not_on_the_public_port(stack: Stack) -> None:
    async with httpx.AsyncClient() as client:
        expect_error(await client.get(f"{stack.gateway_url}/metrics"), 404, "NOT_FOUND")
        scraped = await client.get(stack.gateway_metrics_url)
    assert scraped.status_code == 200
    assert "stockzen_gateway_http_requests_total" in scraped.text


def _listening_addresses(port: int) -> set[str]:
    """The local addresses TCP sockets listen on at ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, hex_port = local.split(":")
                if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                    raw = bytes.fromhex(address)
                    # The kernel prints each 32-bit word in host (little-endian) order.
                    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                    found.add(socket.inet_ntop(family, words))
    return found


async def test_services_listen_on_loopback_unless_told_otherwise(stack: Stack) -> None:
    # The test stack sets ports only, never a host: these are the defaults.
    ports = {
        "gateway": stack.gateway_port,
        "gateway metrics": stack.gateway_metrics_port,
        "inventory": stack.inventory_port,
        "worker metrics": stack.worker_metrics_port,
    }
    for name, port in ports.items():
        addresses = _listening_addresses(port)
        assert addresses, f"nothing listens on the {name} port {port}"
        assert addresses <= {"127.0.0.1", "::1"}, f"{name} listens on {addresses}"
