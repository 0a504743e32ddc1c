"""Auth (§2) through a real server in Clerk mode: every bad token is a 401 problem, never a 500."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from svix.webhooks import Webhook

from server.auth import Authenticator, JwksCache
from server.errors import Unauthorized
from server.settings import Settings, SettingsError
from tests.support import ServerProcess, running

ISSUER = "https://clerk.scriptorium.test"
PARTY = "https://app.scriptorium.test"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"scriptorium-webhook-secret-32byt").decode()

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUBLIC_PEM = KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def token(key: Any = KEY, alg: str = "RS256", headers: dict[str, Any] | None = None, **overrides: Any) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": f"user_{uuid.uuid4().hex[:10]}", "iss": ISSUER, "azp": PARTY,
                              "iat": now, "nbf": now - 1, "exp": now + 300}
    for name, value in overrides.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return jwt.encode(claims, key, algorithm=alg, headers=headers)


def clerk_env(**extra: str) -> dict[str, str]:
    """The settings of a Clerk-mode server that accepts :func:`token` and :func:`signed` webhooks."""
    return {"CLERK_JWT_KEY": PUBLIC_PEM, "CLERK_ISSUER": ISSUER, "CLERK_AUTHORIZED_PARTIES": PARTY,
            "CLERK_WEBHOOK_SECRET": WEBHOOK_SECRET, **extra}


@pytest.fixture(scope="module")
def clerk_server(database_url: str, data_dir: Path) -> Iterator[ServerProcess]:
    with running(ServerProcess(database_url=database_url, data_dir=data_dir,
                               env=clerk_env(ALLOWED_ORIGINS="https://partner.test"))) as proc:
        yield proc


@pytest.fixture(scope="module")
async def clerk(clerk_server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=clerk_server.base_url, timeout=30) as c:
        yield c


def _b64(d: dict[str, Any] | bytes) -> str:
    raw = d if isinstance(d, bytes) else json.dumps(d).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


_CLAIMS = {"sub": "user_x", "iss": ISSUER, "azp": PARTY}


def _none_alg_token() -> str:
    return _b64({"alg": "none", "typ": "JWT"}) + "." + _b64({**_CLAIMS, "exp": int(time.time()) + 60}) + "."


def _hs256_with_public_key() -> str:
    """The classic algorithm-confusion attack: HMAC keyed with the server's public PEM."""
    import hashlib
    import hmac

    signing_input = _b64({"alg": "HS256", "typ": "JWT"}) + "." + _b64({**_CLAIMS, "exp": int(time.time()) + 60})
    signature = hmac.new(PUBLIC_PEM.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64(signature)


BAD_TOKENS = {
    "garbage": lambda: "not-a-jwt",
    "alg none": _none_alg_token,
    "hs256 with the public key as secret": _hs256_with_public_key,
    "wrong key": lambda: token(OTHER_KEY),
    "expired": lambda: token(exp=int(time.time()) - 60),
    "not yet valid": lambda: token(nbf=int(time.time()) + 120),
    "wrong issuer": lambda: token(iss="https://evil.test"),
    "wrong azp": lambda: token(azp="https://evil.test"),
    "missing azp": lambda: token(azp=None),
    "missing sub": lambda: token(sub=None),
    "empty sub": lambda: token(sub=""),
    "missing exp": lambda: token(exp=None),
}


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
async def test_bad_token_is_401_problem(clerk: httpx.AsyncClient, case: str) -> None:
    response = await clerk.get("/api/me", headers={"Authorization": f"Bearer {BAD_TOKENS[case]()}"})
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["status"] == 401


async def test_no_token_is_401_and_bad_scheme_is_401(clerk: httpx.AsyncClient) -> None:
    assert (await clerk.get("/api/me")).status_code == 401
    assert (await clerk.get("/api/me", headers={"Authorization": "Basic abc"})).status_code == 401


async def test_valid_token_creates_user_with_claims_and_absent_claims_never_blank(
    clerk: httpx.AsyncClient,
) -> None:
    sub = f"user_{uuid.uuid4().hex[:8]}"
    first = await clerk.get("/api/me", headers={"Authorization": "Bearer " + token(
        sub=sub, email=f"{sub}@example.com", name="Ada", image_url="https://img.test/a.png")})
    assert first.status_code == 200
    assert first.json() | {"id": None} == {"id": None, "clerk_id": sub, "email": f"{sub}@example.com",
                                           "name": "Ada", "image_url": "https://img.test/a.png",
                                           "timezone": "UTC", "role": "member"}
    again = await clerk.get("/api/me", headers={"Authorization": "Bearer " + token(sub=sub)})
    assert again.json()["name"] == "Ada" and again.json()["email"] == f"{sub}@example.com"


async def test_cookie_and_header_precedence(clerk: httpx.AsyncClient) -> None:
    a, b = f"user_{uuid.uuid4().hex[:8]}", f"user_{uuid.uuid4().hex[:8]}"
    by_cookie = await clerk.get("/api/me", headers={"Cookie": f"__session={token(sub=a)}"})
    assert by_cookie.json()["clerk_id"] == a
    both = await clerk.get("/api/me", headers={"Cookie": f"__session={token(sub=a)}",
                                               "Authorization": "Bearer " + token(sub=b)})
    assert both.json()["clerk_id"] == b


async def test_cookie_write_from_foreign_origin_is_403(clerk: httpx.AsyncClient,
                                                       clerk_server: ServerProcess) -> None:
    cookie = f"__session={token()}"
    foreign = await clerk.patch("/api/me", json={"name": "X"},
                                headers={"Cookie": cookie, "Origin": "https://evil.test"})
    assert foreign.status_code == 403
    assert foreign.headers["content-type"].startswith("application/problem+json")
    own = await clerk.patch("/api/me", json={"name": "X"},
                            headers={"Cookie": cookie, "Origin": clerk_server.base_url})
    assert own.status_code == 200
    partner = await clerk.patch("/api/me", json={"name": "Y"},
                                headers={"Cookie": cookie, "Origin": "https://partner.test"})
    assert partner.status_code == 200
    # A bearer token is not subject to the Origin check.
    bearer = await clerk.patch("/api/me", json={"name": "Z"}, headers={
        "Origin": "https://evil.test", "Authorization": "Bearer " + token()})
    assert bearer.status_code == 200


async def test_twenty_first_requests_of_a_new_user_make_one_row(clerk: httpx.AsyncClient,
                                                                db: AsyncEngine) -> None:
    sub = f"user_{uuid.uuid4().hex[:8]}"
    tokens = [token(sub=sub, name="Racer", email=f"{sub}@example.com") for _ in range(20)]
    responses = await asyncio.gather(*[
        clerk.get("/api/me", headers={"Authorization": f"Bearer {t}"}) for t in tokens])
    assert [r.status_code for r in responses] == [200] * 20
    async with db.connect() as conn:
        count = (await conn.execute(text("SELECT count(*) FROM users WHERE clerk_id = :s"), {"s": sub})).scalar()
    assert count == 1


async def test_dev_token_refused_in_clerk_mode(clerk: httpx.AsyncClient) -> None:
    response = await clerk.post("/api/dev/token", json={"sub": "user_x"})
    assert response.status_code == 403


# --- webhooks ---------------------------------------------------------------------------


def signed(payload: dict[str, Any], *, msg_id: str | None = None, when: float | None = None,
           secret: str = WEBHOOK_SECRET) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    stamp = int(when if when is not None else time.time())
    from datetime import UTC, datetime

    signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(stamp, UTC), body.decode())
    return body, {"svix-id": msg_id, "svix-timestamp": str(stamp), "svix-signature": signature,
                  "content-type": "application/json"}


