"""Exports of a video: the stored file with its metadata embedded (mp4e), or the document as JSON.

An export is built once per metadata version and format, stored as
`exports/<video id>/v<version>.<ext>`, recorded in `ExportFile`, and reused by later requests
until the metadata changes. Building a newer version deletes the older files of the same format.
Clients download the file through a signed, expiring URL that needs no API key.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import tempfile
import unicodedata
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from mp4e.auth import Principal, Scope
from mp4e.errors import Conflict, InvalidParameter, NotFound
from mp4e.models import ExportFile, Video
from mp4e.models.base import utcnow
from mp4e.models.video import VideoStatus
from mp4e.runtime import Runtime
from mp4e.services import metadata_store
from mp4e.services.videos import get_video, source_path
from mp4e.signing import sign_path
from mp4e.vision.mp4box import embed_metadata

logger = logging.getLogger(__name__)

EXPORT_FILES_PREFIX = "/files/exports"
_MAX_DOWNLOAD_STEM_CHARS = 120
# QuickTime files name the brand `qt  ` in their ftyp box, or have no ftyp box at all.
_QUICKTIME_BRAND = b"qt  "


class ExportFormat(StrEnum):
    MP4E = "mp4e"
    JSON = "json"


@dataclass(frozen=True, slots=True)
class ExportLink:
    """A signed download of one export file; `expires_at` is when the URL stops working."""

    download_url: str
    expires_at: datetime
    size_bytes: int
    version: int
    format: ExportFormat


# One lock per (video id, version, format), so concurrent requests in this process build an
# export once. Entries disappear when no request holds or awaits the lock.
_build_locks: weakref.WeakValueDictionary[tuple[str, int, str], asyncio.Lock] = (
    weakref.WeakValueDictionary()
)


def parse_format(raw: str | None) -> ExportFormat:
    """Return the export format named by `raw`; None means the default, mp4e."""
    if raw is None:
        return ExportFormat.MP4E
    try:
        return ExportFormat(raw)
    except ValueError:
        allowed = [item.value for item in ExportFormat]
        raise InvalidParameter(
            f"The 'format' parameter must be {' or '.join(allowed)}, not {raw!r}.",
            field="format",
            details={"allowed": allowed, "provided": raw},
        ) from None


async def export_video(
    runtime: Runtime, principal: Principal, video_id: str, export_format: str | None = None
) -> ExportLink:
    """Return a signed download of the video's current metadata version in `export_format`.

    The export file is built on the first request for a version and reused afterwards.

    Raises:
        NotFound: the video does not exist or belongs to another account.
        InvalidParameter: `export_format` is neither mp4e nor json.
        Conflict: the video has no metadata yet (code NOT_READY).
        UnsupportedMedia: a WebM source uses a codec that MP4 cannot carry, e.g. VP8.
        CorruptMedia: the stored source cannot be read as MP4, MOV or WebM.
    """
    video = await get_video(runtime, principal, video_id, scope=Scope.METADATA_READ)
    chosen = parse_format(export_format)
    _check_exportable(video)

    export = await ensure_export(runtime, video, chosen)

    path = f"{EXPORT_FILES_PREFIX}/{video.id}/{export.file_name}"
    url, expires_at = signed_download_url(runtime, path, download_name(video, export.file_name))
    return ExportLink(
        download_url=url,
        expires_at=datetime.fromtimestamp(expires_at, UTC),
        size_bytes=export.size_bytes,
        version=export.version,
        format=chosen,
    )


def _check_exportable(video: Video) -> None:
    if video.current_version > 0:
        return
    if video.status == VideoStatus.FAILED:
        message = f"Video '{video.id}' failed to ingest, so it has no metadata to export."
    else:
        message = (
            f"Video '{video.id}' is still being ingested (status {video.status}). "
            "Export it once its status is ready."
        )
    raise Conflict(message, code="NOT_READY", details={"status": video.status})


async def ensure_export(runtime: Runtime, video: Video, export_format: ExportFormat) -> ExportFile:
    """Return the export of the video's newest metadata version, building it if needed."""
    version = await _newest_version(runtime, video.id)
    key = (video.id, version, export_format.value)
    existing = await _usable_export(runtime, *key)
    if existing is not None:
        return existing

    lock = _build_locks.setdefault(key, asyncio.Lock())
    async with lock:
        # Another request may have built it while this one waited for the lock.
        existing = await _usable_export(runtime, *key)
        if existing is not None:
            return existing
        return await _build_export(runtime, video, version, export_format)


