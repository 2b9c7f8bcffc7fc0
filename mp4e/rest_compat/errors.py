"""The documented error envelope and the HTTP status of each domain error."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from mp4e import errors

logger = logging.getLogger(__name__)

_STATUS_BY_ERROR: list[tuple[type[errors.MP4EError], int]] = [
    (errors.InvalidParameter, 400),
    (errors.Unauthorized, 401),
    (errors.Forbidden, 403),
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.PayloadTooLarge, 413),
    (errors.NoVideoStream, 415),
    (errors.CorruptMedia, 422),
    (errors.UnsupportedMedia, 422),
    (errors.InvalidQuad, 422),
    (errors.MetadataCorrupt, 422),
    (errors.RateLimited, 429),
]

_CODE_BY_STATUS = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "UNPROCESSABLE_ENTITY",
    429: "RATE_LIMITED",
}


def status_for(error: errors.MP4EError) -> int:
    for error_type, status in _STATUS_BY_ERROR:
        if isinstance(error, error_type):
            return status
    return 500


def envelope(
    code: str, message: str, field: str | None = None, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "field": field, "details": details or {}}}


def error_response(error: errors.MP4EError) -> JSONResponse:
    headers = {}
    if isinstance(error, errors.RateLimited):
        headers["Retry-After"] = str(error.retry_after_s)
    body = envelope(error.code, error.message, error.field, error.details)
    return JSONResponse(body, status_code=status_for(error), headers=headers)


def _validation_field(location: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in location if p not in ("body", "query", "path", "header", "form")]
    return ".".join(parts) or None


async def _on_domain_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.MP4EError)
    return error_response(exc)


async def _on_validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = exc.errors()
    first = problems[0] if problems else {}
    field = _validation_field(tuple(first.get("loc", ())))
    message = first.get("msg", "Invalid request.")
    details: dict[str, Any] = {
        "errors": [
            {"field": _validation_field(tuple(p.get("loc", ()))), "message": p.get("msg")}
            for p in problems
        ]
    }
    if "input" in first and isinstance(first["input"], str | int | float | bool):
        details["provided"] = first["input"]
    text = f"Invalid value for '{field}': {message}." if field else f"{message}."
    return JSONResponse(envelope("INVALID_PARAMETER", text, field, details), status_code=400)


async def _on_http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _CODE_BY_STATUS.get(exc.status_code, "HTTP_ERROR")
    message = exc.detail if isinstance(exc.detail, str) else "Request failed."
    if exc.status_code == 404:
        message = "No such endpoint."
    return JSONResponse(
        envelope(code, message), status_code=exc.status_code, headers=dict(exc.headers or {})
    )


async def _on_unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    request_id = getattr(request.state, "request_id", None)
    logger.error(
        "Unhandled error on %s %s (request %s)",
        request.method,
        request.url.path,
        request_id,
        exc_info=exc,
    )
    body = envelope(
        "INTERNAL_ERROR",
        "The server failed to handle this request; quote the request id when reporting it.",
        details={"requestId": request_id},
    )
    return JSONResponse(body, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(errors.MP4EError, _on_domain_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected_error)