def clerk_user(user_id: str, updated_at: int | None, first: str = "Grace", last: str = "Hopper",
               email: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": user_id, "first_name": first, "last_name": last, "username": "gh",
        "image_url": "https://img.test/g.png", "primary_email_address_id": "idn_2",
        "email_addresses": [{"id": "idn_1", "email_address": "old@example.com"},
                            {"id": "idn_2", "email_address": email or f"{user_id}@example.com"}],
    }
    if updated_at is not None:
        data["updated_at"] = updated_at
    return data


async def _user_row(db: AsyncEngine, clerk_id: str) -> dict[str, Any] | None:
    async with db.connect() as conn:
        row = (await conn.execute(text("SELECT clerk_id, email, name, image_url FROM users WHERE clerk_id=:c"),
                                  {"c": clerk_id})).mappings().first()
    return dict(row) if row else None


async def test_webhook_lifecycle_with_replay_and_out_of_order(clerk: httpx.AsyncClient, db: AsyncEngine) -> None:
    uid = f"user_{uuid.uuid4().hex[:8]}"
    body, headers = signed({"type": "user.created", "data": clerk_user(uid, 1000)})
    assert (await clerk.post("/api/webhooks/clerk", content=body, headers=headers)).status_code == 200
    assert await _user_row(db, uid) == {"clerk_id": uid, "email": f"{uid}@example.com",
                                        "name": "Grace Hopper", "image_url": "https://img.test/g.png"}
    # Replayed svix-id: 200, no second effect (even with a changed body it is not re-applied).
    body2, headers2 = signed({"type": "user.updated", "data": clerk_user(uid, 3000, first="Changed")},
                             msg_id=headers["svix-id"])
    replay = await clerk.post("/api/webhooks/clerk", content=body2, headers=headers2)
    assert replay.status_code == 200 and replay.json()["status"] == "duplicate"
    assert (await _user_row(db, uid))["name"] == "Grace Hopper"  # type: ignore[index]
    # Newer update applies; an older one arriving later is ignored.
    newer, h_new = signed({"type": "user.updated", "data": clerk_user(uid, 5000, first="", last="",)})
    assert (await clerk.post("/api/webhooks/clerk", content=newer, headers=h_new)).status_code == 200
    assert (await _user_row(db, uid))["name"] == "gh"  # type: ignore[index]
    older, h_old = signed({"type": "user.updated", "data": clerk_user(uid, 4000, first="Old")})
    assert (await clerk.post("/api/webhooks/clerk", content=older, headers=h_old)).json()["status"] == "stale"
    assert (await _user_row(db, uid))["name"] == "gh"  # type: ignore[index]
    deleted, h_del = signed({"type": "user.deleted", "data": {"id": uid, "deleted": True}})
    assert (await clerk.post("/api/webhooks/clerk", content=deleted, headers=h_del)).status_code == 200
    assert await _user_row(db, uid) == {"clerk_id": uid, "email": None, "name": None, "image_url": None}