async def _newest_version(runtime: Runtime, video_id: str) -> int:
    async with runtime.database.session() as session:
        row = await metadata_store.get_version_row(session, video_id, None)
    return row.version


async def _usable_export(
    runtime: Runtime, video_id: str, version: int, export_format: str
) -> ExportFile | None:
    """Return the recorded export when its file is still on disk with the recorded size."""
    async with runtime.database.session() as session:
        row = (
            await session.execute(
                select(ExportFile).where(
                    col(ExportFile.video_id) == video_id,
                    col(ExportFile.version) == version,
                    col(ExportFile.format) == export_format,
                )
            )
        ).scalar_one_or_none()
    if row is None:
        return None
    path = runtime.storage.export_dir(video_id) / row.file_name
    try:
        size_bytes = path.stat().st_size
    except FileNotFoundError:
        size_bytes = -1
    if size_bytes != row.size_bytes:
        logger.warning(
            "Export %s of video %s is missing or has the wrong size; rebuilding it",
            row.file_name,
            video_id,
        )
        return None
    return row


async def _build_export(
    runtime: Runtime, video: Video, version: int, export_format: ExportFormat
) -> ExportFile:
    async with runtime.database.session() as session:
        row = await metadata_store.get_version_row(session, video.id, version)
        document = await metadata_store.load_document(session, row, with_tracks=True)

    source = source_path(runtime, video)
    export_dir = runtime.storage.export_dir(video.id)
    file_name = f"v{version}.{_file_extension(export_format, source)}"
    target = export_dir / file_name
    started = asyncio.get_running_loop().time()
    size_bytes = await asyncio.to_thread(write_export_file, source, target, export_format, document)
    logger.info(
        "Built %s export of video %s version %d (%d bytes) in %.2f s",
        export_format.value,
        video.id,
        version,
        size_bytes,
        asyncio.get_running_loop().time() - started,
    )
    return await _record_export(runtime, video.id, version, export_format, file_name, size_bytes)


def _file_extension(export_format: ExportFormat, source: Path) -> str:
    if export_format is ExportFormat.JSON:
        return "json"
    with source.open("rb") as file:
        head = file.read(12)
    if head[4:8] == b"ftyp" and head[8:12] != _QUICKTIME_BRAND:
        return "mp4"
    # WebM sources are remuxed into MP4 during the export.
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "mp4"
    return "mov"


