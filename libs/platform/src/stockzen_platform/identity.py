"""Who is calling: bearer-token verification and issuing (user tokens, gateway-to-inventory tokens)."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import jwt

SUPPORTED_ALGORITHMS = ("HS256", "RS256")

# The gateway vouches for its callers to the inventory service with a short-lived HS256 token
# signed with INTERNAL_TOKEN_SECRET; audience and issuer keep it from passing anywhere else.
INTERNAL_ALGORITHM = "HS256"
INTERNAL_AUDIENCE = "stockzen-inventory"
INTERNAL_ISSUER = "stockzen-gateway"
INTERNAL_TOKEN_TTL_SECONDS = 60

VERIFIED_TOKENS_KEPT = 4096
"""How many verified tokens a verifier remembers (a few MB at most): a device sends the same token with
every request until it renews it, and checking an HS256 signature and its claims costs ~100 µs, about 5 %
of the gateway's CPU for a single-operation request."""


@dataclass(frozen=True, slots=True)
class Identity:
    """A verified caller: the user and the tenant the token names, and when the token expires."""

    user_id: str
    tenant_id: UUID
    # Epoch seconds of the token's ``exp``: what a long-lived answer (the live stream) must not outlive.
    # Not part of who the caller is, so two identities of one caller compare equal.
    expires_at: float | None = field(default=None, compare=False)


class InvalidToken(Exception):
    """The token is missing, malformed, expired, wrongly signed or lacks a required claim."""


class TokenVerifier:
    """Verifies bearer tokens with exactly one configured algorithm (``alg: none`` never passes).

    A token that passed every check is remembered (least recently used out, ``cache_size`` kept), so the
    same token again costs a lookup and an expiry check: of its checks only the expiry can change its
    answer as time passes (``nbf`` and ``iat`` only become more valid). A token that failed is checked
    in full every time, and a remembered one is found only by its exact text, signature included.
    """

    def __init__(
        self,
        *,
        algorithm: str,
        key: str,
        audience: str | None = None,
        issuer: str | None = None,
        leeway_seconds: int = 5,
        cache_size: int = VERIFIED_TOKENS_KEPT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if algorithm not in SUPPORTED_ALGORITHMS:
            raise ValueError(f"unsupported JWT algorithm {algorithm!r}")
        self._algorithm = algorithm
        self._key = key
        self._audience = audience
        self._issuer = issuer
        self._leeway = leeway_seconds
        self._clock = clock
        # functools' LRU keeps no exception: only tokens that passed are remembered.
        self._verified: Callable[[str], Identity] = functools.lru_cache(maxsize=cache_size)(self._check)

    def verify(self, token: str) -> Identity:
        """Return the caller's identity or raise :class:`InvalidToken` (never says why to the caller)."""
        identity = self._verified(token)
        # ``exp`` is required, so every identity has it; PyJWT's rule: expired once now > exp + leeway.
        if identity.expires_at is not None and self._clock() > identity.expires_at + self._leeway:
            raise InvalidToken("ExpiredSignatureError")
        return identity

    def _check(self, token: str) -> Identity:
        """Every check of the token: signature, algorithm, audience, issuer, times, required claims."""
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[self._algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "sub", "tenant_id"]},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(type(exc).__name__) from None
        return _identity_from(claims)


def _identity_from(claims: dict[str, Any]) -> Identity:
    sub, tenant = claims.get("sub"), claims.get("tenant_id")
    if not isinstance(sub, str) or not sub or len(sub) > 255:
        raise InvalidToken("bad sub claim")
    if not isinstance(tenant, str):
        raise InvalidToken("bad tenant_id claim")
    expires = claims.get("exp")
    try:
        return Identity(
            user_id=sub, tenant_id=UUID(tenant), expires_at=float(expires) if isinstance(expires, int | float) else None
        )
    except ValueError:
        raise InvalidToken("bad tenant_id claim") from None


class TokenIssuer:
    """Signs short-lived tokens: development user tokens and the gateway's internal tokens."""

    def __init__(
        self,
        *,
        algorithm: str,
        key: str,
        audience: str | None = None,
        issuer: str | None = None,
    ) -> None:
        self._algorithm = algorithm
        self._key = key
        self._audience = audience
        self._issuer = issuer

    def issue(self, identity: Identity, *, ttl_seconds: int, now: float | None = None) -> str:
        """A signed token naming ``identity`` that expires after ``ttl_seconds``."""
        issued = int(now if now is not None else time.time())
        claims: dict[str, Any] = {
            "sub": identity.user_id,
            "tenant_id": str(identity.tenant_id),
            "iat": issued,
            "exp": issued + ttl_seconds,
        }
        if self._audience:
            claims["aud"] = self._audience
        if self._issuer:
            claims["iss"] = self._issuer
        return jwt.encode(claims, self._key, algorithm=self._algorithm)


def internal_token_issuer(secret: str) -> TokenIssuer:
    """How the gateway signs the identity of the caller it forwards to the inventory service."""
    return TokenIssuer(algorithm=INTERNAL_ALGORITHM, key=secret, audience=INTERNAL_AUDIENCE, issuer=INTERNAL_ISSUER)


def internal_token_verifier(secret: str) -> TokenVerifier:
    """How the inventory service checks that a request comes from the gateway, and for whom."""
    return TokenVerifier(algorithm=INTERNAL_ALGORITHM, key=secret, audience=INTERNAL_AUDIENCE, issuer=INTERNAL_ISSUER)