@pytest.mark.parametrize("case", ["bad signature", "stale timestamp", "future timestamp", "missing headers"])
async def test_webhook_bad_signature_is_400_and_changes_nothing(clerk: httpx.AsyncClient, db: AsyncEngine,
                                                                case: str) -> None:
    uid = f"user_{uuid.uuid4().hex[:8]}"
    payload = {"type": "user.created", "data": clerk_user(uid, 1)}
    if case == "bad signature":
        body, headers = signed(payload, secret="whsec_" + base64.b64encode(b"x" * 32).decode())
    elif case == "stale timestamp":
        body, headers = signed(payload, when=time.time() - 600)
    elif case == "future timestamp":
        body, headers = signed(payload, when=time.time() + 600)
    else:
        body, headers = json.dumps(payload).encode(), {"content-type": "application/json"}
    response = await clerk.post("/api/webhooks/clerk", content=body, headers=headers)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")
    assert await _user_row(db, uid) is None


# --- in-process: JWKS and settings ----------------------------------------------------


class _Jwks(BaseHTTPRequestHandler):
    hits = 0
    keys: list[dict[str, Any]] = []

    def do_GET(self) -> None:
        type(self).hits += 1
        body = json.dumps({"keys": self.keys}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def jwks_server() -> Iterator[str]:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(KEY.public_key()))
    jwk.update(kid="k1", use="sig", alg="RS256")
    _Jwks.keys, _Jwks.hits = [jwk], 0
    httpd = HTTPServer(("127.0.0.1", 0), _Jwks)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}/.well-known/jwks.json"
    httpd.shutdown()


async def test_jwks_is_cached_and_refetched_on_unknown_kid_at_most_once_a_minute(jwks_server: str) -> None:
    cache = JwksCache(jwks_server)
    assert await cache.key_for("k1") is not None
    assert await cache.key_for("k1") is not None
    assert _Jwks.hits == 1
    with pytest.raises(Unauthorized):
        await cache.key_for("k2")  # within the minute: no refetch
    assert _Jwks.hits == 1
    cache._fetched_at -= 61
    with pytest.raises(Unauthorized):
        await cache.key_for("k2")
    assert _Jwks.hits == 2


async def test_authenticator_verifies_with_jwks(jwks_server: str) -> None:
    settings = Settings.from_env({"CLERK_JWKS_URL": jwks_server, "CLERK_ISSUER": ISSUER})
    auth = Authenticator(settings, sessions=None)  # type: ignore[arg-type]
    claims = await auth.verify(token(headers={"kid": "k1"}))
    assert claims["iss"] == ISSUER
    with pytest.raises(Unauthorized):
        await auth.verify(token(OTHER_KEY, headers={"kid": "k1"}))


def test_settings_refuse_dev_mode_with_clerk_configured() -> None:
    with pytest.raises(SettingsError):
        Settings.from_env({"AUTH_MODE": "dev", "CLERK_JWT_KEY": PUBLIC_PEM})
    with pytest.raises(SettingsError):
        Settings.from_env({"AUTH_MODE": "clerk"})
    with pytest.raises(SettingsError):
        Settings.from_env({"LOG_LEVEL": "loud"})
    assert Settings.from_env({"LOG_LEVEL": "WARNING"}).log_level == "warning"
    assert Settings.from_env({"CLERK_JWT_KEY": PUBLIC_PEM}).auth_mode == "clerk"
    assert Settings.from_env({}).auth_mode == "dev"
