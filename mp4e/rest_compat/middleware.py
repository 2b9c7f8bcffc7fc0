"""ASGI middleware: request ids, API-key authentication, rate limits, last-resort 500s.

Authentication runs here, once per request, so that the rate limit can be charged to the key
and its headers added to every response. The routes and the GraphQL context then read the
result from `request.state.principal`, or raise `request.state.auth_error`.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mp4e.auth import Scope as KeyScope
from mp4e.auth import authenticate, parse_bearer
from mp4e.errors import RateLimited, Unauthorized
from mp4e.rest_compat.errors import envelope
from mp4e.runtime import Runtime

logger = logging.getLogger(__name__)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
_AUTHENTICATED_PREFIXES = ("/api/", "/graphql")
_VIDEO_DETAILS_PATH = re.compile(r"^/api/videos/(video_[0-9a-f]{16})$")


class ApiMiddleware:
    """Middleware around the whole application; `state` is the application's state, which
    contains the runtime."""

    def __init__(self, app: ASGIApp, state: Any) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        supplied = headers.get("x-request-id", "")
        request_id = supplied if _REQUEST_ID.match(supplied) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        extra_headers = {"X-Request-ID": request_id}

        path: str = scope["path"]
        if path.startswith(_AUTHENTICATED_PREFIXES) and not _is_graphiql_page(scope, headers):
            runtime: Runtime = self.state.runtime
            subject = await self._authenticate(runtime, headers, state)
            if subject is None:
                client = scope.get("client")
                subject = f"ip:{client[0] if client else 'unknown'}"
            limit = await runtime.limiter.hit(subject)
            extra_headers.update(limit.headers())
            if not limit.allowed:
                error = RateLimited(
                    "Too many requests for this API key; wait until the window resets.",
                    retry_after_s=limit.retry_after_s,
                    details={"limit": limit.limit, "resetAt": limit.reset_at},
                )
                extra_headers["Retry-After"] = str(error.retry_after_s)
                await _send_json(
                    send,
                    429,
                    envelope(error.code, error.message, None, error.details),
                    extra_headers,
                )
                return

            cached = _cached_video_view(runtime, scope, state)
            if cached is not None:
                extra_headers["Content-Type"] = "application/json"
                await _send_bytes(send, 200, cached, extra_headers)
                return

        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                mutable = MutableHeaders(scope=message)
                for name, value in extra_headers.items():
                    mutable[name] = value
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            logger.exception(
                "Unhandled error on %s %s (request %s)", scope["method"], path, request_id
            )
            if started:
                raise
            body = envelope(
                "INTERNAL_ERROR",
                "The server failed to handle this request; quote the request id when reporting it.",
                details={"requestId": request_id},
            )
            await _send_json(send, 500, body, extra_headers)

    async def _authenticate(
        self, runtime: Runtime, headers: Headers, state: dict[str, Any]
    ) -> str | None:
        try:
            token = parse_bearer(headers.get("authorization"))
            principal = await authenticate(runtime.database, token, runtime.principals)
        except Unauthorized as exc:
            state["auth_error"] = exc
            return None
        state["principal"] = principal
        return principal.key_id


def _cached_video_view(runtime: Runtime, scope: Scope, state: dict[str, Any]) -> bytes | None:
    """Return the cached details of `GET /api/videos/<id>` when the caller may read them.

    The route fills this cache; serving a hit here skips routing and the framework's
    per-request work. A miss, or any doubt about access, falls through to the route.
    """
    if scope["method"] != "GET":
        return None
    match = _VIDEO_DETAILS_PATH.match(scope["path"])
    principal = state.get("principal")
    if match is None or principal is None or scope.get("query_string"):
        return None
    if KeyScope.ALL not in principal.scopes and KeyScope.VIDEOS_READ not in principal.scopes:
        return None
    cached = runtime.video_views.get(match.group(1))
    if cached is None or cached[0] != principal.account_id:
        return None
    return cached[1]


def _is_graphiql_page(scope: Scope, headers: Headers) -> bool:
    return (
        scope["path"].rstrip("/") == "/graphql"
        and scope["method"] == "GET"
        and "text/html" in headers.get("accept", "")
    )


async def _send_json(
    send: Send, status: int, body: dict[str, Any], headers: dict[str, str]
) -> None:
    payload = json.dumps(body).encode()
    await _send_bytes(send, status, payload, {"Content-Type": "application/json", **headers})


async def _send_bytes(send: Send, status: int, payload: bytes, headers: dict[str, str]) -> None:
    raw_headers = [(b"content-length", str(len(payload)).encode())]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": payload})
