"""The GraphQL endpoint: HTTP, multipart uploads, graphql-transport-ws subscriptions."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson
from fastapi import Request
from strawberry.exceptions import ConnectionRejectionError
from strawberry.fastapi import GraphQLRouter
from strawberry.http import GraphQLHTTPResponse
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types import ExecutionResult
from strawberry.types.unset import UnsetType

from mp4e.auth import authenticate, parse_bearer
from mp4e.errors import Unauthorized
from mp4e.runtime import Runtime
from mp4e.schema.context import Context
from mp4e.schema.errors import format_error


class MP4EGraphQLRouter(GraphQLRouter[Context, None]):
    def encode_json(self, data: object) -> str | bytes:
        """Encode results with orjson, which also embeds stored documents without re-parsing.

        Returns text, because websocket clients expect graphql-transport-ws messages as text
        frames. Integers over 64 bits fall back to the standard library's encoder.
        """
        try:
            return orjson.dumps(data).decode()
        except TypeError:
            return json.dumps(data, separators=(",", ":"), default=_fragment_value)

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        response: GraphQLHTTPResponse = {"data": result.data}
        if result.errors:
            request_id = getattr(request.state, "request_id", None)
            response["errors"] = [format_error(error, request_id) for error in result.errors]
        return response

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """Authenticate a websocket from its `connection_init` payload.

        The payload carries `{"Authorization": "Bearer <key>"}` (or `authorization`, or
        `apiKey`). A missing or invalid key closes the connection with 4403 Forbidden.
        """
        params: dict[str, Any] = context.connection_params or {}
        header = params.get("Authorization") or params.get("authorization")
        if header is None and params.get("apiKey"):
            header = f"Bearer {params['apiKey']}"
        try:
            token = parse_bearer(header)
            principal = await authenticate(
                context.runtime.database, token, context.runtime.principals
            )
        except Unauthorized as exc:
            raise ConnectionRejectionError({"code": exc.code, "message": exc.message}) from None
        context.set_principal(principal, None)
        return None


def _fragment_value(value: object) -> object:
    if isinstance(value, orjson.Fragment):
        return json.loads(value.contents)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def build_router(get_runtime: Callable[[], Runtime]) -> MP4EGraphQLRouter:
    """Build the router; `get_runtime` returns the runtime once the application has started."""
    from mp4e.schema import schema

    async def get_context() -> Context:
        return Context(get_runtime())

    return MP4EGraphQLRouter(
        schema,
        context_getter=get_context,
        subscription_protocols=[GRAPHQL_TRANSPORT_WS_PROTOCOL],
        multipart_uploads_enabled=True,
        graphql_ide="graphiql",
    )
