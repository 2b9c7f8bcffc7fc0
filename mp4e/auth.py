"""API keys: creation, verification and scopes.

A key reads `mp4e_<key id>_<secret>`. The database stores the key id and the SHA-256 of the
secret (the secret is 32 random bytes, so a fast hash is enough); verification looks the key up
by id and compares digests in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlmodel import col

from mp4e.cache import TTLCache
from mp4e.db import Database
from mp4e.errors import Forbidden, InvalidParameter, NotFound, Unauthorized
from mp4e.models import Account, ApiKey
from mp4e.models.base import utcnow

KEY_PREFIX = "mp4e"
DEFAULT_ACCOUNT = "default"


class Scope:
    """The scopes a key can carry. `*` grants every scope."""

    VIDEOS_READ = "videos:read"
    VIDEOS_WRITE = "videos:write"
    METADATA_READ = "metadata:read"
    METADATA_WRITE = "metadata:write"
    PROCESSING = "processing"
    ALL = "*"

    KNOWN = frozenset({VIDEOS_READ, VIDEOS_WRITE, METADATA_READ, METADATA_WRITE, PROCESSING, ALL})


@dataclass(frozen=True)
class Principal:
    """The caller behind a verified API key."""

    key_id: str
    key_name: str
    account_id: str
    scopes: frozenset[str]

    def require(self, scope: str) -> None:
        """Raise `Forbidden` unless this key carries `scope` (or `*`)."""
        if Scope.ALL in self.scopes or scope in self.scopes:
            return
        raise Forbidden(
            f"This API key lacks the '{scope}' scope.",
            details={"required": scope, "granted": sorted(self.scopes)},
        )

    def owns(self, account_id: str, resource: str, resource_id: str) -> None:
        """Raise `NotFound` for another account's resource, so its existence stays hidden."""
        if account_id != self.account_id:
            raise NotFound(
                f"{resource} '{resource_id}' was not found.", details={"id": resource_id}
            )


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_bearer(header: str | None) -> str:
    """Return the token of an `Authorization: Bearer <token>` header, or raise `Unauthorized`."""
    if not header:
        raise Unauthorized("Missing API key; send 'Authorization: Bearer <API_KEY>'.")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Invalid Authorization header; expected 'Bearer <API_KEY>'.")
    return token.strip()


def split_key(token: str) -> tuple[str, str]:
    """Split a key into (key id, secret), or raise `Unauthorized` when it is malformed."""
    prefix, _, rest = token.partition("_")
    key_id_hex, _, secret = rest.partition("_")
    if prefix != KEY_PREFIX or not key_id_hex or not secret:
        raise Unauthorized("Invalid API key.")
    return f"key_{key_id_hex}", secret


async def authenticate(
    database: Database, token: str, cache: TTLCache[str, Principal] | None = None
) -> Principal:
    """Verify an API key and return its principal; `Unauthorized` when unknown or revoked.

    With a cache, a verified key is trusted for the cache's lifetime (a few seconds): a
    revocation reaches other processes through the event bus, or when the entry expires.
    """
    digest = hash_secret(token)
    if cache is not None:
        cached = cache.get(digest)
        if cached is not None:
            return cached
    key_id, secret = split_key(token)
    async with database.session() as session:
        key = await session.get(ApiKey, key_id)
    if key is None or not hmac.compare_digest(key.secret_sha256, hash_secret(secret)):
        raise Unauthorized("Invalid API key.")
    if key.revoked_at is not None:
        raise Unauthorized("This API key was revoked.")
    principal = Principal(
        key_id=key.id, key_name=key.name, account_id=key.account_id, scopes=frozenset(key.scopes)
    )
    if cache is not None:
        cache.put(digest, principal)
    return principal


@dataclass(frozen=True)
class CreatedKey:
    key: ApiKey
    account: Account
    secret: str


async def create_key(
    database: Database, *, name: str, account_name: str | None, scopes: list[str]
) -> CreatedKey:
    """Create a key (and its account when missing); the full secret is returned only here."""
    unknown = sorted(set(scopes) - Scope.KNOWN)
    if unknown:
        raise InvalidParameter(
            f"Unknown scope(s): {', '.join(unknown)}.",
            field="scope",
            details={"allowed": sorted(Scope.KNOWN), "provided": unknown},
        )
    account_name = account_name or DEFAULT_ACCOUNT
    async with database.serialized() as session:
        result = await session.execute(select(Account).where(col(Account.name) == account_name))
        account = result.scalar_one_or_none()
        if account is None:
            account = Account(name=account_name)
            session.add(account)
            await session.flush()
        secret = secrets.token_urlsafe(32).replace("_", "-")
        key = ApiKey(
            account_id=account.id,
            name=name,
            secret_sha256=hash_secret(secret),
            scopes=sorted(set(scopes or [Scope.ALL])),
        )
        session.add(key)
    token = f"{KEY_PREFIX}_{key.id.removeprefix('key_')}_{secret}"
    return CreatedKey(key=key, account=account, secret=token)


async def list_keys(database: Database) -> list[tuple[ApiKey, Account]]:
    async with database.session() as session:
        rows = await session.execute(
            select(ApiKey, Account)
            .join(Account, col(Account.id) == ApiKey.account_id)
            .order_by(col(ApiKey.created_at))
        )
        return [(key, account) for key, account in rows.all()]


async def revoke_key(database: Database, key_id: str, *, now: datetime | None = None) -> ApiKey:
    async with database.serialized() as session:
        key = await session.get(ApiKey, key_id)
        if key is None:
            raise NotFound(f"API key '{key_id}' was not found.", details={"id": key_id})
        if key.revoked_at is None:
            key.revoked_at = now or utcnow()
            session.add(key)
    return key
