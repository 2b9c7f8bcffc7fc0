"""FastAPI dependencies: the runtime and the authenticated principal of a request."""

from __future__ import annotations

from fastapi import Request

from mp4e.auth import Principal
from mp4e.errors import Unauthorized
from mp4e.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def get_principal(request: Request) -> Principal:
    """Return the caller verified by the middleware, or raise its authentication error."""
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is None:
        error = getattr(request.state, "auth_error", None)
        raise error if isinstance(error, Unauthorized) else Unauthorized("Missing API key.")
    return principal
