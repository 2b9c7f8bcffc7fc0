"""The GraphQL context: runtime, request id and the caller's principal."""

from __future__ import annotations

from typing import Any

from strawberry.fastapi import BaseContext
from strawberry.types import Info as StrawberryInfo

from mp4e.auth import Principal
from mp4e.errors import Unauthorized
from mp4e.runtime import Runtime


class Context(BaseContext):
    def __init__(self, runtime: Runtime) -> None:
        super().__init__()
        self.runtime = runtime
        self._principal: Principal | None = None
        self._auth_error: Unauthorized | None = None

    @property
    def request_id(self) -> str | None:
        if self.request is None:
            return None
        return getattr(self.request.state, "request_id", None)

    def set_principal(self, principal: Principal | None, error: Unauthorized | None) -> None:
        self._principal = principal
        self._auth_error = error

    @property
    def principal(self) -> Principal:
        """The verified caller; raises `Unauthorized` for a missing, invalid or revoked key."""
        if self._principal is not None:
            return self._principal
        if self.request is not None and self.connection_params is None:
            principal = getattr(self.request.state, "principal", None)
            if isinstance(principal, Principal):
                return principal
            error = getattr(self.request.state, "auth_error", None)
            if isinstance(error, Unauthorized):
                raise error
        raise self._auth_error or Unauthorized("Missing API key.")


Info = StrawberryInfo[Context, Any]
