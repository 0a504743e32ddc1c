"""Authentication (§2): Clerk session JWTs (RS256), dev tokens, just-in-time users.

A token comes from ``Authorization: Bearer``, else the ``__session`` cookie, else (WebSocket
URLs only) ``?token=``. Every failure is :class:`Unauthorized` (401 / close 4401).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import time
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import Text, bindparam, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import HTTPConnection

from server.errors import Forbidden, Unauthorized
from server.settings import Settings
from server.state import services
from server.users.models import User

log = logging.getLogger("scriptorium.auth")

DEV_ISSUER = "scriptorium-dev"
LEEWAY_S = 5
_VERIFIED_MAX = 10_000  # remembered verified tokens per process
JWKS_MIN_REFRESH_S = 60.0
TokenSource = Literal["header", "cookie", "query"]


@dataclass(frozen=True)
class Principal:
    """The signed-in user of one request or connection."""

    clerk_id: str
    id: str
    email: str | None
    name: str | None
    image_url: str | None
    role: str
    timezone: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @classmethod
    def from_user(cls, user: User) -> Principal:
        return cls(
            clerk_id=user.clerk_id, id=str(user.id), email=user.email, name=user.name,
            image_url=user.image_url, role=user.role, timezone=user.timezone,
        )


AuthHook = Callable[[Principal], Awaitable[None]]


# --- keys ----------------------------------------------------------------------------


class JwksCache:
    """Keys from ``CLERK_JWKS_URL``: cached, refetched on an unknown ``kid`` at most once a minute."""

    def __init__(self, url: str, fetch: Callable[[str], bytes] | None = None) -> None:
        self.url = url
        self._fetch = fetch or _http_get
        self._keys: dict[str, Any] = {}
        self._fetched_at = -1e9
        self._lock = asyncio.Lock()

    async def key_for(self, kid: str | None) -> Any:
        if kid in self._keys:
            return self._keys[kid]
        async with self._lock:
            if kid not in self._keys and time.monotonic() - self._fetched_at >= JWKS_MIN_REFRESH_S:
                await self._refresh()
        if kid in self._keys:
            return self._keys[kid]
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        raise Unauthorized("The token was signed by an unknown key.")

    async def _refresh(self) -> None:
        self._fetched_at = time.monotonic()
        try:
            raw = await asyncio.to_thread(self._fetch, self.url)
            jwks = jwt.PyJWKSet.from_dict(json.loads(raw))
        except Exception as exc:  # network or format trouble: keep the old keys
            log.warning("jwks fetch failed", extra={"error": str(exc)})
            return
        self._keys = {k.key_id: k.key for k in jwks.keys if k.key_id}


def _http_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        data: bytes = response.read()
        return data


def load_or_create_dev_key(data_dir: Path) -> rsa.RSAPrivateKey:
    """The dev signing key, generated at first start and shared by every local worker."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "dev-jwt-key.pem"
    if not path.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(pem)
        os.chmod(tmp, 0o600)
        try:
            os.link(tmp, path)  # atomic: the first worker wins, the others read its key
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(loaded, rsa.RSAPrivateKey)
    return loaded


# --- the authenticator ---------------------------------------------------------------


