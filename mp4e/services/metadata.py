"""Metadata documents: read, patch, versions, restore. Shared by GraphQL and REST.

Every write runs in `database.serialized()` with the video row locked (SELECT ... FOR UPDATE on
PostgreSQL, the process-wide write lock on SQLite), reads the current version inside that
transaction, and stores the next version before it commits. Writes to one video are therefore
applied one after another, each to the version the previous one made, and none is lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from mp4e.auth import Principal, Scope
from mp4e.errors import Conflict, InvalidParameter, NotFound, VersionConflict
from mp4e.metadata.document import check_read_only, validate_document
from mp4e.metadata.jsonlimits import json_type_name
from mp4e.metadata.merge import changed_top_level_keys, describe_change, merge_patch
from mp4e.models import MetadataVersion, Video
from mp4e.models.base import utcnow
from mp4e.models.video import VideoStatus
from mp4e.runtime import Runtime
from mp4e.services import metadata_store
from mp4e.services.videos import get_video

logger = logging.getLogger(__name__)

MAX_DESCRIPTION_CHARS: Final = 500

PatchBuilder = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class VersionWrite:
    """The outcome of a write: the version now current and its document without tracks.

    `created` is False when the change left the document as it was, so no version was added
    and `version` is the one that was already current. `tracked_object_ids` names the objects
    that have a track, which `document` leaves out.
    """

    version: int
    created_at: datetime
    description: str
    created: bool
    document: dict[str, Any]
    tracked_object_ids: frozenset[str]


@dataclass(frozen=True)
class VersionInfo:
    version: int
    created_at: datetime
    description: str
    author: str | None


@dataclass(frozen=True)
class VersionHistory:
    versions: list[VersionInfo]
    current_version: int


async def read_document(
    runtime: Runtime, video: Video, *, version: int | None = None, with_tracks: bool = True
) -> tuple[dict[str, Any], MetadataVersion | None]:
    """Return the document of `version` (current when None) of a video already authorised.

    A video still being ingested has no version yet: its document is empty and the row None.
    """
    if video.current_version == 0 and version is None:
        return {}, None
    async with runtime.database.session() as session:
        row = await metadata_store.get_version_row(session, video.id, version)
        document = await metadata_store.load_document(session, row, with_tracks=with_tracks)
    return document, row


async def get_document(
    runtime: Runtime, principal: Principal, video_id: str, *, version: int | None = None
) -> tuple[dict[str, Any], MetadataVersion]:
    """Return a version (current when None) of a video's document, tracks included.

    Raises:
        NotFound: the video is not the caller's, or `version` does not exist (field "version").
        Conflict: NOT_READY, the video has no document yet.
    """
    video = await get_video(runtime, principal, video_id, scope=Scope.METADATA_READ)
    _check_version_number(version)
    if version is None:
        _require_document(video)
    async with runtime.database.session() as session:
        row = await metadata_store.get_version_row(session, video.id, version)
        document = await metadata_store.load_document(session, row)
    return document, row


async def get_document_json(
    runtime: Runtime, principal: Principal, video_id: str, *, version: int | None = None
) -> tuple[bytes, int]:
    """Return a version (current when None) of a video's document as JSON bytes, and its number.

    Raises the errors of `get_document`.
    """
    video = await get_video(runtime, principal, video_id, scope=Scope.METADATA_READ)
    _check_version_number(version)
    if version is None:
        _require_document(video)
    async with runtime.database.session() as session:
        row = await metadata_store.get_version_row(session, video.id, version)
        body = await metadata_store.load_document_bytes(session, row)
    return body, row.version


def _require_document(video: Video) -> None:
    if video.current_version > 0:
        return
    reason = "its ingest failed" if video.status == VideoStatus.FAILED else "it is still ingesting"
    raise Conflict(
        f"Video '{video.id}' has no metadata yet because {reason}. Wait until its status is "
        "'ready'.",
        code="NOT_READY",
        details={"status": video.status},
    )


def _check_version_number(version: int | None) -> None:
    if version is not None and version < 1:
        raise InvalidParameter(
            f"The version must be a positive integer, not {version}.",
            field="version",
            details={"min": 1, "provided": version},
        )


async def list_versions(runtime: Runtime, principal: Principal, video_id: str) -> VersionHistory:
    """Return the versions of a video's document, newest first."""
    video = await get_video(runtime, principal, video_id, scope=Scope.METADATA_READ)
    query = (
        select(
            col(MetadataVersion.version),
            col(MetadataVersion.created_at),
            col(MetadataVersion.description),
            col(MetadataVersion.author),
        )
        .where(col(MetadataVersion.video_id) == video.id)
        .order_by(col(MetadataVersion.version).desc())
    )
    async with runtime.database.session() as session:
        rows = await session.execute(query)
        versions = [VersionInfo(*row) for row in rows.all()]
    current = versions[0].version if versions else 0
    return VersionHistory(versions=versions, current_version=current)


