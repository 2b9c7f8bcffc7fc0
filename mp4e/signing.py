"""Signed, expiring URLs for files served without an API key (streams, thumbnails, exports)."""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import urlencode

from mp4e.errors import Forbidden


def _signature(secret: str, path: str, expires_at: int) -> str:
    message = f"{path}\n{expires_at}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign_path(secret: str, path: str, ttl_s: int, *, now: float | None = None) -> tuple[str, int]:
    """Return `path?expires=...&signature=...` and the expiry as a Unix timestamp."""
    expires_at = int((now if now is not None else time.time()) + ttl_s)
    query = urlencode({"expires": expires_at, "signature": _signature(secret, path, expires_at)})
    return f"{path}?{query}", expires_at


def verify_path(secret: str, path: str, expires: str | None, signature: str | None) -> None:
    """Raise `Forbidden` unless the signature matches `path` and has not expired."""
    if not expires or not signature:
        raise Forbidden("This download link is missing its signature.", code="INVALID_SIGNATURE")
    try:
        expires_at = int(expires)
    except ValueError:
        raise Forbidden("This download link is invalid.", code="INVALID_SIGNATURE") from None
    if not hmac.compare_digest(_signature(secret, path, expires_at), signature):
        raise Forbidden("This download link is invalid or was altered.", code="INVALID_SIGNATURE")
    if expires_at < time.time():
        raise Forbidden(
            "This download link has expired; request a new one.",
            code="LINK_EXPIRED",
            details={"expiredAt": expires_at},
        )