def write_export_file(
    source: Path, target: Path, export_format: ExportFormat, document: dict[str, Any]
) -> int:
    """Write the export to `target` through a temporary file and a rename; return its size.

    Both formats are fsynced before the rename, because the database records the file as
    complete once this returns.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    if export_format is ExportFormat.MP4E:
        return embed_metadata(source, target, document, durable=True).size_bytes

    data = json.dumps(document, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    payload = data.encode("utf-8") + b"\n"
    fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(payload)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_name, target)
    finally:
        Path(temp_name).unlink(missing_ok=True)
    return len(payload)


async def _record_export(
    runtime: Runtime,
    video_id: str,
    version: int,
    export_format: ExportFormat,
    file_name: str,
    size_bytes: int,
) -> ExportFile:
    """Record the built file and drop the rows of older versions in the same format.

    Another server process may record the same export at the same time. Its file is
    identical and the unique constraint rejects the second row, so that row is reused.
    """
    database = runtime.database
    try:
        async with database.serialized() as session:
            if await session.get(Video, video_id) is None:
                raise _video_deleted(video_id)
            row = await _locked_export_row(session, video_id, version, export_format)
            if row is None:
                row = ExportFile(
                    video_id=video_id,
                    version=version,
                    format=export_format.value,
                    file_name=file_name,
                    size_bytes=size_bytes,
                )
            else:
                row.file_name = file_name
                row.size_bytes = size_bytes
                row.created_at = utcnow()
            session.add(row)
            stale = await _older_exports(session, video_id, version, export_format)
            for old in stale:
                await session.delete(old)
    except IntegrityError:
        existing = await _usable_export(runtime, video_id, version, export_format.value)
        if existing is None:
            _remove_export_files(runtime, video_id, [file_name])
            raise _video_deleted(video_id) from None
        return existing
    except BaseException:
        # A file without its row would never be reused or cleaned up.
        _remove_export_files(runtime, video_id, [file_name])
        raise

    _remove_export_files(runtime, video_id, [old.file_name for old in stale])
    for old in stale:
        logger.info(
            "Removed export %s of video %s, outdated by version %d",
            old.file_name,
            video_id,
            version,
        )
    return row


async def _locked_export_row(
    session: AsyncSession, video_id: str, version: int, export_format: ExportFormat
) -> ExportFile | None:
    query = select(ExportFile).where(
        col(ExportFile.video_id) == video_id,
        col(ExportFile.version) == version,
        col(ExportFile.format) == export_format.value,
    )
    result = await session.execute(query.with_for_update())
    row: ExportFile | None = result.scalar_one_or_none()
    return row


async def _older_exports(
    session: AsyncSession, video_id: str, version: int, export_format: ExportFormat
) -> list[ExportFile]:
    query = select(ExportFile).where(
        col(ExportFile.video_id) == video_id,
        col(ExportFile.format) == export_format.value,
        col(ExportFile.version) < version,
    )
    return list((await session.execute(query.with_for_update())).scalars().all())


def _video_deleted(video_id: str) -> NotFound:
    return NotFound(
        f"Video '{video_id}' was deleted while its export was being built.",
        field="id",
        details={"id": video_id},
    )


def _remove_export_files(runtime: Runtime, video_id: str, file_names: list[str]) -> None:
    # NOTE: a download that already opened an old file finishes, but a signed URL issued
    # earlier for an older version returns 404 once that version's file is removed here.
    export_dir = runtime.storage.export_dir(video_id)
    for file_name in file_names:
        (export_dir / file_name).unlink(missing_ok=True)


# --- download links ----------------------------------------------------------------------


def download_name(video: Video, file_name: str) -> str:
    """Return the file name a browser saves the export as: the video's name plus extension."""
    normalized = unicodedata.normalize("NFC", video.name)
    stem = re.sub(r'[\x00-\x1f\x7f/\\:*?"<>|]+', "_", normalized).strip(" ._")
    stem = stem[:_MAX_DOWNLOAD_STEM_CHARS] or video.id
    return f"{stem}{Path(file_name).suffix}"


def signed_resource(path: str, filename: str | None) -> str:
    """Return the string that a download signature covers: the path and the download name.

    The download URL and the route that verifies it both build this string, so changing the
    `filename` query parameter of a link breaks its signature.
    """
    if filename is None:
        return path
    return f"{path}?filename={quote(filename, safe='')}"


def signed_download_url(runtime: Runtime, path: str, filename: str) -> tuple[str, int]:
    """Return the absolute signed URL of an export file and its expiry (Unix time)."""
    settings = runtime.settings
    resource = signed_resource(path, filename)
    signed, expires_at = sign_path(settings.secret_key, resource, settings.export_url_ttl_s)
    signature_query = signed[len(resource) + 1 :]
    return f"{settings.public_url.rstrip('/')}{resource}&{signature_query}", expires_at