async def patch_document(
    runtime: Runtime,
    principal: Principal,
    video_id: str,
    patch: Any,
    *,
    if_match: int | None = None,
    description: str | None = None,
) -> VersionWrite:
    """Merge `patch` into the current document and store the result as a new version.

    `if_match` is the version the client based the patch on. `description` defaults to one
    generated from the change. A patch that changes nothing adds no version.

    Raises:
        VersionConflict: `if_match` is not the current version; details {expected, current}.
        ReadOnlyField: the patch changes a read-only part.
        InvalidParameter: the patch is not an object, or the merged document is invalid.
        Conflict: NOT_READY, the video has no document yet.
    """
    video = await get_video(runtime, principal, video_id, scope=Scope.METADATA_WRITE)
    if not isinstance(patch, dict):
        raise InvalidParameter(
            "A metadata patch must be a JSON object.",
            details={"expected": "object", "provided": json_type_name(patch)},
        )
    return await apply_change(
        runtime, principal, video.id, lambda _current: patch, if_match, description
    )


async def restore_version(
    runtime: Runtime,
    principal: Principal,
    video_id: str,
    version: int,
    *,
    if_match: int | None = None,
    description: str | None = None,
) -> VersionWrite:
    """Store a copy of an earlier version as a new version.

    The copy shares every stored part with the earlier version, so it costs one row. A
    restore always adds a version, even when the earlier version equals the current one.

    Raises:
        NotFound: `version` does not exist (field "version").
        VersionConflict: `if_match` is not the current version.
    """
    video = await get_video(runtime, principal, video_id, scope=Scope.METADATA_WRITE)
    _check_version_number(version)
    text = _clean_description(description) or f"Restored version {version}"
    async with runtime.database.serialized() as session:
        locked = await _lock_video(runtime, session, video.id)
        _check_if_match(if_match, locked.current_version)
        source = await metadata_store.get_version_row(session, video.id, version)
        new_row = MetadataVersion(
            video_id=video.id,
            version=locked.current_version + 1,
            document=source.document,
            objects_hash=source.objects_hash,
            description=text,
            author=principal.key_id,
        )
        session.add(new_row)
        await _bump_version(session, locked, new_row.version)
        editable = await metadata_store.load_editable(session, new_row)
    logger.info("Restored version %d of video %s as version %d", version, video.id, new_row.version)
    return _written(new_row, editable.document, frozenset(editable.track_digests))


