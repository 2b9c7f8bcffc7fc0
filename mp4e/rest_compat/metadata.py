"""REST: /api/videos/:id/metadata and /api/videos/:id/versions.

Every metadata response that names a version carries it as `ETag: "<version>"`. A PATCH may
send `If-Match: "<version>"` (quotes optional, `*` for any version). It may also send a
`description` query parameter for the new version. Without one, the server describes the
change itself.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from mp4e.auth import Principal, Scope
from mp4e.errors import InvalidParameter, PayloadTooLarge
from mp4e.metadata.jsonlimits import parse_json_body
from mp4e.models.base import isoformat_z
from mp4e.rest_compat.deps import get_principal, get_runtime
from mp4e.runtime import Runtime
from mp4e.services import metadata as metadata_service
from mp4e.services import videos as video_service

router = APIRouter(prefix="/api/videos", tags=["metadata"])

RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]

_IF_MATCH: Final = re.compile(r'^\s*(?:"(\d{1,18})"|(\d{1,18})|(\*))\s*$')


def version_headers(version: int) -> dict[str, str]:
    return {"ETag": f'"{version}"'}


def parse_if_match(header: str | None) -> int | None:
    """Return the version an `If-Match` header names, or None when absent or `*`.

    Raises:
        InvalidParameter: the header is not one version number, quoted or bare, or `*`.
    """
    if header is None:
        return None
    match = _IF_MATCH.match(header)
    if match is None:
        raise InvalidParameter(
            f'The If-Match header must be one version number such as "15", or *, not {header!r}.',
            field="If-Match",
            details={"provided": header[:100]},
        )
    number = match.group(1) or match.group(2)
    return int(number) if number else None


async def read_json_object(request: Request, runtime: Runtime) -> dict[str, Any]:
    """Read a request body up to the configured size and parse it strictly as a JSON object.

    Reading stops at the limit: a declared `Content-Length` over it is rejected before any
    byte is read, and a streamed body is rejected as soon as it passes it.

    Raises:
        PayloadTooLarge: the body is larger than `max_body_bytes`.
        InvalidParameter: the body is not a JSON object within the limits of `parse_json_body`.
    """
    limit = runtime.settings.max_body_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit, int(declared))

    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise _too_large(limit, received)
        chunks.append(chunk)
    body: dict[str, Any] = parse_json_body(b"".join(chunks), max_bytes=limit, require_object=True)
    return body


def _too_large(limit: int, provided: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The request body is over the limit of {limit} bytes.",
        details={"limit": limit, "provided": provided},
    )


@router.get("/{video_id}/metadata")
async def get_metadata(
    video_id: str,
    runtime: RuntimeDep,
    principal: PrincipalDep,
    version: Annotated[int | None, Query(ge=1, description="A version number.")] = None,
) -> Response:
    """Return the full metadata document, tracks included: the current version or `version`."""
    body, number = await metadata_service.get_document_json(
        runtime, principal, video_id, version=version
    )
    return Response(body, media_type="application/json", headers=version_headers(number))


@router.patch("/{video_id}/metadata")
async def patch_metadata(
    video_id: str,
    request: Request,
    runtime: RuntimeDep,
    principal: PrincipalDep,
    description: Annotated[str | None, Query(description="Description of the new version.")] = None,
) -> JSONResponse:
    """Merge a partial document into the current version and store the result."""
    await video_service.get_video(runtime, principal, video_id, scope=Scope.METADATA_WRITE)
    if_match = parse_if_match(request.headers.get("if-match"))
    patch = await read_json_object(request, runtime)

    result = await metadata_service.patch_document(
        runtime, principal, video_id, patch, if_match=if_match, description=description
    )
    body = {"success": True, "version": result.version, "updatedAt": isoformat_z(result.created_at)}
    return JSONResponse(body, headers=version_headers(result.version))


@router.get("/{video_id}/versions")
async def list_versions(
    video_id: str, runtime: RuntimeDep, principal: PrincipalDep
) -> dict[str, Any]:
    """List the versions of the metadata document, newest first."""
    history = await metadata_service.list_versions(runtime, principal, video_id)
    return {
        "versions": [
            {
                "version": info.version,
                "createdAt": isoformat_z(info.created_at),
                "description": info.description,
                "author": info.author,
            }
            for info in history.versions
        ],
        "currentVersion": history.current_version,
    }