class Authenticator:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.settings = settings
        self.sessions = sessions
        self.hooks: list[AuthHook] = []
        self._dev_key: rsa.RSAPrivateKey | None = None
        self._public_key: Any = None
        self._jwks: JwksCache | None = None
        self._verified: dict[str, tuple[dict[str, Any], float]] = {}
        if settings.auth_mode == "dev":
            self._dev_key = load_or_create_dev_key(settings.data_dir)
            self._public_key = self._dev_key.public_key()
        elif settings.clerk_jwt_key:
            self._public_key = serialization.load_pem_public_key(settings.clerk_jwt_key.encode())
        elif settings.clerk_jwks_url:
            self._jwks = JwksCache(settings.clerk_jwks_url)

    # tokens ---------------------------------------------------------------------------

    def issue_dev_token(self, sub: str, name: str | None = None, email: str | None = None,
                        ttl_s: int = 3600) -> tuple[str, int]:
        """A dev-mode token with Clerk's claims; refused outside ``AUTH_MODE=dev``."""
        if self._dev_key is None:
            raise Forbidden("Dev tokens are only issued with AUTH_MODE=dev.")
        now = int(time.time())
        claims: dict[str, Any] = {"sub": sub, "iss": DEV_ISSUER, "iat": now, "nbf": now - 1, "exp": now + ttl_s}
        if name:
            claims["name"] = name
        if email:
            claims["email"] = email
        token = jwt.encode(claims, self._dev_key, algorithm="RS256", headers={"kid": "dev"})
        return token, now + ttl_s

    async def verify(self, token: str) -> dict[str, Any]:
        """The claims of a valid token, else :class:`Unauthorized`.

        A token that verified is remembered until it expires (the RSA check is ~0.3 ms of CPU and
        the same token arrives with every request of a session); a bad token is never cached.
        """
        cached = self._verified.get(token)
        if cached is not None:
            claims, expires = cached
            if time.time() <= expires:
                return claims
            del self._verified[token]
        claims = await self._verify_uncached(token)
        if len(self._verified) >= _VERIFIED_MAX:
            self._verified.clear()
        self._verified[token] = (claims, float(claims["exp"]) + LEEWAY_S)
        return claims

    async def _verify_uncached(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("The token is malformed.") from None
        if header.get("alg") != "RS256":
            raise Unauthorized("Only RS256 tokens are accepted.")
        key = self._public_key
        if self._jwks is not None:
            key = await self._jwks.key_for(header.get("kid"))
        if key is None:
            raise Unauthorized("No key is configured to verify tokens.")
        issuer = DEV_ISSUER if self.settings.auth_mode == "dev" else self.settings.clerk_issuer
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key, algorithms=["RS256"], leeway=LEEWAY_S, issuer=issuer,
                options={"require": ["exp", "sub"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("The token has expired.") from None
        except jwt.ImmatureSignatureError:
            raise Unauthorized("The token is not valid yet.") from None
        except jwt.InvalidIssuerError:
            raise Unauthorized("The token has the wrong issuer.") from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"The token is invalid: {exc}") from None
        parties = self.settings.clerk_authorized_parties
        if parties and self.settings.auth_mode == "clerk" and claims.get("azp") not in parties:
            raise Unauthorized("The token's authorized party is not allowed.")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub.strip():
            raise Unauthorized("The token has no subject.")
        if not storable_text(sub, MAX_SUB_CHARS):
            raise Unauthorized("The token's subject is not a usable id.")
        return claims

    # requests --------------------------------------------------------------------------

    def token_from(self, conn: HTTPConnection, *, websocket: bool) -> tuple[str, TokenSource] | None:
        header = conn.headers.get("authorization")
        if header:
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise Unauthorized("The Authorization header must be 'Bearer <token>'.")
            return value.strip(), "header"
        cookie = conn.cookies.get("__session")
        if cookie:
            return cookie, "cookie"
        if websocket:
            query = conn.query_params.get("token")
            if query:
                return query, "query"
        return None

    def origin_allowed(self, conn: HTTPConnection) -> bool:
        origin = conn.headers.get("origin")
        if not origin:
            return True
        origin = origin.rstrip("/")
        if origin in self.settings.allowed_origins:
            return True
        host = conn.headers.get("host", "")
        scheme = {"ws": "http", "wss": "https"}.get(conn.url.scheme, conn.url.scheme)
        return origin == f"{scheme}://{host}"

    async def claims_of(self, conn: HTTPConnection, *, websocket: bool = False,
                        write: bool = False) -> dict[str, Any] | None:
        """The verified claims of the caller's token, None when anonymous; 401 for a bad token,
        403 for a foreign origin (the first half of :meth:`authenticate`)."""
        found = self.token_from(conn, websocket=websocket)
        if found is None:
            return None
        token, source = found
        if source == "cookie" and (write or websocket) and not self.origin_allowed(conn):
            raise Forbidden("Cross-site request refused: the Origin is not allowed.")
        return await self.verify(token)

    async def authenticate(self, conn: HTTPConnection, *, websocket: bool = False,
                           write: bool = False) -> Principal | None:
        """The caller, None when anonymous; 401 for a bad token, 403 for a foreign origin."""
        claims = await self.claims_of(conn, websocket=websocket, write=write)
        if claims is None:
            return None
        principal = await self.resolve_user(claims)
        await self.signed_in(principal)
        return principal

    async def signed_in(self, principal: Principal) -> None:
        """Run the hooks of an authenticated request (activity days and streaks)."""
        for hook in self.hooks:
            await hook(principal)

    @staticmethod
    def known_principal(claims: dict[str, Any], row: Sequence[Any]) -> Principal | None:
        """The caller from their ``users`` row already read (``row``: the values of
        :data:`PRINCIPAL_COLUMNS`, in order), as :meth:`resolve_user`'s hot path decides: 401 for
        a deleted user, None when the row needs :meth:`resolve_user` (claims to fill in)."""
        clerk_id, user_id, email, name, image_url, role, timezone, deleted_at = row
        if deleted_at is not None:
            raise Unauthorized("This account has been deleted.")
        stored = {"email": email, "name": name, "image_url": image_url}
        if any(stored[key] is None for key in _claim_fields(claims)):
            return None
        return Principal(clerk_id=clerk_id, id=str(user_id), email=email, name=name, image_url=image_url,
                         role=role, timezone=timezone)

    async def resolve_user(self, claims: dict[str, Any]) -> Principal:
        """The user of ``sub``, created just in time from its claims; later claims fill empty fields.

        A user deleted in Clerk (``users.deleted_at``) is refused with 401 even with a token that is
        still valid: the row stays anonymised and the account unusable.
        """
        sub = str(claims["sub"])
        fields = _claim_fields(claims)
        # Hot path: one autocommit SELECT (no BEGIN/COMMIT round trips) for a known user whose
        # row needs nothing from these claims; not cached, so role changes apply at once. (Routes
        # whose policy can read the row along with its own facts skip even this: see
        # ``Access.fused`` in server/routing.py.)
        engine = self.sessions.kw.get("bind")
        if engine is not None:
            async with engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                row = (await conn.execute(_principal_statement(), {"clerk_id": sub})).first()
            if row is not None:
                known = self.known_principal(claims, row)
                if known is not None:
                    return known
        async with self.sessions() as session, session.begin():
            # FOR UPDATE: a ``user.deleted`` committing meanwhile must not be overwritten by claims.
            user = (await session.execute(
                select(User).where(User.clerk_id == sub).with_for_update()
            )).scalar_one_or_none()
            if user is None:
                user = await _create_user(session, sub, fields)
            elif user.deleted_at is not None:
                raise Unauthorized("This account has been deleted.")
            else:
                # Claims fill gaps only: a name set with PATCH /me or by a webhook is not
                # overwritten by a token minted earlier, and an absent claim never blanks.
                for key, value in fields.items():
                    if getattr(user, key) is not None:
                        continue
                    if key == "email" and await _email_taken(session, value, sub):
                        continue
                    setattr(user, key, value)
            return Principal.from_user(user)


# What ``known_principal`` reads of a user's row, in this order.
PRINCIPAL_COLUMNS = (User.clerk_id, User.id, User.email, User.name, User.image_url, User.role, User.timezone,
                     User.deleted_at)


@functools.cache
def _principal_statement() -> Any:
    """Built once (statement construction and its cache key cost more than the lookup)."""
    return select(*PRINCIPAL_COLUMNS).where(User.clerk_id == bindparam("clerk_id", type_=Text))


def _claim_fields(claims: dict[str, Any]) -> dict[str, str]:
    """The optional claims that may fill a user's row. Claims PostgreSQL could not store (NUL, a
    lone surrogate) or absurdly long are ignored, as if absent: a 500 on someone's first request
    otherwise."""
    return {k: claims[k] for k in ("email", "name", "image_url")
            if isinstance(claims.get(k), str) and storable_text(claims[k], MAX_CLAIM_CHARS)}


async def _email_taken(session: AsyncSession, email: str, sub: str) -> bool:
    other = await session.execute(select(User.clerk_id).where(User.email == email, User.clerk_id != sub))
    return other.first() is not None


MAX_SUB_CHARS = 255
MAX_CLAIM_CHARS = 2048


def storable_text(value: str, max_chars: int) -> bool:
    """Whether PostgreSQL can store ``value`` as text: no NUL, no lone surrogate, not too long."""
    if len(value) > max_chars or "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


async def _create_user(session: AsyncSession, sub: str, fields: dict[str, str]) -> User:
    # ON CONFLICT DO NOTHING: twenty first requests of one new user at once make one row.
    if fields.get("email") and await _email_taken(session, fields["email"], sub):
        fields = {k: v for k, v in fields.items() if k != "email"}
    await session.execute(insert(User).values(clerk_id=sub, **fields).on_conflict_do_nothing())
    user = (await session.execute(select(User).where(User.clerk_id == sub))).scalar_one_or_none()
    if user is None:  # lost a race on the e-mail address: create without it
        await session.execute(
            insert(User).values(clerk_id=sub, **{k: v for k, v in fields.items() if k != "email"})
            .on_conflict_do_nothing()
        )
        user = (await session.execute(select(User).where(User.clerk_id == sub))).scalar_one()
    return user


# --- handler helpers -----------------------------------------------------------------


async def current_user(request: HTTPConnection) -> Principal | None:
    """The caller of a REST request, or None when anonymous (memoised per request)."""
    if "principal" in request.scope.get("state", {}):
        cached: Principal | None = request.state.principal
        return cached
    write = request.scope.get("method", "GET") in ("POST", "PUT", "PATCH", "DELETE")
    principal = await services(request).auth.authenticate(request, write=write)
    request.state.principal = principal
    return principal


async def require_user(request: HTTPConnection) -> Principal:
    principal = await current_user(request)
    if principal is None:
        raise Unauthorized("Sign in to do this.")
    return principal
