"""Tokens a gateway must refuse, and the shape every refusal must have."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import jwt

from tests.support.stack import JWT_SECRET


def expect_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Assert ``response`` is the error ``{code, message}`` with this status and code; return its body."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"code", "message"}, body
    assert body["code"] == code
    assert body["message"]
    return body


def claims(tenant: uuid.UUID, **overrides: Any) -> dict[str, Any]:
    """A valid token's claims, with ``overrides`` (a ``None`` removes the claim)."""
    base: dict[str, Any] = {"sub": "user-1", "tenant_id": str(tenant), "exp": int(time.time()) + 600}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def bad_tokens(tenant_id: uuid.UUID) -> dict[str, str | None]:
    """``Authorization`` header values (None: no header) that must get 401, by what is wrong with them."""
    none_alg = jwt.encode(claims(tenant_id), key="", algorithm="none")
    return {
        "no header": None,
        "not a jwt": "Bearer not-a-token",
        "bearer without token": "Bearer",
        "basic scheme": "Basic dXNlcjpwYXNz",
        "wrong secret": "Bearer " + jwt.encode(claims(tenant_id), "another-secret-of-sufficient-length!", "HS256"),
        "expired": "Bearer " + jwt.encode(claims(tenant_id, exp=int(time.time()) - 60), JWT_SECRET, "HS256"),
        "alg none": "Bearer " + none_alg,
        "other algorithm": "Bearer " + jwt.encode(claims(tenant_id), JWT_SECRET, "HS512"),
        "no tenant claim": "Bearer " + jwt.encode(claims(tenant_id, tenant_id=None), JWT_SECRET, "HS256"),
        "tenant not a uuid": "Bearer " + jwt.encode(claims(tenant_id, tenant_id="acme"), JWT_SECRET, "HS256"),
        "no exp": "Bearer " + jwt.encode(claims(tenant_id, exp=None), JWT_SECRET, "HS256"),
        "no sub": "Bearer " + jwt.encode(claims(tenant_id, sub=None), JWT_SECRET, "HS256"),
    }
