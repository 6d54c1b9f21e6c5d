"""Settings fail fast on bad secrets; tokens are verified with exactly the configured algorithm."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from stockzen_gateway.config import GatewaySettings
from stockzen_inventory.config import InventorySettings
from stockzen_platform.identity import Identity, InvalidToken, TokenIssuer, TokenVerifier
from stockzen_platform.settings import DEVELOPMENT_INTERNAL_SECRET, DEVELOPMENT_JWT_SECRET
from stockzen_sync_worker.config import WorkerSettings

REAL = "a-real-secret-that-is-long-enough-0123456789"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "STOCKZEN_ENV",
        "JWT_SECRET",
        "INTERNAL_TOKEN_SECRET",
        "JWT_ALGORITHM",
        "JWT_PUBLIC_KEY",
        "AMQP_URL",
        "DATABASE_URL",
    ):
        monkeypatch.delenv(name, raising=False)


def test_the_gateway_refuses_to_start_without_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INTERNAL_TOKEN_SECRET", REAL)
    with pytest.raises(ValidationError, match="JWT_SECRET is required"):
        GatewaySettings()


@pytest.mark.parametrize("secret", ["changeme", "", "secret"])
def test_placeholder_secrets_are_refused_everywhere(monkeypatch: pytest.MonkeyPatch, secret: str) -> None:
    monkeypatch.setenv("JWT_SECRET", secret)
    monkeypatch.setenv("INTERNAL_TOKEN_SECRET", REAL)
    with pytest.raises(ValidationError, match="JWT_SECRET is a placeholder"):
        GatewaySettings()


def test_development_secrets_work_in_development_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET", DEVELOPMENT_JWT_SECRET)
    monkeypatch.setenv("INTERNAL_TOKEN_SECRET", DEVELOPMENT_INTERNAL_SECRET)
    assert GatewaySettings().jwt_verification_key == DEVELOPMENT_JWT_SECRET
    monkeypatch.setenv("STOCKZEN_ENV", "production")
    with pytest.raises(ValidationError, match="JWT_SECRET is the development secret"):
        GatewaySettings()
    with pytest.raises(ValidationError, match="INTERNAL_TOKEN_SECRET is the development secret"):
        InventorySettings()


def test_production_wants_long_secrets_and_real_broker_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCKZEN_ENV", "production")
    monkeypatch.setenv("JWT_SECRET", "short-but-not-a-placeholder")
    monkeypatch.setenv("INTERNAL_TOKEN_SECRET", REAL)
    with pytest.raises(ValidationError, match="at least 32 characters"):
        GatewaySettings()
    with pytest.raises(ValidationError, match="AMQP_URL: the user is a default account"):
        WorkerSettings()
    monkeypatch.setenv("AMQP_URL", "amqp://sync:a-broker-password-of-length@rabbit:5672/")
    with pytest.raises(ValidationError, match="DATABASE_URL: the password is missing"):
        WorkerSettings()
    monkeypatch.setenv("DATABASE_URL", "postgresql://stockzen_app:a-database-password-long@db:5432/stockzen")
    assert WorkerSettings().amqp_url.startswith("amqp://sync:")


def test_rs256_needs_a_public_key_and_verifies_with_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INTERNAL_TOKEN_SECRET", REAL)
    monkeypatch.setenv("JWT_ALGORITHM", "RS256")
    with pytest.raises(ValidationError, match="JWT_PUBLIC_KEY is required"):
        GatewaySettings()
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    monkeypatch.setenv("JWT_PUBLIC_KEY", public_pem)
    settings = GatewaySettings()
    verifier = TokenVerifier(algorithm="RS256", key=settings.jwt_verification_key)
    tenant = uuid.uuid4()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    token = TokenIssuer(algorithm="RS256", key=private_pem).issue(Identity("u1", tenant), ttl_seconds=60)
    assert verifier.verify(token) == Identity("u1", tenant)
    # The classic confusion attack: an HS256 token whose HMAC key is the (public) RSA key. A verifier
    # that let the token pick its algorithm would accept it; this one is pinned to RS256.
    forged = _hs256_signed(
        {"sub": "u1", "tenant_id": str(tenant), "exp": int(time.time()) + 60}, key=public_pem.encode()
    )
    with pytest.raises(InvalidToken):
        verifier.verify(forged)
    # Well-formed, with the claims a real token has: it is refused for its algorithm, not its shape.
    header = jwt.get_unverified_header(forged)
    assert header["alg"] == "HS256"


def _hs256_signed(claims: dict[str, object], *, key: bytes) -> str:
    """A JWT signed by hand (PyJWT refuses a PEM as an HMAC key, which is exactly the attacker's move)."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + b64(json.dumps(claims).encode())
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def test_internal_tokens_are_bound_to_their_audience_and_issuer() -> None:
    identity = Identity("u1", uuid.uuid4())
    issuer = TokenIssuer(algorithm="HS256", key=REAL, audience="stockzen-inventory", issuer="stockzen-gateway")
    verifier = TokenVerifier(algorithm="HS256", key=REAL, audience="stockzen-inventory", issuer="stockzen-gateway")
    assert verifier.verify(issuer.issue(identity, ttl_seconds=60)) == identity
    user_style = TokenIssuer(algorithm="HS256", key=REAL).issue(identity, ttl_seconds=60)
    with pytest.raises(InvalidToken):
        verifier.verify(user_style)
    with pytest.raises(InvalidToken):
        verifier.verify(issuer.issue(identity, ttl_seconds=-30))


def test_a_remembered_token_still_expires_and_a_forged_twin_never_passes() -> None:
    now = [float(int(time.time()))]  # tokens carry whole seconds
    verifier = TokenVerifier(algorithm="HS256", key=REAL, leeway_seconds=5, clock=lambda: now[0])
    caller = Identity("ana", uuid.uuid4())
    token = TokenIssuer(algorithm="HS256", key=REAL).issue(caller, ttl_seconds=60, now=now[0])

    assert verifier.verify(token) == caller
    assert verifier.verify(token) == caller  # remembered: the same answer
    forged = TokenIssuer(algorithm="HS256", key="another-" + REAL).issue(caller, ttl_seconds=60, now=now[0])
    for _ in range(2):  # a failure is never remembered, and the good token's entry does not cover it
        with pytest.raises(InvalidToken):
            verifier.verify(forged)

    now[0] += 60 + 5  # at exp + leeway: still valid, as PyJWT says
    assert verifier.verify(token) == caller
    now[0] += 1
    with pytest.raises(InvalidToken, match="Expired"):
        verifier.verify(token)