async def apply_change(
    runtime: Runtime,
    principal: Principal,
    video_id: str,
    build_patch: PatchBuilder,
    if_match: int | None,
    description: str | None,
) -> VersionWrite:
    """Build a patch from the current document, merge it and store the next version.

    `build_patch` receives the current document without tracks while the video is locked, so
    the patch it returns is merged into exactly that document. It may raise a domain error to
    abort the write. The caller has already checked the principal's scope and access.
    """
    text = _clean_description(description)
    async with runtime.database.serialized() as session:
        locked = await _lock_video(runtime, session, video_id)
        _check_if_match(if_match, locked.current_version)
        row = await metadata_store.get_version_row(session, video_id, locked.current_version)
        editable = await metadata_store.load_editable(session, row)
        current, merged = await _merge(session, editable, build_patch(editable.document))
        changed = changed_top_level_keys(current, merged)
        tracked = frozenset(oid for oid in editable.track_digests if oid in merged["objects"])
        if not changed:
            return VersionWrite(
                row.version, row.created_at, row.description, False, current, tracked
            )

        new_row = await metadata_store.add_version(
            session,
            video_id=video_id,
            version=locked.current_version + 1,
            document=merged,
            description=text or describe_change(current, merged),
            author=principal.key_id,
            previous=row,
            objects_changed="objects" in changed,
            base=editable,
        )
        await _bump_version(session, locked, new_row.version)
    logger.info("Stored version %d of video %s: %s", new_row.version, video_id, new_row.description)
    return _written(new_row, merged, tracked)


async def _merge(
    session: AsyncSession, editable: metadata_store.EditableDocument, patch: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check `patch` against the editable document, merge it and return (current, merged).

    Raises the errors of `check_read_only`, `merge_patch` and `validate_document`.
    """
    # A patch naming an object's track is compared with the stored track, so load it.
    current = await metadata_store.with_tracks(session, editable, _objects_naming_track(patch))
    check_read_only(current, patch)
    merged = merge_patch(current, patch)
    validate_document(_without_unchanged_objects(merged, current), previous=current)
    return current, merged


def _without_unchanged_objects(merged: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """Return `merged` keeping only the objects a patch replaced, for validation.

    The current version was valid when stored, `merge_patch` shares every object it left
    alone, and no document check relates one object to another. Checking only the changed
    objects therefore finds the same faults, without a cost that grows with the object count.
    """
    objects = merged.get("objects")
    previous = current.get("objects")
    if not isinstance(objects, dict) or not isinstance(previous, dict):
        return merged
    changed = {oid: obj for oid, obj in objects.items() if obj is not previous.get(oid)}
    return {**merged, "objects": changed}


def _objects_naming_track(patch: dict[str, Any]) -> list[str]:
    objects = patch.get("objects")
    if not isinstance(objects, dict):
        return []
    return [oid for oid, body in objects.items() if isinstance(body, dict) and "track" in body]


async def _lock_video(runtime: Runtime, session: AsyncSession, video_id: str) -> Video:
    """Load the video row for a write, locked until commit, and check it has a document."""
    # On SQLite the transaction already holds the database's write lock (BEGIN IMMEDIATE).
    locked = await session.get(Video, video_id, with_for_update=not runtime.database.is_sqlite)
    if locked is None:
        raise NotFound(f"Video '{video_id}' was not found.", field="id", details={"id": video_id})
    _require_document(locked)
    return locked


def _check_if_match(if_match: int | None, current: int) -> None:
    if if_match is None or if_match == current:
        return
    raise VersionConflict(
        f"The metadata is at version {current}, not version {if_match}. Read the current "
        "version and apply the change to it.",
        details={"expected": if_match, "current": current},
    )


async def _bump_version(session: AsyncSession, video: Video, version: int) -> None:
    video.current_version = version
    video.updated_at = utcnow()
    session.add(video)
    await session.flush()


def _clean_description(description: str | None) -> str | None:
    if description is None or not description.strip():
        return None
    text = description.strip()
    if len(text) > MAX_DESCRIPTION_CHARS:
        raise InvalidParameter(
            f"The description must be at most {MAX_DESCRIPTION_CHARS} characters, not {len(text)}.",
            field="description",
            details={"max": MAX_DESCRIPTION_CHARS, "provided": len(text)},
        )
    return text


def _written(
    row: MetadataVersion, document: dict[str, Any], tracked_object_ids: frozenset[str]
) -> VersionWrite:
    return VersionWrite(
        row.version, row.created_at, row.description, True, document, tracked_object_ids
    )
