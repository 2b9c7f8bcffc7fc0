"""Formatting of GraphQL errors with the REST envelope's `code`, `field` and `details`."""

from __future__ import annotations

import logging

from graphql import GraphQLError, GraphQLFormattedError

from mp4e.errors import MP4EError

logger = logging.getLogger(__name__)


def format_error(error: GraphQLError, request_id: str | None) -> GraphQLFormattedError:
    """Format one error; unexpected errors are logged and masked behind the request id."""
    formatted = error.formatted
    original = error.original_error
    if isinstance(original, MP4EError):
        formatted["message"] = original.message
        formatted["extensions"] = {
            "code": original.code,
            "field": original.field,
            "details": original.details,
        }
    elif original is not None:
        logger.error(
            "Unhandled error in GraphQL path %s (request %s)",
            error.path,
            request_id,
            exc_info=original,
        )
        formatted["message"] = (
            "The server failed to handle this field; quote the request id when reporting it."
        )
        formatted["extensions"] = {
            "code": "INTERNAL_ERROR",
            "field": None,
            "details": {"requestId": request_id},
        }
    else:
        formatted["extensions"] = {
            "code": "GRAPHQL_VALIDATION_FAILED",
            "field": None,
            "details": {},
        }
    return formatted
